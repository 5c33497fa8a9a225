"""Ingest benchmark: mailpipe's SMTP gateway against a bare aiosmtpd server and the moto ceiling.

Run by hand from the repository root:

    .venv/bin/python bench/ingest.py            # full run, about 4 minutes
    .venv/bin/python bench/ingest.py --quick    # about 45 seconds

For 10 KB messages at each concurrency it measures, one after the other:

  (a) bare     a bare aiosmtpd server (its own subprocess) whose DATA handler answers "250 OK";
  (b) gateway  `mailpipe gateway` (its own subprocess) on a moto server (its own subprocess),
               with the resources of template.yaml: SMTP -> S3 PutObject + SQS SendMessage;
  (c) ceiling  boto3 threads in this process doing the same PutObject + SendMessage straight
               to the same moto server, with no SMTP.
  (d) auth     a second `mailpipe gateway` like (b) but with inbound authentication on (SPF for
               MAIL FROM and HELO, DKIM, DMARC, ARC), its DNS a dnslib server on loopback (its own
               subprocess) that answers at once; (b) runs with MAILPIPE_INBOUND_AUTH=off, so
               (d)/(b) is what authentication costs the gateway per message.

Every message carries a DKIM signature (rsa-sha256, relaxed/simple) of origin.test, whose SPF
authorises 127.0.0.1 and whose DMARC is p=reject: in (d) each one passes all three.

Throughput is messages per wall-clock second of the measured run; CPU is utime+stime of the
server process (from /proc/<pid>/stat) over that run, divided by the messages sent. The SMTP
load comes from a minimal asyncio client in this process (EHLO once per connection, then
pipelined MAIL/RCPT/DATA, up to --per-connection messages per connection). No inbound poller
runs: this measures ingest only.

`--serve bare`, `--serve moto` and `--serve dns` are the helper servers this script starts as subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
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
REGION = "us-east-1"
DOMAIN = "bench.test"
SENDER = "sender@origin.test"
RECIPIENT = f"rcpt@{DOMAIN}"
MESSAGE_SIZE = 10 * 1024
REPLY_TIMEOUT = 30.0  # seconds to wait for any one SMTP reply
START_TIMEOUT = 60.0  # seconds for a subprocess to come up
PURGE_INTERVAL = 0.25  # seconds between purges of the inbound queue (see `purging`)

# Targets for later work (see the module docstring for what a, b and c are).
TARGET_CPU_RATIO = 1.5  # gateway CPU per message <= 1.5x the bare handler's
TARGET_THROUGHPUT_RATIO = 0.8  # gateway throughput >= 0.8x the moto ceiling

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


# -- measuring -------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one load run saw; the CPU figures are filled in by `measure`."""

    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    timed_out: bool = False
    server_cpu: float | None = None
    moto_cpu: float | None = None

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def fail(self, reason: str) -> None:
        self.failures[reason[:60]] += 1


