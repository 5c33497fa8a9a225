"""CHECK, CLOSE, UNSELECT, EXPUNGE, COPY, MOVE, STORE, FETCH, SEARCH."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from mailpipe.store import StoredMessage
from mailpipe_gateway.imap import contexts, header_fetch, loading
from mailpipe_gateway.imap import fetch as fetching
from mailpipe_gateway.imap import search as searching
from mailpipe_gateway.imap.commands import (
    And,
    Command,
    Copy,
    Expunge,
    Fetch,
    FetchAttr,
    FetchItem,
    ModSeqKey,
    Not,
    Or,
    Search,
    SequenceSet,
    Store,
)
from mailpipe_gateway.imap.matching import matcher
from mailpipe_gateway.imap.ranges import uid_set
from mailpipe_gateway.imap.serializer import esearch
from mailpipe_gateway.imap.state import Done, State, bad, no
from mailpipe_gateway.imap.view import Updates

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

log = logging.getLogger(__name__)

Targets = list[tuple[int, StoredMessage]]


class _BadSet(Exception):
    pass


def resolve(session: IMAPSession, sequence_set: SequenceSet, uid: bool) -> Targets:
    """The messages a sequence set names in the selected mailbox, in message-number order."""
    view = session.st.view
    assert view is not None
    if sequence_set.saved:
        saved = set(session.st.saved_search)
        return [(n, m) for n, m in view.messages() if m.uid in saved]
    if uid:
        return view.by_uids(sequence_set.resolve(view.largest_uid))
    if view.exists == 0:
        raise _BadSet("No messages in the mailbox")
    ranges = sequence_set.resolve(view.exists)
    if any(high > view.exists or low < 1 for low, high in ranges):
        raise _BadSet("Invalid message sequence number")
    return view.by_numbers(ranges)


# -- mailbox-level commands (APPEND: imap/append.py) ----------------------------------------------


async def cmd_check(session: IMAPSession, command: Command) -> Done:
    return Done(text="CHECK completed")


async def cmd_close(session: IMAPSession, command: Command) -> Done:
    view = session.st.view
    assert view is not None
    if command.name == "CLOSE" and not view.read_only:
        # CLOSE expunges silently (RFC 9051 6.4.1): no EXPUNGE responses.
        deleted = await _flagged_deleted(session)
        if deleted:
            await session.call(
                lambda: session.ctx.memory.expunge(
                    session.st.user, view.mailbox.name, deleted, only_deleted=True, mailbox=view.mailbox
                )
            )
    session.st.view = None
    session.st.state = State.AUTHENTICATED
    return Done(text=f"{command.name} completed")


async def cmd_expunge(session: IMAPSession, command: Expunge) -> Done:
    view = session.st.view
    assert view is not None
    if view.read_only:
        return no("Mailbox is read-only", "READ-ONLY")
    if command.uids is None:
        deleted = await _flagged_deleted(session)
    else:
        # The store expunges only those that have \\Deleted as it commits: no need to list them first.
        deleted = [m.uid for _, m in view.by_uids(command.uids.resolve(view.largest_uid))]
    commits: list[int] = []
    expunged = await session.call(
        lambda: session.ctx.memory.expunge(
            session.st.user,
            view.mailbox.name,
            deleted,
            only_deleted=True,
            commits=commits,
            mailbox=view.mailbox,
        )
    )
    await _announce_own_expunges(session, expunged)
    view.followed_own_commits(commits)
    return Done(text="EXPUNGE completed")


async def _flagged_deleted(session: IMAPSession) -> list[int]:
    """The UIDs with \\Deleted in the selected mailbox as it is now (the store checks again as it
    expunges them: another session may take the flag off meanwhile)."""
    assert session.st.view is not None
    name = session.st.view.mailbox.name
    _, messages = await session.call(session.ctx.snapshots.list_messages, session.st.user, name)
    return [m.uid for m in messages if "\\Deleted" in m.flags]


async def _announce_own_expunges(session: IMAPSession, uids: list[int]) -> None:
    view = session.st.view
    assert view is not None
    numbers = view.forget(uids)
    if session.st.qresync:
        await session.announce(Updates(vanished=sorted(uids)) if uids else Updates())
    else:
        await session.announce(Updates(expunged=numbers))


# -- COPY and MOVE ---------------------------------------------------------------------------------


async def cmd_copy(session: IMAPSession, command: Copy) -> Done:
    view = session.st.view
    assert view is not None
    move = command.name == "MOVE"
    if move and view.read_only:
        return no("Mailbox is read-only", "READ-ONLY")
    try:
        targets = resolve(session, command.sequence_set, command.uid)
    except _BadSet as exc:
        return bad(str(exc))
    if await session.call(session.ctx.memory.items.get, session.st.user, command.mailbox) is None:
        return no("No such mailbox", "TRYCREATE")
    uids = [m.uid for _, m in targets if not view.is_expunged(m.uid)]
    if not uids:
        return Done(text=f"{command.name} completed (nothing to do)")
    target, pairs = await session.call(
        session.ctx.memory.copy, session.st.user, view.mailbox.name, uids, command.mailbox
    )
    code = f"COPYUID {target.uidvalidity} {uid_set([s for s, _ in pairs])} {uid_set([d for _, d in pairs])}"
    if not move:
        return Done(text="COPY completed", code=code)
    # RFC 6851 4.3: COPYUID comes untagged, before the EXPUNGE responses.
    await session.send(f"* OK [{code}] Moved\r\n".encode())
    commits: list[int] = []
    expunged = await session.call(
        lambda: session.ctx.memory.expunge(
            session.st.user, view.mailbox.name, uids, commits=commits, mailbox=view.mailbox
        )
    )
    await _announce_own_expunges(session, expunged)
    view.followed_own_commits(commits)
    return Done(text="MOVE completed")


# -- STORE -----------------------------------------------------------------------------------------


async def cmd_store(session: IMAPSession, command: Store) -> Done:
    view = session.st.view
    assert view is not None
    if view.read_only:
        return no("Mailbox is read-only", "READ-ONLY")
    try:
        targets = resolve(session, command.sequence_set, command.uid)
    except _BadSet as exc:
        return bad(str(exc))
    if command.unchanged_since is not None:
        await session.enable_condstore()
    flags = [flag for flag in command.flags if flag.lower() != "\\recent"]
    uids = [m.uid for _, m in targets if not view.is_expunged(m.uid)]
    commits: list[int] = []
    change = await session.call(
        lambda: session.ctx.memory.update_flags(
            session.st.user,
            view.mailbox.name,
            uids,
            command.operation,
            flags,
            unchanged_since=command.unchanged_since,
            commits=commits,
            mailbox=view.mailbox,
        )
    )
    for message in change.changed:
        view.apply_own_change(message)
    view.followed_own_commits(commits)
    changed = {m.uid for m in change.changed}
    out = [session.flags_changed()] if view.take_new_keywords(change.changed) else []
    condstore = session.st.condstore
    for number, message in targets:
        current = view.shown(view.message(message.uid))
        # .SILENT suppresses the echo, except that CONDSTORE clients learn each new MODSEQ (RFC 7162 3.1.3).
        if (command.silent and not (condstore and current.uid in changed)) or current.uid in change.modified:
            continue
        out.append(
            fetching.render_fetch(number, current, _FLAGS, None, add_uid=command.uid, add_modseq=condstore)
        )
    await session.send(b"".join(out))
    if change.modified:
        modified = change.modified if command.uid else [view.number_of(uid) or 0 for uid in change.modified]
        return Done(text="Some messages were modified meanwhile", code=f"MODIFIED {uid_set(modified)}")
    return Done(text="STORE completed")


_FLAGS = (FetchAttr("FLAGS"),)
_MODSEQ = FetchAttr("MODSEQ")
_RENDER_INLINE = 256 * 1024  # bodies below this are rendered on the loop: a thread hop costs more
_RENDER_ON_LOOP = 50  # FETCHes of more messages than this, without bytes, render off the loop


# -- FETCH -----------------------------------------------------------------------------------------


async def cmd_fetch(session: IMAPSession, command: Fetch) -> Done:
    view = session.st.view
    assert view is not None
    try:
        targets = resolve(session, command.sequence_set, command.uid)
    except _BadSet as exc:
        return bad(str(exc))
    if command.vanished and not (session.st.qresync and command.uid and command.changed_since is not None):
        return bad("VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE")
    if command.changed_since is not None or _MODSEQ in command.items:
        await session.enable_condstore()
    if command.changed_since is not None:
        targets = [(n, m) for n, m in targets if m.modseq > command.changed_since]
        if command.vanished:
            await _vanished_since(session, command)
    items = command.items
    if fetching.sets_seen(items) and not view.read_only:
        targets = await _mark_seen(session, targets)
        items = items if any(i == _FLAGS[0] for i in items) else (*items, _FLAGS[0])
    live = [(n, m) for n, m in targets if not view.is_expunged(m.uid)]
    expunged_meanwhile = len(live) < len(targets)
    needed = fetching.bytes_needed(items)
    wanted = [(m, needed(m)) for _, m in live]
    if all(need != "body" for _, need in wanted) and (
        len(wanted) > _RENDER_ON_LOOP or any(need == "header" for _, need in wanted)
    ):
        missing = await _fetch_headers(session, command, items, live, wanted)
        return await _fetch_done(session, missing, expunged_meanwhile)
    out = bytearray()
    loaded = loading.in_order(session.call, session.ctx.store, view.mailbox.mailbox_id, wanted)
    missing: list[StoredMessage] = []  # bodies not in S3: expunged meanwhile, or a bug
    async with contextlib.aclosing(loaded):
        position = 0
        async for body in loaded:
            number, message = live[position]
            position += 1
            if isinstance(body, loading.Gone):
                missing.append(message)
                continue
            if isinstance(body, loading.Unreadable):
                log.warning(
                    "IMAP FETCH of %s UID %d: body unreadable: %s", view.mailbox.name, message.uid, body.error
                )
                await session.send(bytes(out))
                return no("A message body could not be read, try again later", "UNAVAILABLE")
            render = functools.partial(
                fetching.render_fetch,
                number, view.shown(message), items, body,
                add_uid=command.uid, add_modseq=session.st.condstore, utf8=session.st.utf8,
            )  # fmt: skip
            try:
                # Decoding and parsing a message of megabytes is CPU work: off the event loop.
                out += render() if body is None or len(body) < _RENDER_INLINE else await session.call(render)
            except fetching.UnknownCTE:
                await session.send(bytes(out))  # the responses before it, as they would have gone
                return no("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE")
            if len(out) >= _SEND_AT:
                await session.send(bytes(out))
                out.clear()
    if out:
        await session.send(bytes(out))
    return await _fetch_done(session, missing, expunged_meanwhile)


async def _fetch_headers(
    session: IMAPSession,
    command: Fetch,
    items: tuple[FetchItem, ...],
    live: Targets,
    wanted: list[tuple[StoredMessage, loading.Need]],
) -> list[StoredMessage]:
    """FETCH of items that need at most the header block (a folder being opened), rendered a
    chunk at a time off the event loop (imap/header_fetch.py); returns the messages whose header
    was gone."""
    view = session.st.view
    assert view is not None
    rendering = header_fetch.Rendering(items, command.uid, session.st.condstore, session.st.utf8)
    targets = [
        (number, view.shown(message), need == "header")
        for (number, message), (_, need) in zip(live, wanted, strict=True)
    ]
    missing: list[StoredMessage] = []
    store = session.ctx.store
    rendered = header_fetch.chunks(session.call, store, view.mailbox.mailbox_id, rendering, targets)
    async with contextlib.aclosing(rendered):
        async for chunk in rendered:
            missing += chunk.missing
            if chunk.responses:
                await session.send(chunk.responses)
    return missing


async def _fetch_done(session: IMAPSession, missing: list[StoredMessage], expunged_meanwhile: bool) -> Done:
    view = session.st.view
    assert view is not None
    if missing:
        # Only a real expunge may be answered EXPUNGEISSUED: a body missing under a live index
        # item is a fault of ours.
        still_live = await session.call(
            session.ctx.store.messages_by_uid, view.mailbox, [m.uid for m in missing]
        )
        if still_live:
            log.error(
                "IMAP FETCH of %s: bodies of live UIDs %s are missing",
                view.mailbox.name,
                [m.uid for m in still_live],
            )
            return no("A message body is missing", "SERVERBUG")
        expunged_meanwhile = True
    if expunged_meanwhile:
        return no("Some of the messages were expunged", "EXPUNGEISSUED")
    return Done(text="FETCH completed")


# Responses go out in writes of about this much: one per message would cost a write and a drain
# each for a folder of 10,000.
_SEND_AT = 64 * 1024


async def _mark_seen(session: IMAPSession, targets: Targets) -> Targets:
    """Fetching a body sets \\Seen (RFC 9051 6.4.5); the FETCH response then carries the new FLAGS."""
    view = session.st.view
    assert view is not None
    unseen = [m.uid for _, m in targets if "\\Seen" not in m.flags and not view.is_expunged(m.uid)]
    if not unseen:
        return targets
    commits: list[int] = []
    change = await session.call(
        lambda: session.ctx.memory.update_flags(
            session.st.user,
            view.mailbox.name,
            unseen,
            "add",
            ["\\Seen"],
            commits=commits,
            mailbox=view.mailbox,
        )
    )
    for message in change.changed:
        view.apply_own_change(message)
    view.followed_own_commits(commits)
    return [(n, view.message(m.uid)) for n, m in targets]


async def _vanished_since(session: IMAPSession, command: Fetch) -> None:
    view = session.st.view
    assert view is not None and command.changed_since is not None
    ranges = command.sequence_set.resolve(max(view.mailbox.uidnext - 1, 1))
    gone = await session.vanished_since(view.mailbox, command.changed_since, ranges)
    if gone:
        await session.send(b"* VANISHED (EARLIER) " + uid_set(gone).encode() + b"\r\n")


# -- SEARCH ----------------------------------------------------------------------------------------


async def cmd_search(session: IMAPSession, command: Search) -> Done:
    try:
        found: Targets = await session.call(matcher(session, command.criteria, command.charset))
    except searching.BadCharset:
        return no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
    values = [m.uid if command.uid else n for n, m in found]
    options = command.return_options
    modseq = None
    if _uses_modseq(command.criteria):
        await session.enable_condstore()
        modseq = _result_modseq(found, options or ())
    if options is None and not session.st.rev2:
        line = b"* SEARCH" + b"".join(b" %d" % v for v in values)
        if modseq is not None and values:
            line += b" (MODSEQ %d)" % modseq
        await session.send(line + b"\r\n")
        return Done(text="SEARCH completed")
    if not set(options) - {"UPDATE", "CONTEXT"}:
        options += ("ALL",)  # RETURN () is ALL (RFC 4731), and so is a bare UPDATE
    if "UPDATE" in options:  # CONTEXT=SEARCH (RFC 5267): keep the client's result up to date
        await _keep_updated(session, command, [m.uid for _, m in found])
    if "SAVE" in options:
        session.st.saved_search = [m.uid for _, m in found]
        if options == ("SAVE",):
            return Done(text="SEARCH completed, result saved")
    # SEARCH results are ascending: MIN and MAX are the ends, ALL a plain set.
    await session.send(esearch(command.tag, command.uid, options, sorted(values), command.partial, modseq))
    return Done(text="SEARCH completed")


async def _keep_updated(session: IMAPSession, command: Search, uids: list[int]) -> None:
    reason = contexts.refusal(session, command.tag, command.uid, command.criteria)
    if reason is not None:
        await session.send(contexts.noupdate(command.tag, reason))
        return

    def evaluate(session: IMAPSession) -> list[int]:
        return [m.uid for _, m in matcher(session, command.criteria, command.charset)()]

    contexts.register(session, command.tag, sorted_=False, evaluate=evaluate, result=uids)


def _result_modseq(found: Targets, options: tuple[str, ...]) -> int | None:
    """The MODSEQ a SEARCH with a MODSEQ key reports (RFC 7162 3.1.5): that of the messages the
    result returns, so with only MIN and/or MAX asked, of those one or two messages."""
    if not found:
        return None
    if options and set(options) <= {"MIN", "MAX"}:
        ends = ([found[0]] if "MIN" in options else []) + ([found[-1]] if "MAX" in options else [])
        return max(m.modseq for _, m in ends)
    return max(m.modseq for _, m in found)


def _uses_modseq(key: Any) -> bool:
    if isinstance(key, ModSeqKey):
        return True
    if isinstance(key, And):
        return any(_uses_modseq(k) for k in key.keys)
    if isinstance(key, Or):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, Not):
        return _uses_modseq(key.key)
    return False
