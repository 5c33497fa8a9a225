"""How long new mail takes to reach an IDLE-ing IMAP client on the dev stack.

Run by hand from the repository root:

    .venv/bin/python bench/idle.py              # 20 messages
    .venv/bin/python bench/idle.py --messages 50

It starts `mailpipe dev` (every port chosen by the system, in a temporary directory), logs a
client in, SELECTs INBOX and IDLEs, then sends messages one at a time over SMTP and times each
from the gateway's 250 to the `* n EXISTS` the IDLE-ing client receives. That span covers the
whole pipeline: spool (S3 + SQS), the local poller's long poll, the inbound function, the store,
and the IMAP session's IDLE poll. The target (issue 3) is under one second.
"""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bob@example.test", "bench-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_stack(directory: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    ports = {name: free_port() for name in ("smtp", "submission", "imap", "pop3", "aws")}
    command = [str(REPO / ".venv/bin/mailpipe"), "dev", "--user", f"{USER}:{PASSWORD}"]
    for name, port in ports.items():
        command += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line or line.strip() == "mailpipe dev ready":
            break
    if process.poll() is not None:
        raise SystemExit("mailpipe dev did not start")
    return process, ports


def measure(ports: dict[str, int], count: int) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", ports["imap"]), timeout=30)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(f'a LOGIN {USER} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
    while not reader.readline().startswith(b"b OK"):
        pass
    sock.sendall(b"c IDLE\r\n")
    assert reader.readline().startswith(b"+")
    latencies = []
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as smtp:
        for n in range(1, count + 1):
            message = f"Subject: idle {n}\r\n\r\nhello\r\n".encode()
            smtp.sendmail("alice@remote.test", [USER], message)
            sent = time.monotonic()
            while True:
                line = reader.readline()
                if line == b"* %d EXISTS\r\n" % n:
                    latencies.append(time.monotonic() - sent)
                    break
                if not line:
                    raise SystemExit("the IMAP connection closed")
    sock.sendall(b"DONE\r\nd LOGOUT\r\n")
    sock.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        process, ports = start_stack(directory)
        try:
            latencies = measure(ports, args.messages)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    ms = sorted(1000 * x for x in latencies)
    print(f"{len(ms)} messages, SMTP 250 -> IDLE EXISTS")
    print(f"  min {ms[0]:.0f} ms  median {statistics.median(ms):.0f} ms  max {ms[-1]:.0f} ms")
    print(f"  under 1 s: {sum(1 for x in ms if x < 1000)} of {len(ms)}  (target: all)")


if __name__ == "__main__":
    sys.exit(main())
