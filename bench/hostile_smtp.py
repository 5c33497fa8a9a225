"""Hostile clients against the SMTP gateway: what they cost it in memory and in event-loop stalls.

Run by hand from the repository root (not part of `make test`):

    .venv/bin/python bench/hostile_smtp.py                       # 1,000 connections, 2,000 fuzz lines
    .venv/bin/python bench/hostile_smtp.py --connections 200 --fuzz-lines 500

It starts the dev stack (the gateway; moto in a process of its own unless --moto-in-process; no
function pollers, as on AWS) in a child process, with a task on the gateway's event loop that
measures how late a 5 ms sleep wakes up (the loop's longest stall: mailpipe_gateway.loop_watch).
Then, from this process:

1. fuzzing: the seeded fuzzer of tests/test_smtp_fuzz.py, on port 25 and on submission;
2. hostile connections: N connections at once, half in DATA and half in the command phase,
   each sending --bytes-per-connection bytes without a line end, a piece at a time from
   every connection in turn, then the line end (each must be refused: 500 5.5.2, or 452 4.3.1
   once the data budget is spent).

It prints the child's RSS before and after each phase, its peak RSS during the hostile phase
(VmHWM, reset first through /proc/PID/clear_refs) and the longest loop stall in each phase.
The child is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bench@example.test", "bench-password"


def raise_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the child: the stack, a gateway of its own, and the loop-lag monitor --------------------------


def serve(moto_in_process: bool) -> None:
    from processes import moto_in_own_process

    from mailpipe_gateway.loop_watch import LoopWatch
    from mailpipe_tools.local.stack import DevOptions, DevStack

    raise_file_limit()
    # Our answers to the bench go out on the original stdout; the stack's own output (the
    # functions log JSON lines to stdout) goes nowhere, so that it never fills the pipe.
    answers = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    with contextlib.ExitStack() as resources:
        endpoint = None if moto_in_process else resources.enter_context(moto_in_own_process())
        options = DevOptions(
            smtp_port=0,
            submission_port=0,
            pop3_port=0,
            imap_port=0,
            aws_port=0,
            users=[(USER, PASSWORD)],
            state_dir=Path(tempfile.mkdtemp(prefix="hostile-smtp-")),
            transports=["*=smtp:[127.0.0.1]:1"],
            # As on AWS, the functions run elsewhere: this process is the gateway's (and moto's,
            # with --moto-in-process).
            run_pollers=False,
            aws_endpoint=endpoint,
        )
        stack = DevStack(options)
        stack.start()
        # The stack's own gateway takes 1,000 connections in all; this one takes the bench's.
        gateway = stack.build_gateway(stack.spool(), max_connections=5000)
        stack.loop.run(gateway.start())
        lag = LoopWatch()
        stack.loop.run(lag.start())
        print(
            json.dumps({"smtp": gateway.port, "submission": stack.submission_port}), file=answers, flush=True
        )
        for command in sys.stdin:
            if command.strip() == "stats":
                print(json.dumps({"max_lag_ms": lag.longest * 1000}), file=answers, flush=True)
                lag.reset()
            elif command.strip() == "quit":
                break
        stack.loop.run(lag.stop())
        stack.loop.run(gateway.stop())
        stack.stop()


# -- this process: the clients ---------------------------------------------------------------------


class Child:
    def __init__(self, moto_in_process: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "layers/core"), str(REPO / "gateway"), str(REPO / "tools")]
        )
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", *(["--moto-in-process"] if moto_in_process else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.ports: dict[str, int] = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while line := self.process.stdout.readline():
            if line.startswith("{"):
                return json.loads(line)
        raise SystemExit("the stack did not start")

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return self._read()

    def status(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def fuzz(ports: dict[str, int], lines: int, seed: int) -> int:
    """The tests' fuzzer (one line at a time, DATA and AUTH included); the replies it got."""
    for path in ("tests", "tools", "gateway", "layers/core"):
        sys.path.insert(0, str(REPO / path))
    from test_smtp_fuzz import BASES, Conversation, Fuzzer, ended

    rng = random.Random(seed)
    fuzzer = Fuzzer(rng, USER)
    conversations = [
        Conversation(ports["smtp"], False, USER, rng),
        Conversation(ports["submission"], True, USER, rng),
    ]
    for conversation in conversations:
        conversation.open()
    sent = 0
    while sent < lines:
        conversation = rng.choice(conversations)
        reply = conversation.exchange(fuzzer.line(BASES))
        sent += 1
        if ended(reply):
            conversation.open()
    for conversation in conversations:
        conversation.close()
    return sum(c.replies for c in conversations)


def hostile(port: int, count: int, size: int) -> dict[str, int]:
    connections = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        reader = sock.makefile("rb")
        reader.readline()
        if n % 2:
            envelope = f"EHLO h.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n"
            sock.sendall(envelope.encode())
            while not reader.readline().startswith(b"354"):
                pass
        connections.append((sock, reader))
    chunk = b"z" * (64 * 1024)
    for _ in range(max(1, size // len(chunk))):
        for sock, _ in connections:
            sock.sendall(chunk)
    for sock, _ in connections:
        sock.sendall(b"\r\n.\r\n")
    replies: dict[str, int] = {}
    for sock, reader in connections:
        code = reader.readline()[:9].decode(errors="replace") or "closed"
        replies[code] = replies.get(code, 0) + 1
        sock.close()
    return replies


def mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--bytes-per-connection", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--fuzz-lines", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument(
        "--moto-in-process",
        action="store_true",
        help="moto in the gateway's process, as `mailpipe dev` runs it (default: a process of its own)",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.moto_in_process)
        return
    raise_file_limit()
    child = Child(args.moto_in_process)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        print(f"mailpipe hostile SMTP bench  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"vm: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("moto: " + ("in the gateway's process" if args.moto_in_process else "a process of its own"))
        child.stats()
        start_rss = child.status("VmRSS")
        started = time.monotonic()
        replies = fuzz(child.ports, args.fuzz_lines, args.seed)
        fuzz_lag = child.stats()["max_lag_ms"]
        print(
            f"fuzz: {args.fuzz_lines} lines, {replies} replies in {time.monotonic() - started:.1f}s; "
            f"RSS {mb(start_rss)} -> {mb(child.status('VmRSS'))}; longest loop stall {fuzz_lag:.1f} ms"
        )
        before = child.status("VmRSS")
        child.reset_peak()
        started = time.monotonic()
        codes = hostile(child.ports["smtp"], args.connections, args.bytes_per_connection)
        hostile_lag = child.stats()["max_lag_ms"]
        print(
            f"hostile: {args.connections} connections x {mb(args.bytes_per_connection)} without a line end "
            f"in {time.monotonic() - started:.1f}s; replies {codes}"
        )
        peak = child.status("VmHWM")
        print(
            f"  RSS before {mb(before)}, peak {mb(peak)} (+{mb(peak - before)}), "
            f"after {mb(child.status('VmRSS'))}; longest loop stall {hostile_lag:.1f} ms"
        )
    finally:
        child.stop()


if __name__ == "__main__":
    main()
