"""What the dev stack's moto child holds in memory, for GET /_mailpipe/memory (moto_server).

moto runs in a process of its own (moto_process.py), out of reach of a test's or a bench's
tracemalloc and gc: this answers for it. The report: the process's resident memory, DynamoDB's
tables (items, stream records kept), SQS's queues (messages), the Python objects by type (the most
numerous), and, when the child runs under PYTHONTRACEMALLOC=1 (Python's own switch; the variable
reaches the child), the source lines whose live allocations grew most since the first report (at
the first, the biggest). With ?trim=1, glibc's malloc_trim runs first and the report says what it
gave back (what the C allocator held free, not objects). Counting objects
walks the whole heap, with DynamoDB's requests held (moto_server._AtomicDynamoDB: the tables are
read as they stand), for a second, or for minutes under tracemalloc: a debug hook, for
bench/memory_per_message.py and investigations, not for anything that runs often.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

PATH = "/_mailpipe/memory"
TOP = 20  # types and allocation sites reported


def malloc_trim() -> None:
    """Hand the C heap's free pages back to the system (glibc; nothing elsewhere)."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


def report(trim: bool = False) -> dict[str, Any]:
    """`trim`: first hand the C heap's free memory back to the system (glibc's malloc_trim), and
    say how much resident memory that gave back: what the allocator kept, not the objects."""
    trimmed = None
    if trim:
        before = _rss()
        malloc_trim()
        trimmed = before - _rss()
    return {
        "rss": _rss(),
        "trimmed": trimmed,
        "tables": _tables(),
        "queues": _queues(),
        "objects": Counter(type(o).__name__ for o in gc.get_objects()).most_common(TOP),
        "allocated_by": _allocations(),
    }


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else 0


def _tables() -> dict[str, dict[str, int]]:
    from moto.dynamodb.models import dynamodb_backends

    tables = {}
    for regions in dynamodb_backends.values():
        for backend in regions.values():
            for name, table in list(backend.tables.items()):
                items = list(table.items.values())
                count = sum(len(v) for v in items) if table.has_range_key else len(items)
                shard = table.stream_shard
                tables[name] = {
                    "items": count,
                    "partitions": len(items),
                    "stream_records": len(shard.items) if shard is not None else 0,
                }
    return tables


def _queues() -> dict[str, int]:
    from moto.sqs.models import sqs_backends

    queues = {}
    for regions in sqs_backends.values():
        for backend in regions.values():
            for name, queue in list(backend.queues.items()):
                queues[name] = len(queue._messages)
    return queues


# The first report's tracemalloc snapshot: later reports give what grew since.
_first: tracemalloc.Snapshot | None = None


def _allocations() -> list[tuple[str, int, int]]:
    """(file:line, bytes, blocks) of the live allocations that grew most since the first report
    (at the first, the biggest); empty when not tracing."""
    global _first
    if not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")]
    )
    if _first is None:
        _first = snapshot
        stats = snapshot.statistics("lineno")[:TOP]
        return [(f"{s.traceback[0].filename}:{s.traceback[0].lineno}", s.size, s.count) for s in stats]
    grown = snapshot.compare_to(_first, "lineno")[:TOP]
    return [(f"{s.traceback[0].filename}:{s.traceback[0].lineno}", s.size_diff, s.count_diff) for s in grown]
