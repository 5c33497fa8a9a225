"""An access gateway in a process of its own (`python -m mailpipe_gateway access`, as the container
runs it) on the test session's dev stack, and a line-level IMAPS client for it.

Each process has its own memory of the store and, when the dev stack has a change feed, its own
queue: two of them on one store are two ECS tasks.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO_ROOT
from ports import free_port

from mailpipe_gateway.tls import write_self_signed

PACKAGES = (REPO_ROOT / "layers" / "core", REPO_ROOT / "gateway")


class AccessProcess:
    """One access gateway process serving IMAPS on loopback; start() again after stop() restarts it."""

    def __init__(self, environment: dict[str, str], directory: Path, name: str) -> None:
        cert, key = write_self_signed(directory / name, "imap.example.test")
        self.port = free_port()
        self.log = directory / f"{name}.log"
        self.env = {**os.environ, **environment}
        self.env.update(
            {
                "PYTHONPATH": os.pathsep.join(str(p) for p in PACKAGES),
                "MAILPIPE_ACCESS_HOST": "127.0.0.1",
                "MAILPIPE_IMAP_PORT": "",
                "MAILPIPE_IMAPS_PORT": str(self.port),
                "MAILPIPE_POP3_PORT": "",
                "MAILPIPE_POP3S_PORT": "",
                "MAILPIPE_TLS_CERT_PEM": cert.read_text(),
                "MAILPIPE_TLS_KEY_PEM": key.read_text(),
            }
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._logged_before = 0  # where this run's log starts (a restart appends)

    def start(self) -> None:
        self._logged_before = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailpipe_gateway", "access"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def logged(self) -> str:
        """What this run (since the last start) has logged."""
        with self.log.open("rb") as log:
            log.seek(self._logged_before)
            return log.read().decode(errors="replace")

    def wait_for_log(self, text: str, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.logged():
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"no {text!r} in the log: {self.log.read_text()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self, user: str, password: str) -> IMAPSClient:
        client = IMAPSClient(self.port)
        client.ok("l", b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
        return client


class IMAPSClient:
    """Sends exactly the bytes a test gives over TLS; reads responses as sent."""

    def __init__(self, port: int) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname="imap.example.test")
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        line = self.file.readline()
        assert line, "connection closed"
        while (found := re.search(rb"\{(\d+)\}\r\n$", line)) is not None:
            line += self.file.read(int(found.group(1))) + self.file.readline()
        return line

    def until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(tag.encode() + b" "):
                return lines

    def ok(self, tag: str, data: bytes) -> list[bytes]:
        self.send(tag.encode() + b" " + data + b"\r\n")
        lines = self.until(tag)
        assert lines[-1].startswith(f"{tag} OK".encode()), lines
        return lines

    def append(self, mailbox: str, message: bytes) -> int:
        """APPENDs with a synchronizing literal; the UID from APPENDUID."""
        self.send(b'ap APPEND "%s" {%d}\r\n' % (mailbox.encode(), len(message)))
        assert self.file.readline().startswith(b"+")
        self.send(message + b"\r\n")
        done = self.until("ap")[-1]
        found = re.search(rb"APPENDUID \d+ (\d+)", done)
        assert found, done
        return int(found.group(1))

    def idle_until(self, pattern: bytes, seconds: float = 10.0) -> list[bytes]:
        """In IDLE already: the lines up to the first matching `pattern` (a regex), within `seconds`."""
        lines: list[bytes] = []
        deadline = time.monotonic() + seconds
        while not any(re.search(pattern, line) for line in lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {pattern!r} within {seconds} s: {lines}"
            self.sock.settimeout(remaining)
            try:
                lines.append(self.line())
            except TimeoutError:
                raise AssertionError(f"no {pattern!r} within {seconds} s: {lines}") from None
            finally:
                self.sock.settimeout(30)
        return lines

    def noop_until(self, pattern: bytes, seconds: float = 10.0) -> list[bytes]:
        """NOOP after NOOP until a response matches `pattern`, within `seconds`."""
        deadline = time.monotonic() + seconds
        seen: list[bytes] = []
        while time.monotonic() < deadline:
            lines = self.ok("n", b"NOOP")
            seen += lines
            if any(re.search(pattern, line) for line in lines):
                return seen
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {seconds} s: {seen}")
