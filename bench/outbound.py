"""Outbound benchmark: submitted mail through the whole dev stack to a loopback SMTP sink, and the ceiling.

Run by hand from the repository root:

    .venv/bin/python bench/outbound.py            # full run, about 2 minutes
    .venv/bin/python bench/outbound.py --quick    # about 20 seconds

It starts two subprocesses:

  sink   a bare aiosmtpd server on 127.0.0.1 (`outbound.py --serve sink`) whose DATA handler
         answers 250 and prints, per message, the message's bench tag and the moment it arrived;
  stack  `mailpipe dev` in a temporary directory, every listener on a free port, with the route
         `sink.test=smtp:[127.0.0.1]:<sink port>`, so mail to sink.test leaves through the outbound
         queue and the outbound function, run by the stack's local SQS poller.

For each concurrency C it measures, one after the other:

  (e) end to end  N 10 KB messages submitted by C smtplib clients to the submission port (AUTH as
                  alice@crepes.fr), one recipient at sink.test each: gateway -> spool (S3 + SQS)
                  -> inbound function -> outbound queue -> outbound function -> sink. msgs/s is N over
                  the time from the first submission to the sink receiving the last message;
  (c) ceiling     the same N messages sent by C smtplib clients straight to the sink.

Each message carries an `X-Bench-Tag` header, so each is timed from the start of its submission
to its arrival at the sink (latency), and split into three stages: submission (until the 250),
the inbound side (250 -> the outbound function's first attempt, read from the outbound state
table afterwards) and the outbound side (first attempt -> arrival). "drain" is the time from the
last 250 to the last arrival. Stack CPU is the `mailpipe dev` process's utime+stime (gateway,
moto, pollers and functions all live in that one process) over the run, per message.

`--serve sink` is the helper server this script starts as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processes import (  # bench/processes.py
    Child,
    free_ports,
    interrupt_as_exit,
    process_cpu_seconds,
    raise_interrupt,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
DOMAIN = "crepes.fr"
USER = f"alice@{DOMAIN}"
PASSWORD = "pw"
SINK_DOMAIN = "sink.test"
RECIPIENT = f"rcpt@{SINK_DOMAIN}"
MESSAGE_SIZE = 10 * 1024
START_TIMEOUT = 90.0  # seconds for a subprocess to come up
STOP_TIMEOUT = 30.0  # seconds for the stack to stop after SIGINT
SMTP_TIMEOUT = 30.0  # seconds for any one SMTP exchange
TAG_HEADER = "X-Bench-Tag"
TAG_PATTERN = re.compile(rb"^X-Bench-Tag: (\S+)\r?$", re.MULTILINE)
QUEUED_AS = re.compile(rb"queued as (\S+)")
# time.monotonic() is CLOCK_MONOTONIC, the same in every process of this machine; the stack's
# outbound state records wall-clock times, mapped onto it with this offset.
WALL_MINUS_MONOTONIC = time.time() - time.monotonic()


# -- the message -----------------------------------------------------------------


def make_message(tag: str, size: int) -> bytes:
    """A `size`-byte message from alice to the sink's recipient, tagged, with nothing to dot-stuff."""
    head = (
        f"From: <{USER}>\r\nTo: <{RECIPIENT}>\r\nSubject: outbound bench {tag}\r\n"
        f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
        f"Message-ID: <{tag}@{DOMAIN}>\r\n{TAG_HEADER}: {tag}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    full, rest = divmod(size - len(head), len(line))
    if rest == 1:  # no room for a line of one byte: lengthen the one before
        full, last = full - 1, b"x" * 77 + b"\r\n"
    else:
        last = b"x" * (rest - 2) + b"\r\n" if rest else b""
    text = head + line * full + last
    assert len(text) == size
    return text


# -- what the sink received ------------------------------------------------------


class SinkLog:
    """Arrival times by tag, read from the sink's stdout by a thread of its own."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._arrived: dict[str, float] = {}
        self.duplicates = 0  # a tag that arrived twice: delivered more than once
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="bench-sink-log", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            tag, _, moment = line.decode("ascii", "replace").strip().partition(" ")
            if not moment:
                continue
            with self._changed:
                if tag in self._arrived:
                    self.duplicates += 1
                self._arrived.setdefault(tag, float(moment))
                self._changed.notify_all()

    def wait_for(self, tags: Sequence[str], deadline: float) -> dict[str, float]:
        """Arrival times of `tags`, waiting until all have arrived or `deadline` (monotonic) passed."""
        with self._changed:
            self._changed.wait_for(
                lambda: all(tag in self._arrived for tag in tags), max(0.0, deadline - time.monotonic())
            )
            return {tag: self._arrived[tag] for tag in tags if tag in self._arrived}


# -- the smtplib load ------------------------------------------------------------


@dataclass
class Sent:
    started: float  # monotonic, before MAIL FROM
    accepted: float  # monotonic, after the 250 to the end of data
    queue_id: str | None


@dataclass
class LoadResult:
    sent: dict[str, Sent] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    timed_out: bool = False

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def smtp_load(
    port: int, tags: Sequence[str], size: int, concurrency: int, login: bool, max_seconds: float
) -> LoadResult:
    """Sends one message per tag from `concurrency` threads, each on one connection (reopened on error)."""
    result, lock = LoadResult(), threading.Lock()
    todo = iter(list(tags))
    deadline = time.monotonic() + max_seconds

    def take() -> str | None:
        with lock:
            if time.monotonic() > deadline:
                result.timed_out = True
                return None
            return next(todo, None)

    def connect() -> smtplib.SMTP:
        client = smtplib.SMTP(HOST, port, local_hostname="client.crepes.fr", timeout=SMTP_TIMEOUT)
        client.ehlo()
        if login:
            client.login(USER, PASSWORD)
        return client

    def worker() -> None:
        client: smtplib.SMTP | None = None
        errors_in_a_row = 0
        while errors_in_a_row < 3 and (tag := take()) is not None:
            message = make_message(tag, size)
            try:
                client = client or connect()
                started = time.monotonic()
                code, reply = client.mail(USER, [f"SIZE={len(message)}"])
                if code != 250:
                    raise smtplib.SMTPResponseException(code, reply)
                code, reply = client.rcpt(RECIPIENT)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, reply)
                code, reply = client.data(message)
                accepted = time.monotonic()
                if code != 250:
                    raise smtplib.SMTPResponseException(code, reply)
            except (smtplib.SMTPException, OSError) as exc:
                with lock:
                    result.failures[f"{type(exc).__name__}: {exc}"[:70]] += 1
                errors_in_a_row += 1
                if client is not None:
                    with contextlib.suppress(smtplib.SMTPException, OSError):
                        client.close()
                client = None
                continue
            errors_in_a_row = 0
            queued = QUEUED_AS.search(reply)
            with lock:
                result.sent[tag] = Sent(started, accepted, queued.group(1).decode() if queued else None)
        if client is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()

    # Daemons: on Ctrl-C the bench unwinds at once and stops the stack; these then fail and end.
    threads = [
        threading.Thread(target=worker, name=f"bench-smtp-{i}", daemon=True) for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


# -- subprocesses ----------------------------------------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}


def start_sink(stack: contextlib.ExitStack, workdir: Path) -> tuple[Child, SinkLog, int]:
    log = workdir / "sink.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", "sink"],
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
        )
    child = Child("sink", process, log)
    stack.callback(child.stop)
    assert process.stdout is not None
    first = process.stdout.readline().decode().strip()  # the sink prints READY before anything else
    if not first.startswith("READY "):
        child.check_alive()
        raise RuntimeError(f"the sink said {first!r}")
    return child, SinkLog(process.stdout), int(first.split()[1])


@dataclass
class Stack:
    child: Child
    submission_port: int
    env_file: Path


def start_stack(stack: contextlib.ExitStack, workdir: Path, sink_port: int) -> Stack:
    smtp, submission, imap, pop3, aws, http = free_ports(6)
    command = [str(VENV_BIN / "mailpipe"), "dev", "--domain", DOMAIN, "--user", f"{USER}:{PASSWORD}"]
    command += ["--transport", f"{SINK_DOMAIN}=smtp:[{HOST}]:{sink_port}"]
    command += ["--template", str(REPO_ROOT / "template.yaml"), "--host", HOST]
    ports = {"--smtp-port": smtp, "--submission-port": submission, "--imap-port": imap}
    ports |= {"--pop3-port": pop3, "--aws-port": aws, "--http-port": http}
    for option, port in ports.items():
        command += [option, str(port)]
    stack_dir = workdir / "stack"
    stack_dir.mkdir()
    log = workdir / "stack.log"
    with log.open("wb") as output:  # a file, never a pipe: the stack logs every message
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=stack_dir,
            env=clean_env(),
        )
    child = Child("mailpipe dev", process, log, stop_signal=signal.SIGINT, stop_timeout=STOP_TIMEOUT)
    stack.callback(child.stop)
    deadline = time.monotonic() + START_TIMEOUT
    while b"mailpipe dev ready" not in log.read_bytes():
        child.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"mailpipe dev did not come up within {START_TIMEOUT:.0f}s")
        time.sleep(0.2)
    return Stack(child, submission, stack_dir / ".mailpipe" / "dev.env")


def first_attempts(stack: Stack, queue_ids: set[str]) -> dict[str, float]:
    """When the outbound function first took each envelope (monotonic), from the outbound state table."""
    import boto3

    env = dict(re.findall(r"^export (\w+)=(.*)$", stack.env_file.read_text(), re.MULTILINE))
    table = boto3.resource(
        "dynamodb",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table(env["MAILPIPE_OUTBOUND_TABLE"])
    found: dict[str, float] = {}
    kwargs: dict[str, Any] = {"ProjectionExpression": "pk, first_attempt"}
    while True:
        page = table.scan(**kwargs)
        for item in page["Items"]:
            queue_id = item["pk"].removeprefix("msg#")
            if queue_id in queue_ids and item.get("first_attempt"):
                wall = datetime.fromisoformat(item["first_attempt"]).timestamp()
                found[queue_id] = wall - WALL_MINUS_MONOTONIC
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# -- one concurrency -------------------------------------------------------------


@dataclass
class Run:
    """One measured run: what was sent, when each arrived, and the stack's CPU over it."""

    concurrency: int
    config: str
    tags: list[str]
    load: LoadResult
    arrived: dict[str, float]
    outbound_start: dict[str, float] = field(default_factory=dict)
    stack_cpu: float | None = None

    @property
    def delivered(self) -> int:
        return len(self.arrived)

    @property
    def complete(self) -> bool:
        return len(self.arrived) == len(self.tags)

    @property
    def elapsed(self) -> float | None:
        if not self.load.sent or not self.arrived:
            return None
        return max(self.arrived.values()) - min(s.started for s in self.load.sent.values())

    @property
    def rate(self) -> float | None:
        elapsed = self.elapsed
        return self.delivered / elapsed if elapsed else None

    @property
    def submit_rate(self) -> float | None:
        sent = self.load.sent.values()
        if not sent:
            return None
        elapsed = max(s.accepted for s in sent) - min(s.started for s in sent)
        return len(sent) / elapsed if elapsed else None

    @property
    def drain(self) -> float | None:
        if not self.load.sent or not self.arrived:
            return None
        return max(self.arrived.values()) - max(s.accepted for s in self.load.sent.values())

    def latencies(self) -> list[float]:
        return [self.arrived[t] - s.started for t, s in self.load.sent.items() if t in self.arrived]

    def stages(self) -> tuple[list[float], list[float], list[float]]:
        """Per message: submission (start -> 250), inbound side (250 -> first attempt), outbound side."""
        submit, inbound, outbound = [], [], []
        for tag, sent in self.load.sent.items():
            submit.append(sent.accepted - sent.started)
            begun = self.outbound_start.get(sent.queue_id or "")
            if begun is not None and tag in self.arrived:
                inbound.append(begun - sent.accepted)
                outbound.append(self.arrived[tag] - begun)
        return submit, inbound, outbound


def run_pipeline(
    stack: Stack, sink: SinkLog, prefix: str, count: int, concurrency: int, args: argparse.Namespace
) -> Run:
    tags = [f"{prefix}-{i}" for i in range(count)]
    cpu_before = process_cpu_seconds(stack.child.pid)
    load = smtp_load(stack.submission_port, tags, args.size, concurrency, True, args.max_seconds)
    sent = [tag for tag in tags if tag in load.sent]
    arrived = sink.wait_for(sent, time.monotonic() + args.max_seconds)
    cpu = process_cpu_seconds(stack.child.pid) - cpu_before
    stack.child.check_alive()
    run = Run(concurrency, "end to end", tags, load, arrived, stack_cpu=cpu)
    if not prefix.startswith("warm"):
        queue_ids = {s.queue_id for s in load.sent.values() if s.queue_id}
        run.outbound_start = first_attempts(stack, queue_ids)
    return run


def run_ceiling(
    sink_port: int, sink: SinkLog, prefix: str, count: int, concurrency: int, args: argparse.Namespace
) -> Run:
    tags = [f"{prefix}-{i}" for i in range(count)]
    load = smtp_load(sink_port, tags, args.size, concurrency, False, args.max_seconds)
    arrived = sink.wait_for([tag for tag in tags if tag in load.sent], time.monotonic() + 10)
    return Run(concurrency, "ceiling", tags, load, arrived)


def report(run: Run) -> Run:
    """Prints one run as soon as it is measured (the table comes at the end)."""
    note = "" if run.complete else f" ({len(run.tags) - run.delivered} missing)"
    print(
        f"  c={run.concurrency:<3} {run.config:<10} {run.delivered} delivered"
        f" in {fmt(run.elapsed, '.1f')}s{note}",
        flush=True,
    )
    return run


def run_all(args: argparse.Namespace) -> tuple[list[Run], int]:
    runs: list[Run] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mailpipe-bench-") as tmp:
        workdir = Path(tmp)
        print("starting the sink and mailpipe dev ...", flush=True)
        sink_child, sink, sink_port = start_sink(stack, workdir)
        dev = start_stack(stack, workdir, sink_port)
        for concurrency in args.concurrency:
            warmup = max(args.warmup, concurrency)
            run_ceiling(sink_port, sink, f"warm-ceil-c{concurrency}", warmup, concurrency, args)
            runs.append(
                report(run_ceiling(sink_port, sink, f"ceil-c{concurrency}", args.messages, concurrency, args))
            )
            sink_child.check_alive()
            warm = run_pipeline(dev, sink, f"warm-e2e-c{concurrency}", warmup, concurrency, args)
            if not warm.complete:
                raise RuntimeError(f"warm-up: {warm.delivered} of {warmup} delivered; see the stack's log")
            runs.append(
                report(run_pipeline(dev, sink, f"e2e-c{concurrency}", args.messages, concurrency, args))
            )
        return runs, sink.duplicates


# -- printing --------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def percentile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(value: float | None, spec: str = ".0f") -> str:
    return fmt(None if value is None else value * 1000, spec)


def print_table(runs: list[Run]) -> None:
    by_key = {(run.concurrency, run.config): run for run in runs}
    header = (
        f"{'N':>5} {'conc':>4}  {'e2e msgs/s':>10} {'ceiling msgs/s':>14} {'ratio':>7}"
        f"  {'submit msgs/s':>13} {'drain s':>7} {'e2e p50 ms':>10} {'e2e p99 ms':>10}"
        f" {'ceil p50 ms':>11} {'stack CPU ms/msg':>16}"
    )
    print(header)
    print("-" * len(header))
    for concurrency in sorted({run.concurrency for run in runs}):
        e2e, ceiling = by_key[(concurrency, "end to end")], by_key[(concurrency, "ceiling")]
        ratio = e2e.rate / ceiling.rate if e2e.rate and ceiling.rate else None
        cpu = e2e.stack_cpu * 1000 / e2e.delivered if e2e.stack_cpu is not None and e2e.delivered else None
        lat, ceil_lat = e2e.latencies(), ceiling.latencies()
        note = "" if e2e.complete and ceiling.complete else "  (incomplete)"
        print(
            f"{len(e2e.tags):>5} {concurrency:>4}  {fmt(e2e.rate, '.1f'):>10} {fmt(ceiling.rate, '.1f'):>14}"
            f" {fmt(ratio, '.3f'):>7}  {fmt(e2e.submit_rate, '.1f'):>13} {fmt(e2e.drain, '.1f'):>7}"
            f" {ms(percentile(lat, 50)):>10} {ms(percentile(lat, 99)):>10}"
            f" {ms(percentile(ceil_lat, 50), '.1f'):>11}"
            f" {fmt(cpu, '.1f'):>16}{note}"
        )
    print()
    print("end-to-end latency by stage, p50 / p99 ms (matched by queue id in the outbound state table)")
    print(
        f"{'conc':>4}  {'submission (to 250)':>20} {'inbound side':>16} {'outbound side':>16} {'matched':>8}"
    )
    for concurrency in sorted({run.concurrency for run in runs}):
        e2e = by_key[(concurrency, "end to end")]
        submit, inbound, outbound = e2e.stages()
        cells = [f"{ms(percentile(v, 50))} / {ms(percentile(v, 99))}" for v in (submit, inbound, outbound)]
        print(f"{concurrency:>4}  {cells[0]:>20} {cells[1]:>16} {cells[2]:>16} {len(outbound):>8}")


def print_failures(runs: list[Run], duplicates: int) -> None:
    print(f"\nfailures: {sum(run.load.failed for run in runs)}; duplicates at the sink: {duplicates}")
    for run in runs:
        for reason, n in run.load.failures.most_common(5):
            print(f"  c={run.concurrency} {run.config}: {n} x {reason}")


def print_preamble(args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"mailpipe outbound bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}"
    )
    print(
        f"{args.messages} messages of {args.size} bytes per run, concurrency {args.concurrency}, "
        f"warm-up {args.warmup}, one smtplib connection per client"
    )


# -- the sink (run as a subprocess by the bench) ---------------------------------


class _SinkHandler:
    """Answers 250 and prints `<tag> <monotonic arrival time>` for every message."""

    def __init__(self) -> None:
        self.out = sys.stdout.buffer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.monotonic()
        data: bytes = envelope.original_content or b""
        found = TAG_PATTERN.search(data, 0, data.find(b"\r\n\r\n") + 1 or 8192)
        tag = found.group(1).decode("ascii", "replace") if found else "untagged"
        self.out.write(f"{tag} {arrived:.6f}\n".encode())
        self.out.flush()
        return "250 2.0.0 Ok"


async def _serve_sink() -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = _SinkHandler()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.test"), HOST, 0)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


# -- command line ----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (fewer messages)")
    parser.add_argument("--messages", type=int, help="messages per measured run (default 600, quick 100)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 10],
        help="comma-separated concurrencies (default 1,10)",
    )
    parser.add_argument(
        "--size", type=int, default=MESSAGE_SIZE, help="message size in bytes (default 10240)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="warm-up messages (at least the concurrency)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        help="time limit of each load and of its delivery (default 120, quick 40)",
    )
    parser.add_argument("--serve", choices=["sink"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 100 if args.quick else 600
    if args.max_seconds is None:
        args.max_seconds = 40.0 if args.quick else 120.0
    if args.messages < 1 or args.size < 500 or min(args.concurrency) < 1:
        parser.error("--messages and --concurrency must be positive, --size at least 500")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "sink":
        asyncio.run(_serve_sink())
        return 0
    signal.signal(signal.SIGTERM, raise_interrupt)
    print_preamble(args)
    runs, duplicates = run_all(args)
    print()
    print_table(runs)
    print_failures(runs, duplicates)
    bad = any(run.load.failed or run.load.timed_out or not run.complete for run in runs)
    return 1 if bad or duplicates else 0


if __name__ == "__main__":
    with interrupt_as_exit():
        sys.exit(main())
