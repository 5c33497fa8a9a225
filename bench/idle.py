"""IDLE at scale on the dev stack: AWS requests per second, and how long new mail takes to reach
every IDLE-ing session.

Run by hand from the repository root:

    .venv/bin/python bench/idle.py                      # 1, 100, 1000 sessions over 1 and 100 mailboxes
    .venv/bin/python bench/idle.py --sessions 1 100 --mailboxes 1 --window 5

It starts `mailpipe dev` (every port chosen by the system, in a temporary directory) with 100
users, and for each case opens the sessions (each logs in as one of the case's users, SELECTs
INBOX and IDLEs; sessions spread evenly over the mailboxes), then:
- counts the AWS requests moto answers over `--window` quiet seconds (moto_server.RequestCounter,
  read over HTTP): by service, so the change feed's own long poll (SQS) and the relay's stream
  reads (DynamoDB Streams) show apart from the store's (DynamoDB, S3). The store's must not grow
  with the sessions: with the change feed, IDLE polls nothing.
- sends one message over SMTP to every user of the case, `--rounds` times, and times each session
  from the gateway's 250 to its `* n EXISTS`. That covers the whole pipeline (spool, poller,
  inbound function, store, the change feed's relay, SNS, SQS, the gateway's memory and wake-ups).
  The target (issue 11) is under one second for every session. Over many mailboxes, the
  message's copies are stored a few at a time (inbound.COPY_THREADS), so the last mailbox's
  copy is committed later than the first; the "same mailbox spread" column times each session
  from the first session of its mailbox to see the message: the feed's fan-out inside the process.
Each case's row is printed when it is done; a session that has not seen a round's message after
ROUND_TIMEOUT counts as missed (inf).
The ratio column compares each case's store requests per second with the first case's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
USERS = 100
STORE_SERVICES = ("dynamodb", "s3")
ROUND_TIMEOUT = 120  # seconds a round waits; a session still waiting then counts as missed (inf)


def user(n: int) -> str:
    return f"idle{n}@example.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_stack(directory: str, sessions: int) -> tuple[subprocess.Popen[str], dict[str, int]]:
    ports = {name: free_port() for name in ("smtp", "submission", "imap", "pop3", "aws")}
    command = [sys.executable, "-m", "mailpipe_tools.cli", "dev"]
    for n in range(USERS):
        command += ["--user", f"{user(n)}:{PASSWORD}"]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    # This tree's code, not whichever the virtualenv's `mailpipe` was installed from.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "layers/core"), str(REPO / "gateway"), str(REPO / "tools")]
    )
    env["MAILPIPE_IMAP_MAX_SESSIONS_PER_USER"] = str(sessions + 10)  # 1,000 sessions of one user
    log = Path(directory) / "dev.log"  # a file, not a pipe: a pipe nobody reads fills and stalls it
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    deadline = time.monotonic() + 300
    while "mailpipe dev ready" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"mailpipe dev did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process, ports


def requests(ports: dict[str, int]) -> Counter[str]:
    url = f"http://127.0.0.1:{ports['aws']}/_mailpipe/requests"
    with urllib.request.urlopen(url, timeout=10) as response:
        return Counter(json.loads(response.read()))


def wait_until_quiet(ports: dict[str, int], limit: float = 300) -> None:
    """Wait for the stack's start-up work to end: the prune function runs once at start (as its
    schedule would) and reads every mailbox of the 100 users, which is not IDLE's cost."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = requests(ports)
        time.sleep(2)
        store = by_service(requests(ports) - before)
        if not any(store[service] for service in STORE_SERVICES):
            return
    print("the stack's start-up requests did not end; measuring anyway", file=sys.stderr)


def by_service(counts: Counter[str]) -> Counter[str]:
    services: Counter[str] = Counter()
    for kind, count in counts.items():
        services[kind.split(":", 1)[0]] += count
    return services


class Session:
    def __init__(self, address: str) -> None:
        self.address = address
        self.exists = 0
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        await self.reader.readline()
        self.writer.write(f'a LOGIN {self.address} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while True:
            line = await self.reader.readline()
            if not line:
                raise SystemExit(f"session of {self.address} closed while opening")
            if line.endswith(b" EXISTS\r\n"):
                self.exists = int(line.split()[1])
            if line.startswith(b"b "):
                if not line.startswith(b"b OK"):
                    raise SystemExit(f"SELECT failed: {line!r}")
                break
        self.writer.write(b"c IDLE\r\n")
        if not (await self.reader.readline()).startswith(b"+"):
            raise SystemExit("IDLE refused")

    async def until_exists(self, n: int) -> float:
        while self.exists < n:
            line = await self.reader.readline()
            if not line:
                raise SystemExit("an IDLE session closed")
            if line.endswith(b" EXISTS\r\n"):
                self.exists = int(line.split()[1])
        return time.monotonic()

    async def close(self) -> None:
        self.writer.write(b"DONE\r\nd LOGOUT\r\n")
        self.writer.close()


def send(ports: dict[str, int], recipients: list[str], n: int) -> float:
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=60) as smtp:
        smtp.sendmail("alice@remote.test", recipients, f"Subject: idle {n}\r\n\r\nhello\r\n".encode())
        return time.monotonic()


