"""One dev stack per state dir: two would overwrite each other's state and dev.env.

The lock is an flock on `dev.pid`, which holds the PID of the stack holding it: the kernel
releases it when that process ends however it ends, so a lock left by a killed stack is stale
by construction, whatever the file still says.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from mailpipe.config import ConfigError

LOCK_FILE = "dev.pid"
# A stack killed with -9 leaves its moto child holding the lock while it makes its last save.
LEFTOVER_CHILD_WAIT_SECONDS = 30


class StateDirInUse(ConfigError):
    pass


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _locked(fd):
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirInUse(
                f"another mailpipe dev (PID {holder}) is running on {self.path.parent}/: stop it, or start "
                f"this one elsewhere with --state-dir DIR, or as a throwaway stack with --ephemeral"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def fds(self) -> tuple[int, ...]:
        """The lock's descriptor, for a child process that writes to the state dir (the moto child):
        the dir stays locked until the child too has ended."""
        return () if self._fd is None else (self._fd,)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def _locked(fd: int) -> bool:
    """Take the lock; if its holder's stack is gone (only its moto child still saving), wait for it."""
    deadline = time.monotonic() + LEFTOVER_CHILD_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if _holder_alive(fd) or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _holder_alive(fd: int) -> bool:
    written = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if not written.isdigit():
        return True
    try:
        os.kill(int(written), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
