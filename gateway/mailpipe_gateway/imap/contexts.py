"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4): searches a client asked to keep up to date.

``UID SEARCH RETURN (UPDATE ...)`` and ``UID SORT RETURN (UPDATE ...)`` leave a context behind:
whenever the session learns of changes to its mailbox (after a command, during IDLE), each
context's result is worked out again and the differences go to the client as

    * ESEARCH (TAG "tag") UID REMOVEFROM (position uids) ADDTO (position uids)

where, for SORT, the position is the 1-based place in the sorted result (REMOVEFROM: where the
removed run was; ADDTO: where the added run lands, applied in order), and for SEARCH, whose
result is in UID order anyway, it is 0. CANCELUPDATE ends a context, as does leaving the mailbox.

Bounds, where RFC 5267 4.2 lets a server decline (``* NO [NOUPDATE "tag"]``, the command still
answers): at most MAX_CONTEXTS per session; none for criteria that read message bodies (each
change would read them all again); none for SEARCH/SORT by message number, whose numbers the
client would have to shift through every expunge, for so little use. Working a result out again
runs off the event loop and only when the view changed since the last time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpipe_gateway.imap import search as searching
from mailpipe_gateway.imap.commands import SearchKey
from mailpipe_gateway.imap.ranges import uid_set

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession
    from mailpipe_gateway.imap.view import MailboxView

MAX_CONTEXTS = 10

# The result of a context, worked out again: a session and the context give the UIDs in order.
Evaluate = Callable[["IMAPSession"], list[int]]


@dataclass(eq=False)
class Context:
    tag: str
    sorted: bool  # SORT (positions matter) or SEARCH (position 0)
    evaluate: Evaluate  # blocking: runs off the loop
    view: MailboxView  # the mailbox selection it belongs to
    result: list[int]  # UIDs, in result order
    version: tuple[int, ...]


_LIVE: weakref.WeakKeyDictionary[Any, list[Context]] = weakref.WeakKeyDictionary()


def refusal(session: IMAPSession, tag: str, uid: bool, criteria: SearchKey) -> str | None:
    """Why UPDATE cannot be granted (the text of the NOUPDATE response), or None."""
    if not uid:
        return "UPDATE needs UID SEARCH or UID SORT"
    if searching.needs_body(criteria):
        return "UPDATE is not kept for searches of message text"
    if sum(1 for c in _contexts(session) if c.tag != tag) >= MAX_CONTEXTS:
        return f"At most {MAX_CONTEXTS} searches are kept up to date: CANCELUPDATE one first"
    return None


def noupdate(tag: str, reason: str) -> bytes:
    return f'* NO [NOUPDATE "{_quoted(tag)}"] {reason}\r\n'.encode()


def register(session: IMAPSession, tag: str, *, sorted_: bool, evaluate: Evaluate, result: list[int]) -> None:
    view = session.st.view
    assert view is not None
    cancel(session, [tag])  # a tag names one context: a new search under it replaces the old
    _contexts(session).append(Context(tag, sorted_, evaluate, view, list(result), version(view)))


def cancel(session: IMAPSession, tags: list[str] | tuple[str, ...]) -> None:
    contexts = _contexts(session)
    contexts[:] = [c for c in contexts if c.tag not in tags]


def version(view: MailboxView) -> tuple[int, ...]:
    """What changes whenever a result may: messages come, go (or wait to be announced gone), or
    change flags (each flag change raises the message's MODSEQ)."""
    messages = view.messages()
    pending = sum(1 for _, m in messages if view.is_expunged(m.uid))
    return (len(messages), pending, max((m.modseq for _, m in messages), default=0), view.largest_uid)


async def notify(session: IMAPSession) -> None:
    """Send ADDTO/REMOVEFROM for every context whose result changed since it was last sent."""
    contexts = _LIVE.get(session)
    if not contexts:
        return
    view = session.st.view
    contexts[:] = [c for c in contexts if c.view is view]  # left the mailbox: those are over
    if view is None or not contexts:
        return
    now = version(view)
    stale = [c for c in contexts if c.version != now]
    if not stale:
        return
    results = await session.call(lambda: [c.evaluate(session) for c in stale])
    out = bytearray()
    for context, result in zip(stale, results, strict=True):
        out += changes(context, result)
        context.result, context.version = result, now
    if out:
        await session.send(bytes(out))


def changes(context: Context, new: list[int]) -> bytes:
    """The ESEARCH response taking the client from ``context.result`` to ``new`` (b"" if equal)."""
    old = context.result
    if old == new:
        return b""
    kept = set(new)
    gone = [uid for uid in old if uid not in kept]
    known = set(old)
    added = [(position, uid) for position, uid in enumerate(new, 1) if uid not in known]
    parts: list[str] = []
    if context.sorted:
        # REMOVEFROM runs, each at its place in the result as it is by then; then ADDTO runs in
        # increasing position, each at its place once the earlier ones are in.
        removed = 0
        for index, uid in enumerate(old):
            if uid not in kept:
                parts.append(f"REMOVEFROM ({index + 1 - removed} {uid})")
                removed += 1
        for position, uid in added:
            parts.append(f"ADDTO ({position} {uid})")
    else:
        if gone:
            parts.append(f"REMOVEFROM (0 {uid_set(gone)})")
        if added:
            parts.append(f"ADDTO (0 {uid_set([uid for _, uid in added])})")
    if not parts:  # same members, another order: cannot happen (sort keys never change)
        return b""
    return f'* ESEARCH (TAG "{_quoted(context.tag)}") UID {" ".join(parts)}\r\n'.encode()


def _contexts(session: IMAPSession) -> list[Context]:
    contexts = _LIVE.get(session)
    if contexts is None:
        contexts = _LIVE[session] = []
    return contexts


def _quoted(tag: str) -> str:
    return tag.replace("\\", "\\\\").replace('"', '\\"')
