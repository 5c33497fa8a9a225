"""A hostile POP3 client against the dev stack: memory per pre-login connection, event-loop stalls.

Run by hand from the repository root (not in `make test`):

    .venv/bin/python bench/hostile_pop3.py                      # 1,000 connections, 10 fuzzers
    .venv/bin/python bench/hostile_pop3.py --connections 200 --fuzzers 2 --lines 50

It starts a server process of its own (`hostile_pop3.py --serve`: the dev stack, with moto in a
process of its own unless --moto-in-process, and one more POP3 listener whose login throttle has
room for the fuzzers' failed logins) and a loop watch on the stack's event loop
(mailpipe_gateway.loop_watch: a task that sleeps 5 ms and records how much later it woke up).
Then, from this process:

1. `--connections` pre-login connections, each sending the longest line POP3 buffers (one octet
   short of the 2 KiB limit) with no line end, and held open; one more connection shows whether
   the cap (1,000 per listener) refuses it;
2. with 100 of them closed again, `--fuzzers` concurrent sessions send `--lines` random, mangled,
   binary, overlong and Unicode-digit lines each, before and after logging in.

It prints the server's VmRSS (/proc/PID/status) before and after each phase and the longest
stall of its event loop during each. With --moto-in-process the stall includes waiting for the
GIL that moto's threads hold; on AWS no such threads share the gateway's process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
SEED = 20261205


# -- the server process -------------------------------------------------------------------------


def user(n: int) -> str:
    return f"fuzz{n}@example.test"  # one per fuzzer: a maildrop takes one POP3 session at a time


def serve(users: int, moto_in_process: bool) -> None:
    from processes import moto_in_own_process

    from mailpipe.auth.throttle import AuthThrottle
    from mailpipe_gateway.loop_watch import LoopWatch
    from mailpipe_tools.local.stack import DevOptions, DevStack

    with contextlib.ExitStack() as resources:
        state = resources.enter_context(tempfile.TemporaryDirectory())
        endpoint = None if moto_in_process else resources.enter_context(moto_in_own_process())
        options = DevOptions(
            smtp_port=0,
            submission_port=0,
            pop3_port=0,
            imap_port=0,
            aws_port=0,
            users=[(user(n), PASSWORD) for n in range(users)],
            state_dir=Path(state),
            run_pollers=False,
            aws_endpoint=endpoint,
        )
        stack = DevStack(options)
        stack.start()
        store = stack.mail_store()
        for n in range(users):
            for m in range(5):
                store.append(user(n), "INBOX", b"Subject: bench %d\r\n\r\nbody\r\n.dot\r\n" % m)
        pop3 = stack.build_pop3(throttle=AuthThrottle(max_per_user=10**9, max_per_address=10**9))
        stack.loop.run(pop3.start())
        lag = LoopWatch()
        stack.loop.run(lag.start())
        print(json.dumps({"port": pop3.port}), flush=True)
        try:
            for command in sys.stdin:  # the bench's questions, one per line; EOF ends the server
                if command.strip() == "lag":
                    print(json.dumps({"max_lag_ms": lag.longest * 1000}), flush=True)
                    lag.reset()
        finally:
            stack.loop.run(lag.stop())
            stack.loop.run(pop3.stop())
            stack.stop()


# -- the hostile client -------------------------------------------------------------------------


class Server:
    def __init__(self, users: int, verbose: bool, moto_in_process: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--fuzzers",
                str(users),
                *(["--moto-in-process"] if moto_in_process else []),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.DEVNULL,  # a warning per failed login, else
            text=True,
        )
        self.port = int(self._answer()["port"])

    def _answer(self) -> dict[str, float]:
        assert self.process.stdout is not None
        while line := self.process.stdout.readline():
            if line.startswith("{"):
                return json.loads(line)
        raise SystemExit("the server process ended")

    def lag_ms(self) -> float:
        """The longest stall of the server's loop since the last call."""
        assert self.process.stdin is not None
        self.process.stdin.write("lag\n")
        self.process.stdin.flush()
        return self._answer()["max_lag_ms"]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("no VmRSS")

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def hold(port: int, count: int, line: bytes) -> tuple[list[socket.socket], int]:
    """`count` greeted connections that sent `line` with no line end; and how many were refused."""
    held, refused = [], 0
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        greeting = sock.makefile("rb").readline()
        if not greeting.startswith(b"+OK"):
            refused += 1
            sock.close()
            continue
        sock.sendall(line)
        held.append(sock)
    return held, refused


