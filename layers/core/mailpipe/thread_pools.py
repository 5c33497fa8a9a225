"""A process-wide pool of a few threads, made at its first use.

For work that waits on requests (S3, DynamoDB) and wants a bounded number of them in flight at
once: enough threads to hide the latency, few enough to bound what the process asks at a time.
Made lazily because most processes that import the module never need it (a Lambda that stores
one copy, reads one body), and threads they never use are a cost for nothing.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor

from mailpipe.lazy import Lazy


class LazyPool(Lazy[Executor]):
    """Call it for the pool: the same ThreadPoolExecutor every time, made at the first call."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(
            lambda: ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        )
