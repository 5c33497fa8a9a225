"""What the dev stack's moto child holds in memory, for GET /_mailpipe/memory (moto_server).

moto runs in a process of its own (moto_process.py), out of reach of a test's or a bench's
tracemalloc and gc: this answers for it. The report: the process's resident memory, DynamoDB's
tables (items, stream records kept), SQS's queues (messages), the Python objects by type (the most
numerous), and, when the child runs under PYTHONTRACEMALLOC=1 (Python's own switch; the variable
reaches the child), the source lines that allocated the most memory still held. Counting objects
walks the whole heap: a debug hook, for bench/memory_per_message.py and investigations, not for
anything that runs often.
"""

from __future__ import annotations

import gc
import re
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

PATH = "/_mailpipe/memory"
TOP = 20  # types and allocation sites reported


def report() -> dict[str, Any]:
    status = Path("/proc/self/status").read_text()
    rss = re.search(r"VmRSS:\s+(\d+) kB", status)
    return {
        "rss": int(rss.group(1)) * 1024 if rss else None,
        "tables": _tables(),
        "queues": _queues(),
        "objects": Counter(type(o).__name__ for o in gc.get_objects()).most_common(TOP),
        "allocated_by": _allocations(),
    }


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


def _allocations() -> list[tuple[str, int, int]]:
    """(file:line, bytes, blocks) of the biggest live allocations; empty when not tracing."""
    if not tracemalloc.is_tracing():
        return []
    stats = tracemalloc.take_snapshot().statistics("lineno")[:TOP]
    return [(f"{s.traceback[0].filename}:{s.traceback[0].lineno}", s.size, s.count) for s in stats]