UNICODE_DIGITS = ["\u00b2", "\u0661", "\uff19"]  # SUPERSCRIPT TWO, ARABIC-INDIC ONE, FULLWIDTH NINE
BEFORE = [b"CAPA", b"USER nobody@example.test", b"PASS x", b"AUTH PLAIN AGJvYgBwdw==", b"STAT", b"NOOP"]
AFTER = [b"STAT", b"LIST", b"LIST 1", b"UIDL", b"RETR 1", b"TOP 2 1", b"DELE 3", b"RSET", b"NOOP", b"LIST 9"]


def hostile_line(rng: random.Random, commands: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.2:
        size = rng.choice([rng.randint(0, 60), rng.randint(1000, 2000)])
        return bytes(rng.randint(0, 255) for _ in range(size)).replace(b"\n", b" ")
    if roll < 0.35:
        verb = rng.choice([b"RETR", b"LIST", b"UIDL", b"DELE", b"TOP 1"])
        return verb + b" " + "".join(rng.choice([*UNICODE_DIGITS, "1"]) for _ in range(2)).encode()
    line = bytearray(rng.choice(commands))
    if rng.random() < 0.4:
        line[rng.randrange(len(line))] = rng.randint(32, 126)
    return bytes(line)


def converse(reader, sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    first = reader.readline()
    if not first.startswith((b"+OK", b"-ERR")):
        raise SystemExit(f"no +OK/-ERR to {line[:40]!r}: {first[:80]!r}")
    verb, _, argument = line.partition(b" ")
    verb = verb.upper()
    if first.startswith(b"+OK") and (
        verb in (b"CAPA", b"RETR", b"TOP") or (verb in (b"LIST", b"UIDL") and not argument.strip())
    ):
        while reader.readline() not in (b".\r\n", b""):
            pass
    return first


def fuzz(port: int, n: int, lines: int) -> None:
    rng = random.Random(SEED + n)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for _ in range(lines // 2):
            converse(reader, sock, hostile_line(rng, BEFORE))
        converse(reader, sock, f"USER {user(n)}".encode())
        if not converse(reader, sock, f"PASS {PASSWORD}".encode()).startswith(b"+OK"):
            raise SystemExit(f"fuzzer {n} could not log in")
        for _ in range(lines - lines // 2):
            converse(reader, sock, hostile_line(rng, AFTER))
        converse(reader, sock, b"RSET")
        converse(reader, sock, b"QUIT")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--fuzzers", type=int, default=10)
    parser.add_argument("--lines", type=int, default=200, help="lines per fuzzer session")
    parser.add_argument("--verbose", action="store_true", help="show the server's log")
    parser.add_argument(
        "--moto-in-process",
        action="store_true",
        help="moto in the server's process, as `mailpipe dev` runs it (default: a process of its own)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(max(args.fuzzers, 1), args.moto_in_process)
        return
    from mailpipe_gateway.pop3.server import LINE_LIMIT

    server = Server(max(args.fuzzers, 1), args.verbose, args.moto_in_process)
    held: list[socket.socket] = []
    try:
        print(f"hostile POP3 bench  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"vm: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("moto: " + ("in the server's process" if args.moto_in_process else "a process of its own"))
        fuzz(server.port, 0, 10)  # warm up: a login and a few commands
        server.lag_ms()
        before = server.rss_mib()
        started = time.monotonic()
        held, refused = hold(server.port, args.connections + 1, b"USER " + b"x" * (LINE_LIMIT - 6))
        time.sleep(1)  # let the server read what was sent
        after = server.rss_mib()
        print(
            f"1. {len(held)} pre-login connections, each holding a {LINE_LIMIT - 1}-octet line "
            f"({refused} more refused), in {time.monotonic() - started:.1f} s"
        )
        print(
            f"   RSS {before:.1f} -> {after:.1f} MiB (+{after - before:.1f} MiB, "
            f"{(after - before) * 1024 / max(len(held), 1):.1f} KiB per connection); "
            f"longest loop stall {server.lag_ms():.1f} ms"
        )
        for sock in held[:100]:
            sock.close()
        del held[:100]
        started = time.monotonic()
        failures: list[BaseException] = []

        def fuzzer(n: int) -> None:
            try:
                fuzz(server.port, n, args.lines)
            except BaseException as exc:  # reported below, in the main thread
                failures.append(exc)

        threads = [threading.Thread(target=fuzzer, args=(n,)) for n in range(args.fuzzers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(
            f"2. {args.fuzzers} fuzzers x {args.lines} lines beside {len(held)} held connections, "
            f"in {time.monotonic() - started:.1f} s"
        )
        print(f"   RSS {server.rss_mib():.1f} MiB; longest loop stall {server.lag_ms():.1f} ms")
        for failure in failures:
            print(f"   FAILED: {failure!r}")
    finally:
        for sock in held:
            sock.close()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
