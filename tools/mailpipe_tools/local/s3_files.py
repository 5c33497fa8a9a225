"""S3 object bodies in files of their own, for the dev stack's moto.

moto keeps every object's body in a SpooledTemporaryFile that stays in memory below ~5 MB, so
a dev stack's memory grew with every message it held, and the bodies vanished with the process.
Here each FakeKey writes its body to a file of its own under one folder: memory holds the
object's metadata only, and the files outlive the process (snapshot.py lists them for the next
start). A FakeKey owns its file: the file goes when moto disposes of the key (deleted,
overwritten, garbage), except after `keep_files()`, called when the server stops, since then
every key is about to be collected without being deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from pathlib import Path
from typing import Any

_state: dict[str, Any] = {"root": None, "keep": False}
# A path for the next FakeKey to take over instead of writing its value (restore).
_adopting = threading.local()


class _FileBuffer:
    """The part of a file object moto's FakeKey uses (seek, read, write, truncate, close),
    opening the file per call so that a stack holding many objects holds no descriptors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self._offset = offset if whence == 0 else self._offset + offset
        return self._offset

    def read(self, size: int = -1) -> bytes:
        with open(self.path, "rb") as file:
            file.seek(self._offset)
            data = file.read(size)
        self._offset += len(data)
        return data

    def truncate(self) -> None:
        with open(self.path, "r+b") as file:
            file.truncate(self._offset)

    def write(self, data: bytes) -> int:
        with open(self.path, "r+b") as file:
            file.seek(self._offset)
            file.write(data)
        self._offset += len(data)
        return len(data)

    def close(self) -> None:
        pass


def body_path(key: Any) -> Path | None:
    """The file holding a FakeKey's body (None for keys made before install())."""
    buffer = getattr(key, "_value_buffer", None)
    return buffer.path if isinstance(buffer, _FileBuffer) else None


def adopt(path: Path) -> None:
    """Make the next FakeKey built in this thread use `path` (already holding its body) as is."""
    _adopting.path = path


def keep_files() -> None:
    """From now on disposing of a key leaves its file (the server is stopping)."""
    _state["keep"] = True


def install(root: Path) -> None:
    """Store the bodies of objects created from now on under `root`."""
    from moto.s3.models import FakeKey

    root.mkdir(parents=True, exist_ok=True)
    _state["root"], _state["keep"] = root, False
    if getattr(FakeKey, "mailpipe_files", False):
        return
    original_dispose = FakeKey.dispose

    def get_value(self: Any) -> bytes:
        with self.lock:
            return body_path(self).read_bytes()  # type: ignore[union-attr]

    def set_value(self: Any, new_value: bytes | str) -> None:
        if isinstance(new_value, str):
            new_value = new_value.encode()
        adopted = getattr(_adopting, "path", None)
        if adopted is not None:
            # Restoring: the body is in the file already, and its etag was recorded with it.
            _adopting.path = None
            self._value_buffer = _FileBuffer(adopted)
            self.contentsize = adopted.stat().st_size
            return
        # A new file every time: a copy of a key (moto deep-copies some) must not share its file.
        path = _state["root"] / uuid.uuid4().hex
        with open(path, "wb") as file:
            file.write(new_value)
        self._value_buffer = _FileBuffer(path)
        self.contentsize = len(new_value)
        if self._etag is None:
            self._etag = hashlib.md5(new_value).hexdigest()

    def dispose(self: Any, garbage: bool = False) -> None:
        path = body_path(self)
        original_dispose(self, garbage=False)  # moto warns about keys it finds undisposed: not ours
        if path is not None and not _state["keep"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    FakeKey.value = property(get_value, set_value)  # type: ignore[method-assign,assignment]
    FakeKey.dispose = dispose  # type: ignore[method-assign]
    FakeKey.mailpipe_files = True  # type: ignore[attr-defined]
