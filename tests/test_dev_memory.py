"""The dev stack's memory does not grow with the mail it stores (bodies are files, s3_files.py;
moto keeps no copy of every model object it made, moto_server._stop_tracking_model_instances).
bench/memory_per_message.py prints the figure."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dev_process import DevProcess
from dns_zone import serving
from process_memory import store_messages, tree_rss

BOB = ("bob@example.test", "bob-password")
WARM_UP = 60  # the first messages' allocations (connections, pools, caches, imports) are not theirs
N = 150
# RSS per stored message allowed, moto's process included (bench/memory_per_message.py prints it
# per process, and what moto's child holds). What a message leaves is state: in moto's child the
# message item, its delivery marker, its idempotency record and its S3 key's metadata (~8 kB of
# Python objects by tracemalloc), with the allocator's slack around them (glibc's malloc_trim gives
# back nothing more: it is not free C heap), and the bounded rings still filling while the test
# runs (deleted SQS receipt handles, shard iterators); in the stack's process its IMAP memory
# (~4-7 kB: message metadata and compressed headers). Measured 2026-12-05: ~34-39 kB (the
# stack's ~5 kB, moto's the rest; it was ~48 kB before the stream ring below reached moto's child
# and moto's unbounded SNS and SQS records were bounded). The budget still fails moto's tracking
# of every model object (~68 kB per message in this test).
BUDGET = 45_000


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    with serving("") as (port, _zone):
        process = DevProcess(tmp_path, f"127.0.0.1:{port}")
        yield process
        process.kill()


def test_memory_grows_by_a_few_kilobytes_per_stored_message(dev: DevProcess) -> None:
    # moto keeps the table stream's newest records (both images of each item written, ~10 kB with a
    # header: 4096 of them by default, moto_server.STREAM_RECORDS_KEPT), a bounded ring that would
    # fill during the measured rounds; a small ring is full after the warm-up, as a long-running
    # stack's is. (The variable reaches moto's child: moto_process.CHILD_SETTINGS.)
    dev.extra_env["MAILPIPE_DEV_STREAM_RECORDS"] = "64"
    dev.start()
    # Its log (a few lines per message) is read and dropped: a full pipe would stop the stack.
    assert dev.process is not None and dev.process.stdout is not None
    threading.Thread(target=dev.process.stdout.read, daemon=True).start()
    smtp, imap = dev.ports["smtp"], dev.ports["imap"]
    store_messages(smtp, imap, BOB, 0, WARM_UP)
    before = tree_rss(dev.pid)
    store_messages(smtp, imap, BOB, WARM_UP, N)
    middle = tree_rss(dev.pid)
    store_messages(smtp, imap, BOB, WARM_UP + N, N)
    after = tree_rss(dev.pid)
    first, second = middle - before, after - middle
    # 2N messages cost not ~2x N's growth but at most N's plus a small budget per message: the
    # growth is what a process settles at, not a per-message leak.
    assert second <= max(first, 0) + N * BUDGET, f"{first / N:.0f}, then {second / N:.0f} bytes per message"
    assert (after - before) / (2 * N) < BUDGET, f"{(after - before) / (2 * N):.0f} bytes per message"
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(timeout=60) == 0
