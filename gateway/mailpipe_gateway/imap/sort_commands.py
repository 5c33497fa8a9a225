"""SORT, UID SORT (RFC 5256, ESORT of RFC 5267) and THREAD, UID THREAD: the handlers.

The matching is SEARCH's (imap/search.py), the ordering imap/sort.py's and the threading
imap/threads.py's; all of it runs off the event loop in one call, as SEARCH does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailpipe.store import StoredMessage
from mailpipe_gateway.imap import contexts, loading
from mailpipe_gateway.imap import search as searching
from mailpipe_gateway.imap.commands import CancelUpdate, Sort, Thread
from mailpipe_gateway.imap.fetch import has_summary, message_summary
from mailpipe_gateway.imap.matching import matcher
from mailpipe_gateway.imap.message_commands import _uses_modseq
from mailpipe_gateway.imap.serializer import esearch
from mailpipe_gateway.imap.sort import sort_messages
from mailpipe_gateway.imap.state import Done, no
from mailpipe_gateway.imap.threads import thread, thread_response, threadable_of

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

Targets = list[tuple[int, StoredMessage]]
_BADCHARSET = "BADCHARSET (UTF-8 US-ASCII)"


def summaries(session: IMAPSession) -> Any:
    """A message's complete summary: the stored one, or one made from its body (``too_large``);
    raises loading.BodyGone where that body is gone (expunged meanwhile)."""
    read_body = loading.gone_aware(session.ctx.store.read_body)
    return lambda m: m.summary if has_summary(m) else message_summary(m, read_body(m))


async def cmd_sort(session: IMAPSession, command: Sort) -> Done:
    matching = matcher(session, command.criteria, command.charset)  # the view as the client knows it

    def work() -> Targets:
        found = matching()
        return sort_messages(command.keys, found, summaries(session))

    try:
        ordered: Targets = await session.call(work)
    except searching.BadCharset:
        return no("Unsupported charset", _BADCHARSET)
    values = [m.uid if command.uid else n for n, m in ordered]
    modseq = max((m.modseq for _, m in ordered), default=None) if _uses_modseq(command.criteria) else None
    if command.return_options is None:
        line = b"* SORT" + b"".join(b" %d" % v for v in values)
        if modseq is not None and values:
            line += b" (MODSEQ %d)" % modseq
        await session.send(line + b"\r\n")
        return Done(text="SORT completed")
    options = command.return_options
    if not set(options) - {"UPDATE", "CONTEXT", "PARTIAL"} and command.partial is None:
        options += ("ALL",)  # RETURN () is ALL (RFC 4731), and so is a bare UPDATE
    if "UPDATE" in options:  # CONTEXT=SORT (RFC 5267): keep the client's result up to date
        reason = contexts.refusal(session, command.tag, command.uid, command.criteria)
        if reason is not None:
            await session.send(contexts.noupdate(command.tag, reason))
        else:

            def evaluate(session: IMAPSession) -> list[int]:
                found = matcher(session, command.criteria, command.charset)()
                return [m.uid for _, m in sort_messages(command.keys, found, summaries(session))]

            uids = [m.uid for _, m in ordered]
            contexts.register(session, command.tag, sorted_=True, evaluate=evaluate, result=uids)
    await session.send(esearch(command.tag, command.uid, options, values, command.partial, modseq))
    return Done(text="SORT completed")


async def cmd_cancelupdate(session: IMAPSession, command: CancelUpdate) -> Done:
    contexts.cancel(session, command.tags)
    return Done(text="CANCELUPDATE completed")


async def cmd_thread(session: IMAPSession, command: Thread) -> Done:
    view = session.st.view
    assert view is not None
    store = session.ctx.store
    matching = matcher(session, command.criteria, command.charset)  # the view as the client knows it

    def work() -> bytes:
        found = matching()
        summary_of = summaries(session)
        headers: dict[int, bytes] = {}
        if command.algorithm == "REFERENCES":  # References is not in ENVELOPE: the index keeps it
            headers = store.read_headers(view.mailbox.mailbox_id, [m for _, m in found])
        messages = []
        for n, m in found:
            try:
                messages.append(threadable_of(m.uid if command.uid else n, m, summary_of, headers.get(m.uid)))
            except loading.BodyGone:
                continue  # expunged meanwhile: it matches nothing, as in SEARCH (imap/matching.py)
        return thread_response(thread(command.algorithm, messages))

    try:
        response: bytes = await session.call(work)
    except searching.BadCharset:
        return no("Unsupported charset", _BADCHARSET)
    await session.send(response)
    return Done(text="THREAD completed")
