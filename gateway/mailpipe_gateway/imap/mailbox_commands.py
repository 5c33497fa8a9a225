"""SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from mailpipe.store import Mailbox, MailboxExists, NoSuchMailbox, StoreError
from mailpipe_gateway.imap import serializer
from mailpipe_gateway.imap.commands import (
    FetchAttr,
    ListMailboxes,
    MailboxCommand,
    Quota,
    Rename,
    Select,
    Status,
    UndecodableName,
)
from mailpipe_gateway.imap.fetch import render_fetch
from mailpipe_gateway.imap.listing import Selection, listing
from mailpipe_gateway.imap.ranges import uid_set
from mailpipe_gateway.imap.state import DELIMITER, Done, State, bad, no
from mailpipe_gateway.imap.view import MailboxView

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

_FETCH_AFTER_RESYNC = (FetchAttr("FLAGS"),)
# RFC 6855 3: names (UTF-8 or modified UTF-7 alike) hold no C0 or C1 control, DEL, U+2028 or U+2029.
_NOT_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_LIST_PATTERNS = 64  # RFC 5258 lets a LIST name several; clients send one to three


async def cmd_select(session: IMAPSession, command: Select) -> Done:
    st = session.st
    if command.qresync is not None and not st.qresync:
        return bad("QRESYNC must be enabled first")
    if st.view is not None:
        st.view = None
        st.state = State.AUTHENTICATED
        await session.send(b"* OK [CLOSED] Previous mailbox closed\r\n")
    assert st.user is not None
    held, item = session.ctx.memory.items.known(st.user, command.mailbox)
    listed = session.ctx.snapshots.held_listing(item) if held and item is not None else None
    if listed is None:  # not all in memory: read off the event loop
        try:
            listed = await session.call(session.ctx.snapshots.list_messages, st.user, command.mailbox)
        except NoSuchMailbox:
            return no("No such mailbox", "NONEXISTENT")
    mailbox, messages = listed
    if command.condstore:
        st.enabled.add("CONDSTORE")
    view = MailboxView(mailbox, messages, read_only=command.readonly)
    await session.claim_recent(view, mailbox)
    out = [b"* FLAGS " + serializer.flag_list(view.keywords) + b"\r\n", b"* %d EXISTS\r\n" % view.exists]
    if not st.rev2:
        out.append(b"* %d RECENT\r\n" % view.recent)
        unseen = next((n for n, m in view.messages() if "\\Seen" not in m.flags), None)
        if unseen is not None:
            out.append(b"* OK [UNSEEN %d] First unseen\r\n" % unseen)
    permanent = serializer.permanent_flags(view.keywords, read_only=command.readonly)
    out += [
        b"* OK [PERMANENTFLAGS " + permanent + b"] Flags permitted\r\n",
        b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % mailbox.uidvalidity,
        b"* OK [UIDNEXT %d] Predicted next UID\r\n" % mailbox.uidnext,
        b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % mailbox.highestmodseq,
        b"* OK [MAILBOXID (%s)] Ok\r\n" % mailbox.mailbox_id.encode("ascii"),  # RFC 8474 4.2
    ]
    if st.rev2:
        out.append(b'* LIST () "/" ' + serializer.mailbox(mailbox.name, utf8=True) + b"\r\n")
    await session.send(b"".join(out))
    st.view = view
    st.state = State.SELECTED
    st.saved_search = []
    if command.qresync is not None and command.qresync.uid_validity == mailbox.uidvalidity:
        await _resync(session, command, mailbox)
    return Done(text=f"{command.name} completed", code="READ-ONLY" if command.readonly else "READ-WRITE")


async def _resync(session: IMAPSession, command: Select, mailbox: Mailbox) -> None:
    """QRESYNC (RFC 7162 3.2.5): what was expunged and what changed since the client's MODSEQ."""
    assert command.qresync is not None and session.st.view is not None
    since = command.qresync.mod_seq
    known = command.qresync.known_uids
    known_ranges = known.resolve(max(mailbox.uidnext - 1, 1)) if known is not None else None
    vanished = await session.vanished_since(mailbox, since, known_ranges)
    out = []
    if vanished:
        out.append(b"* VANISHED (EARLIER) " + uid_set(vanished).encode() + b"\r\n")
    # Below the pruning floor (store/pruning.py) the client gets a full resync: every UID not
    # live has vanished (above), and every message's flags.
    full = since < mailbox.prunedmodseq
    view = session.st.view
    for number, message in view.messages():
        if full or message.modseq > since:
            out.append(
                render_fetch(
                    number, view.shown(message), _FETCH_AFTER_RESYNC, None, add_uid=True, add_modseq=True
                )
            )
    if out:
        await session.send(b"".join(out))


