"""Memory per stored message of the dev stack (`mailpipe dev`), every process of it counted.

Run by hand from the repository root:

    .venv/bin/python bench/memory_per_message.py                 # 60 to warm up, then 2 x 300
    .venv/bin/python bench/memory_per_message.py --messages 1000

It starts `mailpipe dev --ephemeral` (ports chosen by the system, a loopback DNS server that knows
no names, so inbound authentication answers at once), stores `--warm-up` messages of ~4 KB
through SMTP to one user (waiting until IMAP STATUS counts them), reads the resident memory of
the stack's process and every process it started (moto may run in one of its own), stores
`--messages` more, reads it again, and once more after as many again. It prints the growth per
stored message of each round, and the second round's growth over the first's: a leak per message
shows as a second round that costs as much as the first (ratio ~1 and a large figure), memory a
process settles at as a small second round.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dns_zone import serving  # noqa: E402
from process_memory import store_messages, tree_rss  # noqa: E402
from processes import free_ports  # noqa: E402

USER = ("bob@example.test", "bench-password")


def start_stack(directory: str, resolver: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    names = ("smtp", "submission", "imap", "pop3", "aws", "http")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    command = [sys.executable, "-m", "mailpipe_tools.cli", "dev", "--ephemeral", "--user", ":".join(USER)]
    command += ["--resolver", resolver]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.strip() == "mailpipe dev ready":
            break
    if process.poll() is not None:
        raise SystemExit("mailpipe dev did not start")
    # Its log (a line per delivery) is read and dropped, so that the pipe never fills.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, ports


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm-up", type=int, default=60)
    parser.add_argument("--messages", type=int, default=300, help="messages per measured round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, serving("") as (dns_port, _zone):
        process, ports = start_stack(directory, f"127.0.0.1:{dns_port}")
        try:
            store_messages(ports["smtp"], ports["imap"], USER, 0, args.warm_up)
            readings = [tree_rss(process.pid)]
            for round_ in range(2):
                store_messages(
                    ports["smtp"], ports["imap"], USER, args.warm_up + round_ * args.messages, args.messages
                )
                readings.append(tree_rss(process.pid))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    first, second = readings[1] - readings[0], readings[2] - readings[1]
    n = args.messages
    print(f"resident memory after the warm-up: {readings[0] / 2**20:.0f} MiB")
    print(f"round 1: {first / n:8.0f} bytes per stored message ({n} messages)")
    print(f"round 2: {second / n:8.0f} bytes per stored message ({n} more)")
    print(
        f"over both: {(readings[2] - readings[0]) / (2 * n):6.0f} bytes per stored message; "
        f"round 2 / round 1: {second / first if first > 0 else float('nan'):.2f}"
    )


if __name__ == "__main__":
    main()
