"""FETCH responses for many messages whose items need at most their header block, a chunk at a time.

This is how clients open a folder (Thunderbird's `UID FETCH 1:* (UID FLAGS RFC822.SIZE
BODY.PEEK[HEADER.FIELDS (...)])`). Rendering each response on the event loop, with an await per
message, cost more than reading the headers once they were in memory (issue 14), and 10,000 of
them in a row would hold the loop for a large fraction of a second. So a chunk of CHUNK messages
is read (MailStore.read_headers: this process's header cache first, then the index) and rendered
in one call on the session's executor, which gives the loop back between chunks; the next chunk
is rendered while the current one is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mailpipe.store import MailStore, StoredMessage
from mailpipe_gateway.imap import fetch as fetching
from mailpipe_gateway.imap.commands import FetchItem

CHUNK = 500  # responses rendered per executor call: ~5-20 ms of work, ~100-300 KB of output

Call = Callable[..., Awaitable[object]]


@dataclass
class Rendered:
    """One chunk's responses, and the messages whose header was not there (expunged meanwhile)."""

    responses: bytes = b""
    missing: list[StoredMessage] = field(default_factory=list)


@dataclass(frozen=True)
class Rendering:
    """What every response of the command shares."""

    items: tuple[FetchItem, ...]
    add_uid: bool
    add_modseq: bool
    utf8: bool


def render_chunk(
    store: MailStore,
    mailbox_id: str,
    rendering: Rendering,
    targets: Sequence[tuple[int, StoredMessage, bool]],
) -> Rendered:
    """The responses for `targets` (sequence number, message as shown, whether its header is
    needed), in order; runs off the event loop."""
    headers = store.read_headers(mailbox_id, [m for _, m, needed in targets if needed])
    out: list[bytes] = []
    missing: list[StoredMessage] = []
    for number, message, needed in targets:
        header = headers.get(message.uid) if needed else None
        if needed and header is None:
            missing.append(message)
            continue
        out.append(
            fetching.render_fetch(
                number,
                message,
                rendering.items,
                header,
                add_uid=rendering.add_uid,
                add_modseq=rendering.add_modseq,
                utf8=rendering.utf8,
            )
        )
    return Rendered(b"".join(out), missing)


async def chunks(
    call: Call,
    store: MailStore,
    mailbox_id: str,
    rendering: Rendering,
    targets: Sequence[tuple[int, StoredMessage, bool]],
) -> AsyncIterator[Rendered]:
    """Each chunk's Rendered, in order, the next one rendered while the caller sends this one.
    Use with contextlib.aclosing: a chunk still rendering is dropped."""
    pieces = [targets[i : i + CHUNK] for i in range(0, len(targets), CHUNK)]
    pending: asyncio.Future[object] | None = None
    try:
        for index in range(len(pieces)):
            current = pending or asyncio.ensure_future(
                call(render_chunk, store, mailbox_id, rendering, pieces[index])
            )
            pending = None
            if index + 1 < len(pieces):
                pending = asyncio.ensure_future(
                    call(render_chunk, store, mailbox_id, rendering, pieces[index + 1])
                )
            rendered = await current
            assert isinstance(rendered, Rendered)
            yield rendered
    finally:
        if pending is not None:
            pending.cancel()