async def cmd_create(session: IMAPSession, command: MailboxCommand) -> Done:
    name = command.mailbox.rstrip(DELIMITER)
    if not _valid_name(name):
        return no("Bad mailbox name", "CANNOT")
    memory, owner = session.ctx.memory, session.st.user
    # RFC 9051 6.3.4: create the superiors the name implies, so the hierarchy can be listed.
    parts = name.split(DELIMITER)
    for depth in range(1, len(parts)):
        parent = DELIMITER.join(parts[:depth])
        with contextlib.suppress(MailboxExists):
            await session.call(memory.create_mailbox, owner, parent)
    try:
        created = await session.call(memory.create_mailbox, owner, name)
    except MailboxExists:
        return no("Mailbox exists", "ALREADYEXISTS")
    return Done(text="CREATE completed", code=f"MAILBOXID ({created.mailbox_id})")  # RFC 8474 4.1


async def cmd_delete(session: IMAPSession, command: MailboxCommand) -> Done:
    if command.mailbox == "INBOX":
        return no("INBOX cannot be deleted", "CANNOT")
    names = {m.name for m in await session.call(session.ctx.memory.items.list, session.st.user)}
    if any(name.startswith(command.mailbox + DELIMITER) for name in names):
        # RFC 9051 6.3.5 lets a server keep such a name as \Noselect; refusing is simpler and clear.
        return no("Mailbox has inferior hierarchical names: delete those first", "INUSE")
    if st_selected(session, command.mailbox):
        # Nothing sensible remains selected: answer the DELETE, then BYE and close, as Dovecot does
        # (whether or not the delete itself succeeds: a NO here means another session deleted it).
        session.st.view = None
        session.st.state = State.AUTHENTICATED
        session.bye_after_answer = b"* BYE the selected mailbox was deleted\r\n"
    try:
        await session.call(session.ctx.memory.delete_mailbox, session.st.user, command.mailbox)
    except NoSuchMailbox:
        return no("No such mailbox", "NONEXISTENT")
    return Done(text="DELETE completed")


async def cmd_rename(session: IMAPSession, command: Rename) -> Done:
    memory, owner = session.ctx.memory, session.st.user
    if not _valid_name(command.new):
        return no("Bad mailbox name", "CANNOT")
    if command.old == "INBOX":
        return await _rename_inbox(session, command.new)
    names = [m.name for m in await session.call(memory.items.list, owner)]
    if command.old not in names:
        return no("No such mailbox", "NONEXISTENT")
    if command.new in names:
        return no("Mailbox exists", "ALREADYEXISTS")
    # Inferiors move along (RFC 9051 6.3.6).
    moves = [(command.old, command.new)] + [
        (name, command.new + name[len(command.old) :])
        for name in names
        if name.startswith(command.old + DELIMITER)
    ]
    try:
        for old, new in moves:
            await session.call(memory.rename_mailbox, owner, old, new)
    except MailboxExists:
        return no("Mailbox exists", "ALREADYEXISTS")
    except StoreError as exc:
        return no(str(exc), "CANNOT")
    return Done(text="RENAME completed")


async def _rename_inbox(session: IMAPSession, new: str) -> Done:
    """RENAME INBOX moves its messages to the new mailbox and leaves INBOX empty (RFC 9051 6.3.6)."""
    memory, owner = session.ctx.memory, session.st.user
    try:
        await session.call(memory.create_mailbox, owner, new)
    except MailboxExists:
        return no("Mailbox exists", "ALREADYEXISTS")
    inbox, messages = await session.call(memory.store.list_messages, owner, "INBOX")
    uids = [m.uid for m in messages]
    await session.call(memory.copy, owner, "INBOX", uids, new)
    await session.call(lambda: memory.expunge(owner, "INBOX", uids, mailbox=inbox))
    return Done(text="RENAME completed")


async def cmd_subscribe(session: IMAPSession, command: MailboxCommand) -> Done:
    return await _subscription(session, command, True)


async def cmd_unsubscribe(session: IMAPSession, command: MailboxCommand) -> Done:
    return await _subscription(session, command, False)


async def _subscription(session: IMAPSession, command: MailboxCommand, subscribed: bool) -> Done:
    await session.call(session.ctx.memory.set_subscribed, session.st.user, command.mailbox, subscribed)
    return Done(text=f"{command.name} completed")


