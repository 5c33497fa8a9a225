"""mailpipe.thread_pools.LazyPool: one bounded pool per process, made at first use."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from mailpipe.thread_pools import LazyPool


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_one_pool_made_at_first_use_and_bounded() -> None:
    pool = LazyPool(3, "test-lazy")
    assert _threads("test-lazy") == []  # nothing made until asked
    with ThreadPoolExecutor(max_workers=8) as callers:  # many first callers at once: still one pool
        made = set(map(id, callers.map(lambda _: pool(), range(8))))
    assert len(made) == 1
    names: set[str] = set()
    names_lock = threading.Lock()
    all_in = threading.Barrier(3)

    def work(_: int) -> None:
        with names_lock:
            names.add(threading.current_thread().name)
        all_in.wait(timeout=30)  # three at a time: the pool is busy to its bound

    list(pool().map(work, range(9)))
    assert len(names) == 3 and all(name.startswith("test-lazy") for name in names)
    pool().shutdown()
