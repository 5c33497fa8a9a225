"""`mailpipe dev` in a process of its own, started, stopped and started again as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO_ROOT
from ports import free_port

READY = "mailpipe dev ready"


class DevProcess:
    """One `mailpipe dev` command line, on ports of its own, run from `cwd`."""

    def __init__(self, cwd: Path, resolver: str, *args: str) -> None:
        self.cwd = cwd
        self.ports = {name: free_port() for name in ("smtp", "submission", "pop3", "imap", "aws", "http")}
        self.args = [
            *(arg for name, port in self.ports.items() for arg in (f"--{name}-port", str(port))),
            "--template",
            str(REPO_ROOT / "template.yaml"),
            "--resolver",
            resolver,
            *args,
        ]
        self.process: subprocess.Popen[str] | None = None
        self.extra_env: dict[str, str] = {}  # set before start(): variables the stack is given
        self.output = ""

    def start(self, *more: str) -> str:
        """Starts it and waits for the ready line; the banner."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
        env.update(self.extra_env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailpipe_tools.cli", "dev", *self.args, *more],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        deadline = time.monotonic() + 90
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == READY:
                break
        else:
            self.process.kill()
        self.output = "".join(lines)
        assert lines and lines[-1].strip() == READY, self.output
        return self.output

    def run_to_end(self, *more: str) -> tuple[int, str]:
        """Runs a command line expected to end by itself (an error): exit code and output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_"))}
        done = subprocess.run(
            [sys.executable, "-m", "mailpipe_tools.cli", "dev", *self.args, *more],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout + done.stderr

    def stop(self) -> str:
        """Ctrl-C; the log written since the ready line."""
        assert self.process is not None and self.process.stdout is not None
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 0
        log = self.process.stdout.read()
        self.process = None
        return log

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cli_env(self, state_dir: Path) -> dict[str, str]:
        """The environment `source STATE_DIR/dev.env` gives the admin commands."""
        env = {**os.environ}
        for line in (state_dir / "dev.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        return env
