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
process settles at as a small second round. Then the same per process (the stack's, moto's child),
and what moto's child holds after each step (its GET /_mailpipe/memory, moto_memory.py: items
and stream records per table, messages per queue, the most numerous objects; and the lines that
allocated the most if the bench runs with PYTHONTRACEMALLOC=1, which reaches the child).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from dns_zone import serving  # noqa: E402
from process_memory import store_messages, tree_rss_by_process  # noqa: E402
from processes import free_ports  # noqa: E402

USER = ("bob@example.test", "bench-password")


def start_stack(
    directory: str, resolver: str, stream_records: int
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    names = ("smtp", "submission", "imap", "pop3", "aws", "http")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    command = [sys.executable, "-m", "mailpipe_tools.cli", "dev", "--ephemeral", "--user", ":".join(USER)]
    command += ["--resolver", resolver]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    env["MAILPIPE_DEV_STREAM_RECORDS"] = str(stream_records)
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 300  # a loaded machine starts it slowly
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.strip() == "mailpipe dev ready":
            break
    if process.poll() is not None:
        raise SystemExit("mailpipe dev did not start")
    # Its log (a line per delivery) is read and dropped, so that the pipe never fills.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, ports


def moto_memory(aws_port: int) -> dict[str, Any]:
    """What the stack's moto child holds (GET /_mailpipe/memory, moto_memory.py), after glibc's
    malloc_trim handed its free memory back; {} without it. Read after the resident memory: the
    trim would lower it."""
    try:
        with urlopen(f"http://127.0.0.1:{aws_port}/_mailpipe/memory?trim=1", timeout=300) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm-up", type=int, default=60)
    parser.add_argument("--messages", type=int, default=300, help="messages per measured round")
    parser.add_argument(
        "--stream-records",
        type=int,
        default=64,
        help="stream records moto keeps (MAILPIPE_DEV_STREAM_RECORDS; the dev stack's default 4096 "
        "fills up only after ~1,300 messages, at ~10 kB a record: the bench measures after it is full)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, serving("") as (dns_port, _zone):
        process, ports = start_stack(directory, f"127.0.0.1:{dns_port}", args.stream_records)
        try:
            store_messages(ports["smtp"], ports["imap"], USER, 0, args.warm_up)
            readings = [tree_rss_by_process(process.pid)]
            reports = [moto_memory(ports["aws"])]
            for round_ in range(2):
                store_messages(
                    ports["smtp"], ports["imap"], USER, args.warm_up + round_ * args.messages, args.messages
                )
                readings.append(tree_rss_by_process(process.pid))
                reports.append(moto_memory(ports["aws"]))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    n = args.messages
    totals = [sum(reading.values()) for reading in readings]
    first, second = totals[1] - totals[0], totals[2] - totals[1]
    print(f"resident memory after the warm-up: {totals[0] / 2**20:.0f} MiB")
    print(f"round 1: {first / n:8.0f} bytes per stored message ({n} messages)")
    print(f"round 2: {second / n:8.0f} bytes per stored message ({n} more)")
    print(
        f"over both: {(totals[2] - totals[0]) / (2 * n):6.0f} bytes per stored message; "
        f"round 2 / round 1: {second / first if first > 0 else float('nan'):.2f}"
    )
    for pid in readings[0]:
        name = "mailpipe dev" if pid == process.pid else f"child {pid}"
        sizes = [reading.get(pid, 0) for reading in readings]
        print(
            f"  {name:14s} after the warm-up {sizes[0] / 2**20:6.0f} MiB, "
            f"round 1 {(sizes[1] - sizes[0]) / n:7.0f}, round 2 {(sizes[2] - sizes[1]) / n:7.0f} B/message"
        )
    if all(reports):
        rss = [report["rss"] for report in reports]
        trimmed = ", ".join(f"{report['trimmed'] / 2**20:.0f}" for report in reports)
        print(
            f"  moto after malloc_trim: after the warm-up {rss[0] / 2**20:6.0f} MiB, "
            f"round 1 {(rss[1] - rss[0]) / n:7.0f}, round 2 {(rss[2] - rss[1]) / n:7.0f} B/message "
            f"(the trims gave back {trimmed} MiB)"
        )
    for label, report in zip(("after the warm-up", "after round 1", "after round 2"), reports, strict=True):
        if report:
            print(f"moto {label}: tables {report['tables']}")
            print(f"  queues {report['queues']}")
            print(f"  objects {report['objects'][:10]}")
            grown = "biggest" if label == "after the warm-up" else "grown most since the warm-up"
            for site, size, count in report["allocated_by"][:12]:
                print(f"  {size:>10} B {count:>8} blocks  {site}  ({grown})")


if __name__ == "__main__":
    main()
