"""The dev stack's moto answers small plain S3 GETs on waitress's loop thread, not on a worker.

waitress parses a request on its loop thread, then hands it to one of its worker threads (a queue
under a condition variable: a thread woken, the GIL passed over), and the worker, once it has
answered, wakes the loop again through its trigger pipe. For a GetObject that s3_reads.py answers
in ~25 us, those hand-overs were most of the ~0.3 ms of moto CPU a body GET cost, and a FETCH
of 300 bodies is 300 of them, on the two cores the gateway and moto share (bench/open_mailbox.py,
2026-12-06). A request that s3_reads.PlainObjectReads would answer (a plain GetObject of a
whole object; see `plain_get_request`) is served where it was parsed: the same WSGI app, the
same answer, only no hand-over. Anything else (DynamoDB under its lock, SQS's long polls,
PUTs, a GET moto must answer) goes to the workers as before, so nothing slow runs on the loop.

Only objects up to INLINE_BYTES, and only on a connection with nothing left to send: the loop
thread must never wait for its own flushing (waitress's workers block in write_soon while a
connection holds more than its high watermark, 16 MB, unsent).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from waitress.channel import HTTPChannel

INLINE_BYTES = 1024 * 1024


class InlineChannel(HTTPChannel):  # type: ignore[misc]
    """A waitress channel whose requests chosen by its server's add_task (`inline_next`) are
    served on the loop thread, right after the data that completed them was parsed."""

    inline_next = False

    def received(self, data: bytes) -> bool:
        result: bool = super().received(data)
        # Outside received()'s requests_lock, which service() takes when it is done.
        while self.inline_next:
            self.inline_next = False
            self.service()
        return result


def install(server: Any, loop_thread: threading.Thread, eligible: Callable[[Any], bool]) -> None:
    """Make waitress `server` (not yet running; `loop_thread` will run it) serve on its loop
    thread the requests for which `eligible(parsed_request)` holds."""
    dispatch = server.add_task

    def add_task(channel: Any) -> None:
        # A worker finishing one request adds the channel's next (pipelined) one: it stays there.
        if (
            threading.current_thread() is loop_thread
            and isinstance(channel, InlineChannel)
            and channel.requests
            and not channel.total_outbufs_len
            and eligible(channel.requests[0])
        ):
            channel.inline_next = True
            return
        dispatch(channel)

    server.channel_class = InlineChannel
    server.add_task = add_task
