"""The message bytes a FETCH or SEARCH of many messages needs, read ahead and handed out in order.

Reading one message's bytes after another made opening a folder take seconds per thousand
messages (issue 14). Headers (what clients fetch to list a folder) are read HEADER_CHUNK messages
at a time with one MailStore.read_headers call, mostly from the index, the next chunk while the
current one is sent; whole bodies are read up to BODIES_AHEAD (and BODY_BYTES_AHEAD) at a
time. Every read runs off the event loop (`call`, the session's executor), and the responses
still go out in the order asked.
SEARCH BODY/TEXT reads bodies ahead of the message it tests (BodiesAhead). SEARCH, SORT and
THREAD read bodies through `gone_aware`, which tells a body expunged meanwhile (BodyGone) from a
failed read.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, Literal

from botocore.exceptions import ClientError

from mailpipe.store import MailStore, StoredMessage

HEADER_CHUNK = 500  # enough to batch well (5 BatchGetItems), small enough that responses start soon
# Bodies read at once for one FETCH, bounded by count and by their stored size (at least one is
# always read): 8 at once left 300 small bodies ~25% slower on the dev stack than 32 (2026-12-05),
# and on S3, at tens of ms a GET, more in flight hides more latency; the bytes bound keeps a FETCH
# of big messages to a few MB held.
BODIES_AHEAD = 32
BODY_BYTES_AHEAD = 8 * 1024 * 1024
SEARCH_BODIES_AHEAD = 8  # SEARCH's read-ahead (BodiesAhead), bounded by count only

Need = Literal["header", "body"] | None
Call = Callable[..., Awaitable[Any]]


class Gone:
    """The message's bytes are gone: expunged by another session meanwhile."""


GONE = Gone()


class Unreadable:
    """The message's bytes could not be read (S3 failed or is unreachable): not an expunge."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class BodyGone(Exception):
    """Raised for a message whose bytes are not in S3: another session expunged it after the
    view being searched was taken (the view does not know yet). It matches nothing."""


def _body_missing(error: BaseException) -> bool:
    """Whether S3 said the body is not there (what an expunge leaves), not that it failed."""
    return isinstance(error, ClientError) and error.response["Error"]["Code"] in ("NoSuchKey", "404")


def gone_aware(read: Callable[[StoredMessage], bytes]) -> Callable[[StoredMessage], bytes]:
    """`read`, raising BodyGone where S3 says the body is not there; any other failure is S3's
    (or ours) and stays as it is."""

    def read_or_gone(message: StoredMessage) -> bytes:
        try:
            return read(message)
        except ClientError as exc:
            if _body_missing(exc):
                raise BodyGone(message.uid) from exc
            raise

    return read_or_gone


async def in_order(
    call: Call, store: MailStore, mailbox_id: str, wanted: Sequence[tuple[StoredMessage, Need]]
) -> AsyncIterator[bytes | Gone | Unreadable | None]:
    """For each of `wanted`, in order: its header block ("header"), its body ("body"), None when
    nothing is needed, GONE (its body is not in S3) or Unreadable (reading it failed). Use with
    contextlib.aclosing: reads still pending are dropped."""
    header_chunks = _chunks([m for m, need in wanted if need == "header"], HEADER_CHUNK)
    header_tasks: dict[int, asyncio.Future[dict[int, bytes]]] = {}
    bodies = [m for m, need in wanted if need == "body"]
    body_tasks: deque[tuple[asyncio.Future[bytes], int]] = deque()
    started_bodies = headers_seen = bytes_ahead = 0

    def header_chunk(index: int) -> asyncio.Future[dict[int, bytes]] | None:
        if index < len(header_chunks) and index not in header_tasks:
            header_tasks[index] = asyncio.ensure_future(
                call(store.read_headers, mailbox_id, header_chunks[index])
            )
        return header_tasks.get(index)

    try:
        for message, need in wanted:
            while started_bodies < len(bodies) and len(body_tasks) < BODIES_AHEAD:
                size = bodies[started_bodies].size
                if body_tasks and bytes_ahead + size > BODY_BYTES_AHEAD:
                    break
                task = _body(call, store, bodies[started_bodies])
                body_tasks.append((task, size))
                bytes_ahead += size
                started_bodies += 1
            if need is None:
                yield None
            elif need == "header":
                index, headers_seen = headers_seen // HEADER_CHUNK, headers_seen + 1
                current = header_chunk(index)
                assert current is not None
                header_chunk(index + 1)  # read while this chunk's responses go out
                headers = await current
                if headers_seen % HEADER_CHUNK == 0:
                    header_tasks.pop(index)
                yield headers.get(message.uid, GONE)
            else:
                task, size = body_tasks.popleft()
                bytes_ahead -= size
                try:
                    body: bytes | Gone | Unreadable = await task
                except Exception as exc:
                    # Not there: most likely expunged by another session just now (the caller
                    # checks). Any other failure is S3's, and no expunge.
                    body = GONE if _body_missing(exc) else Unreadable(exc)
                yield body
    finally:
        for task in [*header_tasks.values(), *(task for task, _ in body_tasks)]:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it as forgotten
            else:
                task.cancel()


def _body(call: Call, store: MailStore, message: StoredMessage) -> asyncio.Future[bytes]:
    """The message's body: from the body cache at once, without a trip to the executor (which
    costs more than the copy on a loaded machine), else read there."""
    cached = store.cached_body(message)
    if cached is None:
        return asyncio.ensure_future(call(store.read_body, message))
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    done.set_result(cached)
    return done


class BodiesAhead:
    """SEARCH's body loader for `messages`, which it tests in their order.

    While the search asks for the bodies of one message after another, the next SEARCH_BODIES_AHEAD are
    read meanwhile (MailStore.read_ahead); after a message it decided without its body, only the
    next one is, so a search that needs few bodies (UNSEEN BODY x) reads few more than those.
    """

    def __init__(self, store: MailStore, messages: Sequence[StoredMessage]) -> None:
        self._store = store
        self._messages = list(messages)
        self._positions = {m.uid: i for i, m in enumerate(self._messages)}
        self._ahead: dict[int, Future[bytes]] = {}  # by position
        self._last = -2

    def __call__(self, message: StoredMessage) -> bytes:
        position = self._positions.get(message.uid)
        if position is None:
            return self._store.read_body(message)
        for skipped in [p for p in self._ahead if p < position]:
            self._ahead.pop(skipped).cancel()
        ahead = SEARCH_BODIES_AHEAD if position == self._last + 1 else 1
        self._last = position
        for later in range(position + 1, min(position + 1 + ahead, len(self._messages))):
            if later not in self._ahead:
                self._ahead[later] = self._store.read_ahead(self._messages[later])
        body = self._ahead.pop(position, None)
        return body.result() if body is not None else self._store.read_body(message)


def _chunks(items: list[StoredMessage], size: int) -> list[list[StoredMessage]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