@dataclass(frozen=True)
class Row:
    concurrency: int
    config: str
    result: LoadResult

    @property
    def rate(self) -> float:
        return self.result.ok / self.result.elapsed if self.result.elapsed else 0.0

    def per_message_ms(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.result.ok else cpu * 1000 / self.result.ok


def measure(run: Callable[[], LoadResult], server_pid: int | None, moto_pid: int | None) -> LoadResult:
    """Runs one load, reading the server's (and moto's) CPU time before and after it."""
    before = {pid: process_cpu_seconds(pid) for pid in (server_pid, moto_pid) if pid}
    result = run()
    after = {pid: process_cpu_seconds(pid) for pid in before}
    if server_pid:
        result.server_cpu = after[server_pid] - before[server_pid]
    if moto_pid:
        result.moto_cpu = after[moto_pid] - before[moto_pid]
    return result


# -- the message -----------------------------------------------------------------


def make_message(size: int) -> bytes:
    """A `size`-byte message (CRLF lines, nothing to dot-stuff) followed by the DATA terminator."""
    head = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: ingest bench\r\n"
        "Message-ID: <bench@origin.test>\r\nMIME-Version: 1.0\r\n"
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
    return text + b".\r\n"


DKIM_SELECTOR = "bench"


def signing_key() -> tuple[bytes, str]:
    """A fresh RSA-2048 key: (PEM private key, the DNS TXT value publishing it)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def sign(message: bytes, private: bytes) -> bytes:
    """The message (with its DATA terminator) with a DKIM-Signature of the sender's domain on top."""
    import dkim

    text = message[: -len(b".\r\n")]
    signature = dkim.sign(text, DKIM_SELECTOR.encode(), SENDER.split("@")[1].encode(), private)
    return signature + message


def dns_zone(record: str) -> str:
    """The sender domain's SPF, DMARC and DKIM records, for the `--serve dns` helper."""
    domain = SENDER.split("@")[1]
    key = " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
    return (
        f'{domain}. 3600 IN TXT "v=spf1 ip4:{HOST} -all"\n'
        f'_dmarc.{domain}. 3600 IN TXT "v=DMARC1; p=reject"\n'
        f"{DKIM_SELECTOR}._domainkey.{domain}. 3600 IN TXT {key}\n"
    )


# -- the SMTP load client --------------------------------------------------------


class SmtpError(Exception):
    """An unexpected reply or a broken connection; the connection is dropped."""


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One (possibly multi-line) SMTP reply: its code and its last line."""
    while True:
        line = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT)
        if not line:
            raise SmtpError("connection closed")
        text = line.decode("ascii", "replace").rstrip("\r\n")
        if text[3:4] != "-":
            try:
                return int(text[:3]), text
            except ValueError:
                raise SmtpError(f"bad reply {text!r}") from None


async def expect(reader: asyncio.StreamReader, code: int, what: str) -> None:
    got, text = await read_reply(reader)
    if got != code:
        raise SmtpError(f"{what}: {text}")


class SmtpLoad:
    """`count` messages over `concurrency` connections, each reused for up to `per_connection` messages."""

    def __init__(self, port: int, message: bytes, count: int, concurrency: int, per_connection: int) -> None:
        self.port = port
        self.message = message
        self.remaining = count
        self.concurrency = concurrency
        self.per_connection = per_connection
        self.result = LoadResult()
        self.transaction = (
            f"MAIL FROM:<{SENDER}> SIZE={len(message)}\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n"
        ).encode()

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    async def run(self, max_seconds: float) -> LoadResult:
        start = time.monotonic()
        workers = [asyncio.create_task(self.worker()) for _ in range(self.concurrency)]
        done, pending = await asyncio.wait(workers, timeout=max_seconds)
        if pending:
            self.result.timed_out = True
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a bug in the client should not pass for a result
        self.result.elapsed = time.monotonic() - start
        return self.result

    async def worker(self) -> None:
        errors_in_a_row = 0
        while self.remaining > 0 and errors_in_a_row < 3:
            try:
                await self.connection()
                errors_in_a_row = 0
            except (SmtpError, OSError, TimeoutError) as exc:
                # The message in flight failed; reconnect, but give up on a server that keeps failing.
                self.result.fail(str(exc) or type(exc).__name__)
                errors_in_a_row += 1
                await asyncio.sleep(0.1)

    async def connection(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), REPLY_TIMEOUT)
        try:
            await expect(reader, 220, "banner")
            writer.write(b"EHLO client.origin.test\r\n")
            await expect(reader, 250, "EHLO")
            for _ in range(self.per_connection):
                if not self.take():
                    break
                await self.send_one(reader, writer)
            writer.write(b"QUIT\r\n")
            await expect(reader, 221, "QUIT")
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def send_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        began = time.monotonic()
        writer.write(self.transaction)  # PIPELINING: MAIL, RCPT and DATA in one write
        await expect(reader, 250, "MAIL")
        await expect(reader, 250, "RCPT")
        await expect(reader, 354, "DATA")
        writer.write(self.message)
        code, text = await read_reply(reader)
        if code != 250:
            self.result.fail(f"end of DATA: {text}")
            return
        self.result.ok += 1
        self.result.latencies.append(time.monotonic() - began)


def smtp_load(
    port: int, message: bytes, count: int, concurrency: int, args: argparse.Namespace
) -> LoadResult:
    load = SmtpLoad(port, message, count, concurrency, args.per_connection)
    return asyncio.run(load.run(args.max_seconds))


# -- the moto ceiling: boto3 straight to moto ------------------------------------


@dataclass(frozen=True)
class Aws:
    endpoint: str

    def session(self) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )

    def client(self, service: str, pool: int = 10) -> Any:
        from botocore.config import Config

        config = Config(
            connect_timeout=3,
            read_timeout=20,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=pool,
        )
        return self.session().client(service, endpoint_url=self.endpoint, config=config)

    def table(self, name: str) -> Any:
        return self.session().resource("dynamodb", endpoint_url=self.endpoint).Table(name)


def boto3_load(
    aws: Aws, stack: dict[str, str], message: bytes, count: int, concurrency: int, max_seconds: float
) -> LoadResult:
    """PutObject + SendMessage per message, `concurrency` threads; server_cpu is the threads' CPU."""
    from mailpipe.spool import Envelope, EnvelopeRecipient, new_queue_id, now_utc, spool_key

    s3, sqs = aws.client("s3", concurrency), aws.client("sqs", concurrency)
    bucket, queue_url = stack["MAILPIPE_MAIL_BUCKET"], stack["MAILPIPE_INBOUND_QUEUE_URL"]
    body = message[: -len(b".\r\n")]
    result, lock = LoadResult(), threading.Lock()

    def put_one() -> None:
        began, cpu = time.monotonic(), time.thread_time()
        queue_id, when = new_queue_id(), now_utc()
        envelope = Envelope(
            queue_id,
            SENDER,
            (EnvelopeRecipient(RECIPIENT),),
            spool_key(queue_id, when),
            len(body),
            when.isoformat(),
        )
        try:
            s3.put_object(Bucket=bucket, Key=envelope.s3_key, Body=body, ContentType="message/rfc822")
            sqs.send_message(QueueUrl=queue_url, MessageBody=envelope.to_json())
        except Exception as exc:
            with lock:
                result.fail(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            result.ok += 1
            result.latencies.append(time.monotonic() - began)
            result.server_cpu = (result.server_cpu or 0.0) + time.thread_time() - cpu

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-boto3")
    start = time.monotonic()
    try:
        futures = [pool.submit(put_one) for _ in range(count)]
        _, pending = wait_futures(futures, timeout=max_seconds)
        result.timed_out = bool(pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    result.elapsed = time.monotonic() - start
    return result


# -- subprocesses ----------------------------------------------------------------


def spawn(
    stack: contextlib.ExitStack,
    name: str,
    command: Sequence[str],
    logs: Path,
    env: dict[str, str] | None = None,
) -> Child:
    """Starts a subprocess that the exit stack stops again, whatever happens."""
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=sink, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL
        )
    child = Child(name, process, log)
    stack.callback(child.stop)
    return child


def read_ready(child: Child) -> str:
    """The argument of the helper's `READY <arg>` line."""
    assert child.process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        child.check_alive()
        readable, _, _ = select.select([child.process.stdout], [], [], 0.5)
        if readable:
            line = child.process.stdout.readline().decode().strip()
            if line.startswith("READY "):
                return line.split(" ", 1)[1]
            child.check_alive()
    raise RuntimeError(f"{child.name} did not come up within {START_TIMEOUT:.0f}s")


def wait_for_smtp(child: Child, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer on port {port} within {START_TIMEOUT:.0f}s")


def helper_command(kind: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--serve", kind]


@contextlib.contextmanager
def purging(aws: Aws, queue_url: str, interval: float = PURGE_INTERVAL) -> Iterator[None]:
    """Keeps the inbound queue near empty, as the inbound function does on AWS.

    moto's SendMessage reads the queue's attributes, which counts every message in the queue,
    so with no consumer each send gets slower (about +2 ms per 100 queued messages). Purging
    a few times a second keeps moto's cost per send flat; it costs moto a few requests a second.
    """
    sqs, stop = aws.client("sqs"), threading.Event()

    def purge() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a missed purge only lets the queue grow a little
                sqs.purge_queue(QueueUrl=queue_url)

    thread = threading.Thread(target=purge, name="bench-purge", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


# -- the stack: moto, the template's resources, the directory, the gateway ------


def provision_stack(aws: Aws) -> dict[str, str]:
    """Creates template.yaml's resources on moto and a domain and user; returns the functions' env."""
    from mailpipe.directory import Directory
    from mailpipe_tools.local.provision import provision
    from mailpipe_tools.local.template import Template

    template = Template.load()
    deployment = provision(template, aws.client("s3"), aws.client("sqs"), aws.client("dynamodb"))
    env = {k: deployment.resolve(v) for k, v in template.function_environment().items()}
    directory = Directory(aws.table(env["MAILPIPE_DIRECTORY_TABLE"]))
    directory.add_domain(DOMAIN)
    directory.add_user(RECIPIENT, "bench-password")
    return env


def gateway_env(
    endpoint: str, function_env: dict[str, str], port: int, dns_server: str | None = None
) -> dict[str, str]:
    """The gateway's environment; with `dns_server` inbound authentication is on and asks it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    env.update(function_env)
    env.update(AWS_ENV)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "MAILPIPE_SMTP_HOST": HOST,
            "MAILPIPE_SMTP_PORT": str(port),
            "MAILPIPE_HOSTNAME": "mx.bench.test",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
        }
    )
    if dns_server:
        env["MAILPIPE_DNS_SERVER"] = dns_server
    else:
        env["MAILPIPE_INBOUND_AUTH"] = "off"
    return env


@dataclass
class Servers:
    bare_port: int
    bare: Child
    gateway_port: int
    gateway: Child
    moto: Child
    aws: Aws
    stack_env: dict[str, str]
    auth_port: int
    auth: Child


def start_servers(stack: contextlib.ExitStack, logs: Path, zone: str) -> Servers:
    bare = spawn(stack, "bare", helper_command("bare"), logs)
    zone_file = logs / "zone.txt"
    zone_file.write_text(zone)
    dns = spawn(stack, "dns", [*helper_command("dns"), "--zone", str(zone_file)], logs)
    moto_env = {**os.environ, "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false"}
    moto = spawn(stack, "moto", helper_command("moto"), logs, moto_env)
    bare_port = int(read_ready(bare))
    aws = Aws(read_ready(moto))
    stack_env = provision_stack(aws)
    stack.enter_context(purging(aws, stack_env["MAILPIPE_INBOUND_QUEUE_URL"]))
    port, auth_port = free_ports(2)
    command = [str(VENV_BIN / "mailpipe"), "gateway"]
    gateway = spawn(stack, "gateway", command, logs, gateway_env(aws.endpoint, stack_env, port))
    dns_server = f"{HOST}:{read_ready(dns)}"
    auth_env = gateway_env(aws.endpoint, stack_env, auth_port, dns_server)
    auth = spawn(stack, "gateway-auth", command, logs, auth_env)
    wait_for_smtp(gateway, port)
    wait_for_smtp(auth, auth_port)
    return Servers(bare_port, bare, port, gateway, moto, aws, stack_env, auth_port, auth)


def check_authentication(port: int, message: bytes) -> None:
    """(d) measures nothing unless its checks really run: a tampered copy must get DMARC's 550."""
    import smtplib

    tampered = message[: -len(b".\r\n")].replace(b"xxxx", b"yyyy", 1)
    with smtplib.SMTP(HOST, port, timeout=REPLY_TIMEOUT) as client:
        client.ehlo("client.origin.test")
        client.mail("bounce@elsewhere.test")  # no SPF pass for origin.test to lean on
        client.rcpt(RECIPIENT)
        code, text = client.data(tampered)
    if code != 550:
        raise RuntimeError(f"the auth gateway accepted a message failing DMARC: {code} {text!r}")


# -- the run ---------------------------------------------------------------------


def run_all(args: argparse.Namespace) -> list[Row]:
    private, record = signing_key()
    message = sign(make_message(args.size), private)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mailpipe-bench-") as logs:
        print("starting the bare server, moto, DNS and the gateways ...", flush=True)
        servers = start_servers(stack, Path(logs), dns_zone(record))
        check_authentication(servers.auth_port, message)
        for concurrency in args.concurrency:
            rows.extend(run_concurrency(servers, message, concurrency, args))
    return rows


def run_concurrency(
    servers: Servers, message: bytes, concurrency: int, args: argparse.Namespace
) -> list[Row]:
    warmup = max(args.warmup, concurrency)
    count = args.messages
    smtp_targets = (
        ("a bare", servers.bare_port, servers.bare),
        ("b gateway", servers.gateway_port, servers.gateway),
        ("d auth", servers.auth_port, servers.auth),
    )
    rows = []
    for config, port, child in smtp_targets:
        smtp_load(port, message, warmup, concurrency, args)
        moto_pid = servers.moto.pid if child is not servers.bare else None
        result = measure(lambda p=port: smtp_load(p, message, count, concurrency, args), child.pid, moto_pid)
        child.check_alive()
        rows.append(report(Row(concurrency, config, result)))

    def ceiling(n: int) -> LoadResult:
        return boto3_load(servers.aws, servers.stack_env, message, n, concurrency, args.max_seconds)

    ceiling(warmup)
    result = measure(lambda: ceiling(count), None, servers.moto.pid)
    rows.append(report(Row(concurrency, "c ceiling", result)))
    return sorted(rows, key=lambda row: row.config)


def report(row: Row) -> Row:
    """Prints one row as soon as it is measured (the table comes at the end)."""
    print(
        f"  c={row.concurrency:<3} {row.config:<10} {row.result.ok} ok in {row.result.elapsed:.1f}s",
        flush=True,
    )
    return row


# -- printing --------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def percentile(values: list[float], q: float) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'conc':>4}  {'config':<10} {'ok':>6} {'fail':>5} {'secs':>6} {'msgs/s':>8}"
        f"  {'server CPU ms/msg':>17} {'moto CPU ms/msg':>15} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        r = row.result
        p50 = percentile(r.latencies, 50)
        p99 = percentile(r.latencies, 99)
        note = " (timed out)" if r.timed_out else ""
        print(
            f"{row.concurrency:>4}  {row.config:<10} {r.ok:>6} {r.failed:>5}"
            f" {r.elapsed:>6.1f} {row.rate:>8.1f}"
            f"  {fmt(row.per_message_ms(r.server_cpu)):>17} {fmt(row.per_message_ms(r.moto_cpu)):>15}"
            f" {fmt(p50 and p50 * 1000, '.1f'):>7} {fmt(p99 and p99 * 1000, '.1f'):>7}{note}"
        )
    print(
        "server CPU: (a) the bare server process, (b) and (d) the gateway process,"
        " (c) this process's boto3 threads"
    )


def print_ratios(rows: list[Row]) -> None:
    by_key = {(row.concurrency, row.config[0]): row for row in rows}
    print()
    print(
        f"{'conc':>4}  {'CPU/msg b/a':>11} {'target':>7} {'':>4}   {'msgs/s b/c':>10} {'target':>7}"
        f"   {'auth CPU ms/msg d-b':>19} {'d/b':>5}"
    )
    for concurrency in sorted({row.concurrency for row in rows}):
        a, b, c, d = (by_key[(concurrency, k)] for k in "abcd")
        cpu_a, cpu_b = a.per_message_ms(a.result.server_cpu), b.per_message_ms(b.result.server_cpu)
        cpu_d = d.per_message_ms(d.result.server_cpu)
        cpu_ratio = cpu_b / cpu_a if cpu_a and cpu_b is not None else None
        rate_ratio = b.rate / c.rate if c.rate else None
        auth_cost = cpu_d - cpu_b if cpu_d is not None and cpu_b is not None else None
        auth_ratio = cpu_d / cpu_b if cpu_d is not None and cpu_b else None
        print(
            f"{concurrency:>4}  {fmt(cpu_ratio):>11} {f'<={TARGET_CPU_RATIO}':>7} "
            f"{verdict(cpu_ratio, lambda x: x <= TARGET_CPU_RATIO):>4}   "
            f"{fmt(rate_ratio):>10} {f'>={TARGET_THROUGHPUT_RATIO}':>7} "
            f"{verdict(rate_ratio, lambda x: x >= TARGET_THROUGHPUT_RATIO):>4}"
            f"   {fmt(auth_cost):>19} {fmt(auth_ratio):>5}"
        )


def verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    return "n/a" if value is None else ("met" if ok(value) else "miss")


def print_failures(rows: list[Row]) -> None:
    failing = [row for row in rows if row.result.failures]
    print(f"\nfailures: {sum(row.result.failed for row in rows)}")
    for row in failing:
        for reason, n in row.result.failures.most_common(5):
            print(f"  c={row.concurrency} {row.config}: {n} x {reason}")


def print_preamble(args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"mailpipe ingest bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}"
    )
    print(
        f"{args.messages} messages of {args.size} bytes (plus a DKIM-Signature) per run, "
        f"concurrency {args.concurrency}, "
        f"up to {args.per_connection} per connection, warm-up {args.warmup}"
    )


# -- helper servers (run as subprocesses by the bench) ---------------------------


class _OkHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def _serve_bare() -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(_OkHandler(), hostname="bare.bench.test"), HOST, 0)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def _serve_dns(zone_file: Path) -> None:
    """The loopback DNS server of the tests (tests/dns_zone.py), answering from memory at once."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from dns_zone import serving

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with serving(zone_file.read_text(), both=True) as (port, _zone):
        print(f"READY {port}", flush=True)
        stop.wait()


def _serve_moto() -> None:
    from mailpipe_tools.local.moto_server import MotoServer

    server = MotoServer(HOST, 0)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"READY {server.endpoint}", flush=True)
    stop.wait()
    server.stop()


# -- command line ----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (fewer messages)")
    parser.add_argument("--messages", type=int, help="messages per measured run (default 4000, quick 600)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 20, 100],
        help="comma-separated concurrencies (default 1,20,100)",
    )
    parser.add_argument(
        "--size", type=int, default=MESSAGE_SIZE, help="message size in bytes (default 10240)"
    )
    parser.add_argument("--per-connection", type=int, default=100, help="messages per SMTP connection")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up messages (at least the concurrency)")
    parser.add_argument("--max-seconds", type=float, default=120, help="time limit of each measured run")
    parser.add_argument("--serve", choices=["bare", "moto", "dns"], help=argparse.SUPPRESS)
    parser.add_argument("--zone", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages is None:
        args.messages = 600 if args.quick else 4000
    if args.quick:
        args.max_seconds = min(args.max_seconds, 30)
    if args.messages < 1 or args.size < 200 or min(args.concurrency) < 1 or args.per_connection < 1:
        parser.error("--messages, --concurrency and --per-connection must be positive, --size at least 200")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "bare":
        asyncio.run(_serve_bare())
        return 0
    if args.serve == "moto":
        _serve_moto()
        return 0
    if args.serve == "dns":
        _serve_dns(args.zone)
        return 0
    signal.signal(signal.SIGTERM, raise_interrupt)
    print_preamble(args)
    rows = run_all(args)
    print()
    print_table(rows)
    print_ratios(rows)
    print_failures(rows)
    return 1 if any(row.result.failed or row.result.timed_out for row in rows) else 0


if __name__ == "__main__":
    with interrupt_as_exit():
        sys.exit(main())
