"""The dev stack's moto in a process of its own, and what it keeps on disk: both ends of it.

In one process the gateways and moto's request threads took turns at one GIL: every AWS call of
an IMAP command waited for moto's Python to let go, as production's gateways (talking to AWS over
the network) never do. So `mailpipe dev` starts `python -m mailpipe_tools.local.moto_server`
as a child, and everything that reaches into moto's memory runs in that child: the S3 bodies in
files (s3_files.py) and the snapshot of the state (snapshot.py, its Saver), which must read
DynamoDB under the lock moto's requests take.

The child's end is moto_server.main. The parent speaks to it on its standard input and output,
one line each way:

    child  -> `http://127.0.0.1:PORT`           serving (or `port-in-use`, then it exits 2)
    parent -> `restore`                          after provisioning the template's resources:
    child  -> `{"items": N, ...}`                the kept state is back, and saved from now on
    parent -> `stop` (or its stdin closes)       final save, then the child exits 0

The child runs in a session of its own and ignores Ctrl-C (the gateways must stop before their
AWS does: the parent says when), and stops cleanly at a SIGTERM sent to it or when the parent is
gone (its stdin closes). It inherits the state dir's lock (state_lock.py), so no second stack starts on
that dir while it is still writing. A child that dies is reported (`failed`), not hidden.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.request import urlopen

from mailpipe.config import ConfigError

log = logging.getLogger(__name__)

PORT_IN_USE = "port-in-use"  # what the child says when its port is taken
# Where the child's moto server tells how many requests it answered, by kind (moto_server's
# RequestCounter, added by the imap-memory work): tests and benches count AWS requests there.
REQUESTS_PATH = "/_mailpipe/requests"
STOP_SECONDS = 60  # a final save of a big state, then the server's threads
# The environment variables of the stack's that are the child's own settings (moto_server.py).
CHILD_SETTINGS = ("MAILPIPE_DEV_STREAM_RECORDS",)


class RequestCounts:
    """The child's count of the requests it answered, read over HTTP (it is in another process)."""

    def __init__(self, endpoint: str) -> None:
        self._url = endpoint + REQUESTS_PATH

    def counts(self) -> Counter[str]:
        with urlopen(self._url, timeout=10) as response:
            return Counter(json.loads(response.read()))


class MotoPortInUse(OSError):
    pass


class MotoExited(ConfigError):
    """The child ended, or never started: said in one line by `mailpipe dev`."""


class MotoProcess:
    """The parent's end: starts the child, asks it to restore, stops it, and watches it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        state_dir: Path | None = None,
        persistent: bool = False,
        keep_fds: Sequence[int] = (),
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        """`keep_fds`: descriptors the child keeps (the state dir's lock); `on_exit`: called with
        the exit code if the child ends before `stop`."""
        self.host, self.requested_port = host, port
        self.state_dir, self.persistent = state_dir, persistent
        self._keep_fds = tuple(keep_fds)
        self._on_exit = on_exit
        self._process: subprocess.Popen[str] | None = None
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self.endpoint = ""

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    @property
    def requests(self) -> RequestCounts:
        return RequestCounts(self.endpoint)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        command = [sys.executable, "-m", "mailpipe_tools.local.moto_server", str(self.requested_port)]
        command += ["--host", self.host]
        if self.state_dir is not None:
            command += ["--state-dir", str(self.state_dir)]
        if self.persistent:
            command.append("--persistent")
        # moto needs none of the stack's settings (an endpoint inherited from another stack in this
        # process, in tests, must not leak into it), only its own: the stream records it keeps.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "MAILPIPE_")) or k in CHILD_SETTINGS
        }
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            pass_fds=self._keep_fds,
            # A session of its own: a Ctrl-C at the terminal, or a SIGTERM to the stack's process
            # group, reaches the stack only, which stops its gateways and then this child, in order.
            start_new_session=True,
        )
        first = self._read_line()
        if first == PORT_IN_USE:
            self._process.wait()
            raise MotoPortInUse(f"port {self.requested_port} is in use")
        if not first.startswith("http://"):
            code = self._process.wait()
            raise MotoExited(f"moto did not start (exit code {code}; its errors are above)")
        self.endpoint = first
        self._watcher = threading.Thread(target=self._watch, name="moto-watch", daemon=True)
        self._watcher.start()

    def restore(self) -> dict[str, int]:
        """Puts the kept state back (the template's resources must exist); how much came back."""
        self._send("restore")
        return json.loads(self._read_line())

    def stop(self) -> None:
        """Asks for the final save and waits; a child that does not end is killed."""
        process = self._process
        if process is None:
            return
        self._stopping = True
        if process.poll() is None:
            try:
                self._send("stop")
                assert process.stdin is not None
                process.stdin.close()
            except (BrokenPipeError, OSError, MotoExited):
                pass
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("moto (PID %d) did not stop in %d s: killed", process.pid, STOP_SECONDS)
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def _send(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise MotoExited(f"moto (PID {self._process.pid}) has exited") from None

    def _read_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise MotoExited(f"moto (PID {self._process.pid}) exited with code {code}")
        return line.strip()

    def _watch(self) -> None:
        assert self._process is not None
        code = self._process.wait()
        if self._stopping:
            return
        log.error(
            "moto (PID %d), the dev stack's AWS, exited with code %d: every AWS call fails from now on; "
            "stop the stack and start it again (the state saved last is kept)",
            self._process.pid,
            code,
        )
        if self._on_exit is not None:
            self._on_exit(code)
