"""What the benchmarks share: child processes they start and always stop, CPU time, free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A server the bench started. `stop_signal` SIGINT suits `mailpipe dev` (its Ctrl-C)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; its log ends:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on loopback (held open together, so no two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler: SIGTERM unwinds the bench like Ctrl-C."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_as_exit() -> Iterator[None]:
    """Ctrl-C (or SIGTERM, see raise_interrupt) unwinds the bench: every `finally` stops its processes."""
    try:
        yield
    except KeyboardInterrupt:
        print("\ninterrupted; every process the bench started has been stopped", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def moto_in_own_process() -> Iterator[str]:
    """The dev stack's moto server as a process of its own; yields its endpoint (for
    DevOptions.aws_endpoint). A gateway that shares its process with moto waits for moto's threads
    to release the GIL, which production's gateways, talking to AWS over the network, never do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "mailpipe_tools.local.moto_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        if not endpoint.startswith("http://"):
            raise RuntimeError(f"moto did not start: {endpoint!r}")
        yield endpoint
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
