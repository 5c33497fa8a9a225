"""Hostile IMAP load: what 1,000 pre-login connections and a fuzzer cost the server (issue 8).

Run by hand from the repository root (never in `make test`):

    .venv/bin/python bench/hostile_imap.py                  # 1,000 connections, 20 fuzzer sessions
    .venv/bin/python bench/hostile_imap.py --connections 300 --sessions 6

It starts the dev stack (every listener, as `mailpipe dev` has them; moto in a process of its own
unless --moto-in-process) in a subprocess of its own (`hostile_imap.py --serve`), so that its RSS
is the server's alone, read from /proc/<pid>/status. Then, from this process:

  1. --connections pre-login connections each hold the largest command allowed before login
     (LOGIN with an 8 KiB literal read and a second one never finished; tests/imap_hostile_load.py),
     and --pushes more send the report's `a LOGIN {41943040+}` and 1 MiB of it, which must be
     answered with BYE and closed;
  2. while those are held, the seeded fuzzer of tests/imap_fuzzer.py runs --sessions sessions
     before login and as many after, --commands commands each.

It prints the server's RSS before and after step 1 and after step 2, and the event loop's longest
stall during each step, from a task in the server that sleeps 5 ms again and again and records
how late it wakes (mailpipe_gateway.loop_watch). With --moto-in-process the stall includes time the
loop waited for the GIL held by moto's threads, which share the process in the dev stack (never
on AWS, where the gateway talks to DynamoDB and S3 over the network).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the fuzzer, the hostile clients, the loop meter

from imap_fuzzer import Fuzzer  # noqa: E402
from imap_hostile_load import hold_largest_literal, push_huge_literal, rss_bytes  # noqa: E402

DOMAIN = "example.test"
USER = f"hostile@{DOMAIN}"
PASSWORD = "hostile-bench-password"
MIB = 2**20


# -- the server process ------------------------------------------------------------------------------


def serve(moto_in_process: bool) -> None:
    """The dev stack with a loop meter; answers "lag" on stdin with the longest stall since the last."""
    from _stack import dev_stack

    from mailpipe.auth.throttle import AuthThrottle
    from mailpipe_gateway.connection_limits import ConnectionLimiter
    from mailpipe_gateway.loop_watch import LoopWatch

    with contextlib.ExitStack() as resources:
        stack = dev_stack(resources, [(USER, PASSWORD)], moto_in_process=moto_in_process)
        store = stack.mail_store()
        store.ensure_mailboxes(USER)
        for n in range(5):  # something for the fuzzer's FETCH, STORE, SEARCH and COPY to work on
            store.append(USER, "INBOX", b"Subject: hostile %d\r\n\r\nbody\r\n" % n)
        # The fuzzer's wrong passwords must not lock the bench out of its own logins, and the held
        # connections, the pushes and the fuzzer together exceed the default cap of 1,000.
        imap = stack.build_imap(
            limiter=ConnectionLimiter(max_total=100_000, max_per_ip=100_000),
            throttle=AuthThrottle(max_per_user=10**9, max_per_address=10**9),
        )
        stack.loop.run(imap.start())
        lag = LoopWatch()
        stack.loop.run(lag.start())
        print(f"ready {imap.port}", flush=True)
        try:
            for line in sys.stdin:
                if line.strip() == "lag":
                    print(f"lag {lag.longest * 1000:.1f} {lag.samples}", flush=True)
                    lag.reset()
                elif line.strip() == "quit":
                    break
        finally:
            stack.loop.run(lag.stop())
            stack.loop.run(imap.stop())


class Server:
    def __init__(self, moto_in_process: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", *(["--moto-in-process"] if moto_in_process else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the stack's log goes to stderr
        if not line.startswith("ready "):
            raise RuntimeError(f"the server did not start: {line!r}")
        self.port = int(line.split()[1])

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def lag_ms(self) -> float:
        """The longest stall since the last call, in milliseconds."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("lag\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline().split()[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# -- the load ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1000, help="pre-login connections held")
    parser.add_argument("--pushes", type=int, default=100, help="40 MiB LITERAL+ attempts before login")
    parser.add_argument("--sessions", type=int, default=10, help="fuzzer sessions before login, and after")
    parser.add_argument("--commands", type=int, default=60, help="commands per fuzzer session")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument(
        "--moto-in-process",
        action="store_true",
        help="moto in the server's process, as `mailpipe dev` runs it (default: a process of its own)",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.moto_in_process)
        return
    server = Server(args.moto_in_process)
    held = []
    try:
        time.sleep(2)  # let the stack settle after start-up
        server.lag_ms()
        before = server.rss()
        started = time.monotonic()
        closed = 0
        for n in range(args.connections):
            held.append(hold_largest_literal(server.port))
            if n % max(1, args.connections // max(1, args.pushes)) == 0 and closed < args.pushes:
                answers = push_huge_literal(server.port)
                closed += answers[-1:] == [b"* BYE Too much data\r\n"]
        held_rss = server.rss()
        hold_lag = server.lag_ms()
        hold_seconds = time.monotonic() - started
        fuzzer = Fuzzer(args.seed)
        started = time.monotonic()
        for _ in range(args.sessions):
            fuzzer.session(server.port, args.commands, login=None)
            fuzzer.session(server.port, args.commands, login=(USER, PASSWORD))
        fuzz_seconds = time.monotonic() - started
        fuzz_rss = server.rss()
        fuzz_lag = server.lag_ms()
    finally:
        for sock in held:
            sock.close()
        server.stop()
    growth = held_rss - before
    print("moto: " + ("in the server's process" if args.moto_in_process else "a process of its own"))
    print(f"pre-login connections held: {len(held)} (each an 8 KiB literal read and one unfinished)")
    print(f"40 MiB LITERAL+ attempts answered with BYE and closed: {closed} of {args.pushes}")
    print(
        f"server RSS: {before / MIB:.1f} MiB before, {held_rss / MIB:.1f} MiB holding them "
        f"(+{growth / MIB:.1f} MiB, {growth / max(1, len(held)) / 1024:.1f} KiB per connection), "
        f"{fuzz_rss / MIB:.1f} MiB after the fuzzer"
    )
    print(f"longest event loop stall: {hold_lag:.1f} ms while connecting ({hold_seconds:.1f} s)")
    print(f"longest event loop stall: {fuzz_lag:.1f} ms during the fuzzer ({fuzz_seconds:.1f} s)")
    print(f"fuzzer outcomes: {dict(fuzzer.counts)}")


if __name__ == "__main__":
    main()
