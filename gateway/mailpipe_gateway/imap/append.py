"""APPEND: one message, several at once (MULTIAPPEND, RFC 3502), or one built by CATENATE (RFC 4469).

One message costs the S3 PUT and one transaction (MailStore.append_message). Several are stored
as one batch, all or none (MailStore.append_batch): a PUT each, then one transaction per 99
messages; APPENDUID then names them all with a UID set (RFC 4315). The reader already bounds
what one command may hold: all its literals together within APPENDLIMIT plus a line, so a
MULTIAPPEND cannot make the server buffer more than one maximal APPEND would; a CATENATEd
message is bounded by APPENDLIMIT as it is built.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mailpipe.store import NewMessage, NoSuchMailbox
from mailpipe_gateway.imap import catenate
from mailpipe_gateway.imap.commands import Append
from mailpipe_gateway.imap.ranges import uid_set
from mailpipe_gateway.imap.reader import MAX_LINE
from mailpipe_gateway.imap.state import Done, no

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

_NOT_URL_TEXT = re.compile(r"[^\x01-\x09\x0b\x0c\x0e-\x5c\x5e-\x7f]")  # RFC 4469 url-resp-text


async def cmd_append(session: IMAPSession, command: Append) -> Done:
    limit = session.ctx.append_limit
    # What one command may hold, as the reader bounds its literals: CATENATEd messages count too,
    # so that many of them cannot each take APPENDLIMIT of memory.
    budget = limit + MAX_LINE - sum(len(m.message) for m in command.messages)
    messages: list[NewMessage] = []
    for message in command.messages:
        raw = message.message
        if message.catenate is not None:
            try:
                raw = await catenate.build(session, message.catenate, max(0, min(limit, budget)))
            except catenate.BadURL as exc:
                return no(f"Cannot use that URL: {exc.why}", f"BADURL {_url_text(exc.url)}")
            except catenate.TooBig:
                return no("The catenated message is too large", "TOOBIG")
            budget -= len(raw)
        if len(raw) > limit:
            return no("Message too large", "TOOBIG")
        if not raw:
            # As Dovecot: an empty message is no message (and moto's S3 never answers an empty PUT).
            return no("Can't save a zero-byte message")
        flags = tuple(flag for flag in message.flags if flag.lower() != "\\recent")
        date = int(message.internal_date.timestamp()) if message.internal_date is not None else None
        messages.append(NewMessage(raw, flags, date))
    size = sum(len(m.raw) for m in messages)
    quota = session.ctx.append_quota
    # Mostly known without a request: then no trip through the executor for it.
    fits = quota.fits_as_known(session.st.user, size)
    if fits is None:
        fits = await session.call(quota.fits, session.st.user, size)
    if not fits:
        return no("Quota exceeded: delete some mail first", "OVERQUOTA")
    if len(messages) == 1:
        done = await _append_one(session, command.mailbox, messages[0])
    else:
        done = await _append_many(session, command.mailbox, messages)
    if done.status == "OK":
        quota.added(session.st.user, size)
    return done


async def _append_one(session: IMAPSession, mailbox_name: str, new: NewMessage) -> Done:
    try:
        appended = await session.call(
            lambda: session.ctx.memory.append_message(
                session.st.user, mailbox_name, new.raw, flags=new.flags, internaldate=new.internaldate
            )
        )
    except NoSuchMailbox:
        return no("No such mailbox", "TRYCREATE")
    view, mailbox, uid = session.st.view, appended.mailbox, appended.message.uid
    if (
        view is not None
        and view.mailbox.mailbox_id == mailbox.mailbox_id
        and view.followed_own_append(appended.message, appended.started_from)
    ):
        new_keywords = view.take_new_keywords([appended.message])
        await session.send(
            (session.flags_changed() if new_keywords else b"") + b"* %d EXISTS\r\n" % view.exists
        )
    return Done(text="APPEND completed", code=f"APPENDUID {mailbox.uidvalidity} {uid}")


async def _append_many(session: IMAPSession, mailbox_name: str, messages: list[NewMessage]) -> Done:
    try:
        batch = await session.call(session.ctx.memory.append_batch, session.st.user, mailbox_name, messages)
    except NoSuchMailbox:
        return no("No such mailbox", "TRYCREATE")
    view, mailbox = session.st.view, batch.mailbox
    if view is not None and view.mailbox.mailbox_id == mailbox.mailbox_id:
        followed = [view.followed_own_appends(stored, started) for started, stored in batch.transactions]
        if any(followed):
            new_keywords = view.take_new_keywords(batch.messages)
            await session.send(
                (session.flags_changed() if new_keywords else b"") + b"* %d EXISTS\r\n" % view.exists
            )
    uids = uid_set([m.uid for m in batch.messages])
    return Done(text="APPEND completed", code=f"APPENDUID {mailbox.uidvalidity} {uids}")


def _url_text(url: str) -> str:
    """The URL as BADURL may echo it: no CR, LF, "]" or 8-bit (it came from the client)."""
    return _NOT_URL_TEXT.sub("?", url)[:1000] or "?"
