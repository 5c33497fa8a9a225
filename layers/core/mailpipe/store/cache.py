"""A bounded in-process cache of message bytes (headers, bodies) by blob key.

A blob key names one message's bytes, which never change (COPY makes a new blob, EXPUNGE deletes
it), so what is cached never goes stale; a body expunged meanwhile may still be served from here,
which IMAP allows until the session is told of the expunge. Bounded by total bytes, so what a
process holds does not grow with the mail it serves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class BytesLRU:
    """Least recently used first out, beyond `max_bytes` in all; values over `max_item` are not kept."""

    def __init__(self, max_bytes: int, max_item: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._max_item = max_bytes if max_item is None else max_item
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self._max_item:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self._max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)

    @property
    def size(self) -> int:
        """The bytes held."""
        return self._bytes
