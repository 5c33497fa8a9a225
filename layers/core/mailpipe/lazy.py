"""A thing made at its first use, once, however many threads first ask for it at the same time.

For what a process may never need and costs something to make: a pool's threads, a hand-signed
client that first asks botocore for its endpoint (a Lambda may never read or store a body).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """Call it for the thing: `make()`'s result, made at the first call and the same ever after."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: T | None = None
        self._lock = threading.Lock()  # first callers at once (a FETCH's first reads) make one

    def __call__(self) -> T:
        made = self._made
        if made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
                made = self._made
        return made