async def run_case(ports: dict[str, int], sessions: int, mailboxes: int, window: float, rounds: int) -> dict:
    addresses = [user(n % mailboxes) for n in range(sessions)]
    opened: list[Session] = []
    for start in range(0, sessions, 50):  # a few at a time: each LOGIN hashes a password
        batch = [Session(a) for a in addresses[start : start + 50]]
        await asyncio.gather(*(s.open(ports["imap"]) for s in batch))
        opened += batch
    await asyncio.sleep(2)  # past the logins' own requests
    before, started = requests(ports), time.monotonic()
    await asyncio.sleep(window)
    counts = requests(ports) - before
    elapsed = time.monotonic() - started
    per_second = {service: count / elapsed for service, count in by_service(counts).items()}
    latencies: list[float] = []  # from the 250; math.inf for a session that never saw it
    fan_out: list[float] = []  # from the first session of the same mailbox to see it
    recipients = sorted(set(addresses))
    for _ in range(rounds):
        targets = {s: s.exists + 1 for s in opened}
        waits = {s: asyncio.ensure_future(s.until_exists(targets[s])) for s in opened}
        sent = await asyncio.to_thread(send, ports, recipients, len(latencies))
        await asyncio.wait(waits.values(), timeout=ROUND_TIMEOUT)
        first: dict[str, float] = {}
        for session, wait in waits.items():
            if wait.done() and not wait.exception():
                first[session.address] = min(first.get(session.address, math.inf), wait.result())
        for session, wait in waits.items():
            if wait.done() and not wait.exception():
                latencies.append(max(0.0, wait.result() - sent))
                fan_out.append(wait.result() - first[session.address])
            else:
                wait.cancel()
                latencies.append(math.inf)
        if any(x == math.inf for x in latencies):
            break  # a session that missed a round is out of step with the next
    await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
    await asyncio.sleep(1)
    return {"per_second": per_second, "latencies": latencies, "fan_out": fan_out, "kinds": counts}


def print_header() -> None:
    print(
        "sessions mailboxes | store req/s (DynamoDB+S3)  ratio | feed SQS req/s  streams req/s |"
        " new mail -> EXISTS: median  max  under 1 s | same mailbox spread: median  max",
        flush=True,
    )


def print_row(sessions: int, mailboxes: int, result: dict, baseline: float | None) -> float:
    rates = result["per_second"]
    store = sum(rates.get(s, 0.0) for s in STORE_SERVICES)
    ratio = f"{store / baseline:5.2f}x" if baseline else "  n/a"
    ms = sorted(1000 * x for x in result["latencies"])
    spread = sorted(1000 * x for x in result["fan_out"]) or [math.nan]
    under = sum(1 for x in ms if x < 1000)
    print(
        f"{sessions:8d} {mailboxes:9d} | {store:24.2f}  {ratio} | {rates.get('sqs', 0.0):14.2f}"
        f"  {rates.get('dynamodbstreams', 0.0):13.2f} | {statistics.median(ms):7.0f} ms"
        f" {ms[-1]:5.0f} ms  {under}/{len(ms)} | {statistics.median(spread):7.0f} ms {spread[-1]:5.0f} ms",
        flush=True,
    )
    store_kinds = {k: v for k, v in result["kinds"].items() if k.split(":")[0] in STORE_SERVICES}
    if store_kinds:
        print(f"{'':20}store requests in the window: {dict(sorted(store_kinds.items()))}", flush=True)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--mailboxes", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--window", type=float, default=10.0, help="seconds of quiet IDLE counted")
    parser.add_argument("--rounds", type=int, default=3, help="messages sent per case")
    args = parser.parse_args()
    cases = [(s, m) for m in args.mailboxes for s in args.sessions if m <= min(s, USERS)]
    with tempfile.TemporaryDirectory() as directory:
        process, ports = start_stack(directory, max(args.sessions))
        try:
            wait_until_quiet(ports)
            print_header()
            baseline = None
            for sessions, mailboxes in cases:
                print(f"{sessions} sessions over {mailboxes} mailboxes...", file=sys.stderr, flush=True)
                result = asyncio.run(run_case(ports, sessions, mailboxes, args.window, args.rounds))
                store = print_row(sessions, mailboxes, result, baseline)
                baseline = store if baseline is None else baseline
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