async def cmd_list(session: IMAPSession, command: ListMailboxes) -> Done:
    lsub = command.name == "LSUB"
    if not lsub and command.patterns == ("",):
        await session.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return Done(text="LIST completed")
    # RFC 9051 6.3.9: a pattern that is not modified UTF-7 matches nothing; ignored, not BAD.
    patterns = {
        command.reference + pattern
        for pattern in command.patterns
        if not isinstance(pattern, UndecodableName) and not isinstance(command.reference, UndecodableName)
    }
    if len(patterns) > MAX_LIST_PATTERNS:
        return bad(f"At most {MAX_LIST_PATTERNS} mailbox patterns in one LIST")
    subscribed_only = lsub or "SUBSCRIBED" in command.select_options
    selection = Selection(
        lsub=lsub,
        subscribed_only=subscribed_only,
        special_only="SPECIAL-USE" in command.select_options,
        recursive="RECURSIVEMATCH" in command.select_options,
        show_subscribed=subscribed_only or "SUBSCRIBED" in command.return_options,
    )
    mailboxes, subscribed = await session.call(
        session.ctx.memory.items.list_with_subscriptions, session.st.user
    )
    # Matching costs a step per character of each name for each pattern: off the event loop.
    rows = await session.call(listing, mailboxes, subscribed, patterns, selection)
    out = []
    for row in rows:
        name = serializer.mailbox(row.name, utf8=session.st.utf8)
        line = f'* {command.name} ({" ".join(row.attributes)}) "/" '.encode() + name
        if row.childinfo:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        out.append(line + b"\r\n")
        if command.status_items and row.mailbox is not None:
            out.append(await status_line(session, row.name, command.status_items))
    await session.send(b"".join(out))
    return Done(text=f"{command.name} completed")


async def cmd_status(session: IMAPSession, command: Status) -> Done:
    if "HIGHESTMODSEQ" in command.items:  # a CONDSTORE enabling command (RFC 7162 3.1)
        await session.enable_condstore()
    try:
        line = await status_line(session, command.mailbox, command.items)
    except NoSuchMailbox:
        return no("No such mailbox", "NONEXISTENT")
    await session.send(line)
    return Done(text="STATUS completed")


async def status_line(session: IMAPSession, name: str, items: tuple[str, ...]) -> bytes:
    mailbox, messages = await session.call(session.ctx.snapshots.list_messages, session.st.user, name)
    values = {
        "MESSAGES": len(messages),
        "UIDNEXT": mailbox.uidnext,
        "UIDVALIDITY": mailbox.uidvalidity,
        "UNSEEN": sum(1 for m in messages if "\\Seen" not in m.flags),
        "DELETED": sum(1 for m in messages if "\\Deleted" in m.flags),
        "SIZE": sum(m.crlf_size for m in messages),
        "HIGHESTMODSEQ": mailbox.highestmodseq,
        "RECENT": sum(1 for m in messages if m.uid >= mailbox.recent_from),  # no session saw them yet
        "MAILBOXID": f"({mailbox.mailbox_id})",  # RFC 8474 4.3
    }
    pairs = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return b"* STATUS " + serializer.mailbox(name, utf8=session.st.utf8) + f" ({pairs})\r\n".encode()


# -- QUOTA (RFC 9208): one quota root per user, "", covering all of the user's mailboxes ----------

QUOTA_ROOT = ""


async def cmd_getquotaroot(session: IMAPSession, command: MailboxCommand) -> Done:
    if await session.call(session.ctx.memory.items.get, session.st.user, command.mailbox) is None:
        return no("No such mailbox", "NONEXISTENT")
    line = b"* QUOTAROOT " + serializer.mailbox(command.mailbox, utf8=session.st.utf8) + b' ""\r\n'
    await session.send(line + await _quota_line(session))
    return Done(text="GETQUOTAROOT completed")


async def cmd_getquota(session: IMAPSession, command: Quota) -> Done:
    if command.root != QUOTA_ROOT:
        return no("No such quota root", "NONEXISTENT")
    await session.send(await _quota_line(session))
    return Done(text="GETQUOTA completed")


async def cmd_setquota(session: IMAPSession, command: Quota) -> Done:
    return no("Quotas are set by the administrator", "NOPERM")


async def _quota_line(session: IMAPSession) -> bytes:
    quota = await session.call(session.ctx.quotas.state, session.st.user)
    # STORAGE is counted in units of 1024 octets, rounded up (the limit down: never promise more).
    return b'* QUOTA "" (STORAGE %d %d)\r\n' % (-(-quota.used // 1024), quota.limit // 1024)


def st_selected(session: IMAPSession, name: str) -> bool:
    return session.st.view is not None and session.st.view.mailbox.name == name


def _valid_name(name: str) -> bool:
    return (
        bool(name)
        and not name.startswith(DELIMITER)
        and DELIMITER * 2 not in name
        and len(name) <= 512
        and (not any(ch in name for ch in "*%"))
        and not _NOT_IN_NAMES.search(name)
    )
