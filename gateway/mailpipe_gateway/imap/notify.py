"""NOTIFY (RFC 5465): telling a session of changes to mailboxes it has not selected, unasked.

What a session is told comes from the process's memory (store/memory.py), which the change feed
keeps current: each delivery compares the user's mailbox items and subscriptions as memory holds
them now with what the session last heard, so it costs no request while memory is trusted (the
STATUS of a changed mailbox is counted from its snapshot, read once per change for the whole
process). Deliveries happen when a command ends, during IDLE, and between commands, when the
wake-ups (wakeups.py) say the user's mailboxes changed: no timer of its own.

What a change was is told from the counters: a UIDNEXT that moved is MessageNew, a HIGHESTMODSEQ
that moved alone is MessageExpunge or FlagChange (both answered with the same STATUS). A mailbox
id under a new name is a rename (LIST with OLDNAME), a new id a creation, a missing id a deletion
(LIST with \\NonExistent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailpipe.store import Mailbox, NoSuchMailbox
from mailpipe_gateway.imap import serializer
from mailpipe_gateway.imap.commands import Fetch, FetchItem, Notify, NotifyGroup, SequenceSet
from mailpipe_gateway.imap.fetch import sets_seen
from mailpipe_gateway.imap.state import DELIMITER, Done, SessionEnded, State, bad, no

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

log = logging.getLogger(__name__)

MESSAGE_EVENTS = ("MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE")
MAILBOX_EVENTS = ("MAILBOXNAME", "SUBSCRIPTIONCHANGE")
SUPPORTED = frozenset(MESSAGE_EVENTS + MAILBOX_EVENTS)
_SPELLED = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"
SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
# The notifications one delivery may hold: more (a user with thousands of mailboxes all changed
# while the session was busy) is NOTIFICATIONOVERFLOW, and NOTIFY is off (RFC 5465 5.8).
MAX_PENDING = 1000


@dataclass
class Notifications:
    """One session's NOTIFY: what it asked for, and the mailboxes as it last heard of them."""

    groups: tuple[NotifyGroup, ...]
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)  # by mailbox id
    subscribed: set[str] = field(default_factory=set)
    selected_id: str | None = None  # the selected mailbox whose new messages are FETCHed
    fetched_below: int = 0  # ... up to this UID already

    @property
    def selected(self) -> NotifyGroup | None:
        return next((g for g in self.groups if g.filter in SELECTED_FILTERS), None)

    def events_for(self, name: str, subscribed: set[str]) -> tuple[str, ...]:
        """The events asked for a mailbox other than the selected one: the first group whose
        filter takes it decides."""
        for group in self.groups:
            if group.filter in SELECTED_FILTERS:
                continue
            if _matches(group, name, subscribed):
                return group.events
        return ()


def _matches(group: NotifyGroup, name: str, subscribed: set[str]) -> bool:
    kind = group.filter
    if kind == "PERSONAL":
        return True
    if kind == "INBOXES":
        return name == "INBOX"  # the only mailbox mail is delivered to
    if kind == "SUBSCRIBED":
        return name in subscribed
    if kind == "MAILBOXES":
        return name in group.mailboxes
    if kind == "SUBTREE":
        return any(name == top or name.startswith(top + DELIMITER) for top in group.mailboxes)
    return False


def _check(groups: tuple[NotifyGroup, ...]) -> Done | None:
    """The answer to a NOTIFY SET that cannot be honoured (RFC 5465 5, 6), or None."""
    unknown = {e for g in groups for e in g.events} - SUPPORTED
    if unknown:
        return no(f"Unsupported events: {' '.join(sorted(unknown))}", f"BADEVENT ({_SPELLED})")
    if sum(g.filter in SELECTED_FILTERS for g in groups) > 1:
        return bad("At most one of SELECTED and SELECTED-DELAYED")
    for group in groups:
        events = set(group.events)
        if ("MESSAGENEW" in events) != ("MESSAGEEXPUNGE" in events):
            return bad("MessageNew and MessageExpunge go together")
        if "FLAGCHANGE" in events and "MESSAGENEW" not in events:
            return bad("FlagChange needs MessageNew and MessageExpunge")
        if group.fetch and group.filter not in SELECTED_FILTERS:
            return bad("MessageNew's fetch attributes are for the selected mailbox only")
        if group.filter in SELECTED_FILTERS and events & set(MAILBOX_EVENTS):
            return bad("The selected mailbox takes message events only")
        if sets_seen(group.fetch):
            return bad("MessageNew may not set \\Seen: use BODY.PEEK")
    return None


async def cmd_notify(session: IMAPSession, command: Notify) -> Done:
    if command.groups is None:
        session.notify = None
        return Done(text="NOTIFY completed")
    refused = _check(command.groups)
    if refused is not None:
        log.info("IMAP NOTIFY from %s refused: %s", session.peer, refused.text)
        return refused
    notifications = Notifications(command.groups)
    assert session.st.user is not None
    mailboxes, subscribed = await session.call(
        session.ctx.memory.items.list_with_subscriptions, session.st.user
    )
    notifications.mailboxes = {m.mailbox_id: m for m in mailboxes}
    notifications.subscribed = subscribed
    if session.st.view is not None:  # new messages from here on are FETCHed
        notifications.selected_id = session.st.view.mailbox.mailbox_id
        notifications.fetched_below = session.st.view.mailbox.uidnext
    session.notify = notifications
    if command.status:  # the starting point of every mailbox watched for message events
        selected = session.st.view.mailbox.mailbox_id if session.st.view is not None else None
        for mailbox in sorted(mailboxes, key=lambda m: m.name):
            events = notifications.events_for(mailbox.name, subscribed)
            if mailbox.mailbox_id != selected and set(events) & set(MESSAGE_EVENTS):
                try:
                    await session.send(await _status(session, mailbox.name))
                except NoSuchMailbox:
                    continue  # deleted meanwhile: its LIST comes with the next delivery
    return Done(text="NOTIFY completed")


async def deliver(session: IMAPSession, *, between_commands: bool = False) -> None:
    """Send what changed since the session last heard. `between_commands`: no command is running,
    so the selected mailbox's news (EXISTS, EXPUNGE unless SELECTED-DELAYED) goes out too."""
    notifications = session.notify
    if notifications is None or session.st.user is None or session.st.state is State.LOGOUT:
        return  # (after LOGOUT's BYE, nothing more)
    selected = notifications.selected
    if between_commands and selected is not None and session.st.state is State.SELECTED:
        await session.refresh(may_expunge=selected.filter == "SELECTED")
    try:
        if selected is not None and "MESSAGENEW" in selected.events and selected.fetch:
            await _fetch_new(session, notifications, selected.fetch)
        mailboxes, subscribed = await session.call(
            session.ctx.memory.items.list_with_subscriptions, session.st.user
        )
    except SessionEnded:
        raise
    except Exception:  # the store failed: told at the next delivery, the session goes on
        log.warning("IMAP NOTIFY for %s: store unreadable, told later", session.st.user, exc_info=True)
        return
    before, now = notifications.mailboxes, {m.mailbox_id: m for m in mailboxes}
    if now == before and subscribed == notifications.subscribed:
        return
    lines, statuses = _changes(session, notifications, before, now, subscribed)
    notifications.mailboxes, notifications.subscribed = now, subscribed
    if len(lines) + len(statuses) > MAX_PENDING:
        log.info("IMAP NOTIFY for %s from %s overflowed", session.st.user, session.peer)
        session.notify = None
        await session.send(b"* OK [NOTIFICATIONOVERFLOW] Too many changes: NOTIFY is off\r\n")
        return
    out = list(lines)
    for name in statuses:
        try:
            out.append(await _status(session, name))
        except NoSuchMailbox:
            continue  # deleted meanwhile: its LIST (\NonExistent) comes at the next delivery
        except SessionEnded:
            raise
        except Exception:
            log.warning("IMAP NOTIFY STATUS of %s for %s failed", name, session.st.user, exc_info=True)
    if out:
        await session.send(b"".join(out))


def _changes(
    session: IMAPSession,
    notifications: Notifications,
    before: dict[str, Mailbox],
    now: dict[str, Mailbox],
    subscribed: set[str],
) -> tuple[list[bytes], list[str]]:
    """The LIST lines to send, and the names of the mailboxes whose STATUS to send."""
    old_subscribed = notifications.subscribed
    selected = session.st.view.mailbox.mailbox_id if session.st.view is not None else None
    utf8 = session.st.utf8
    lines: list[bytes] = []
    statuses: list[str] = []

    def wants(name: str, event: str) -> bool:
        return event in notifications.events_for(name, subscribed | old_subscribed)

    told: set[str] = set()  # names whose LIST went out already, with \Subscribed if they are

    def named(name: str, extra: bytes = b"") -> bytes:
        told.add(name)
        return _list_line(("\\Subscribed",) if name in subscribed else (), name, utf8, extra)

    for mailbox_id, old in before.items():  # first: a name deleted and made again ends existing
        if mailbox_id not in now and wants(old.name, "MAILBOXNAME"):
            lines.append(_list_line(("\\NonExistent",), old.name, utf8))
    for mailbox_id, mailbox in now.items():
        old = before.get(mailbox_id)
        name = mailbox.name
        if old is None:
            if wants(name, "MAILBOXNAME"):
                lines.append(named(name))
            continue
        if old.name != name:
            if wants(name, "MAILBOXNAME") or wants(old.name, "MAILBOXNAME"):
                told.add(old.name)  # its subscription went along with it
                lines.append(named(name, b' ("OLDNAME" (' + serializer.mailbox(old.name, utf8=utf8) + b"))"))
            continue
        if mailbox_id == selected:
            continue  # the selected mailbox hears EXISTS, EXPUNGE and FETCH instead
        if (mailbox.uidnext, mailbox.highestmodseq) == (old.uidnext, old.highestmodseq):
            continue  # unchanged: no filter to match (most of a user's mailboxes, most times)
        events = notifications.events_for(name, subscribed)
        new = mailbox.uidnext > old.uidnext and "MESSAGENEW" in events
        other = mailbox.highestmodseq > old.highestmodseq and (
            "MESSAGEEXPUNGE" in events or "FLAGCHANGE" in events
        )
        if new or other:
            statuses.append(name)
    names = {m.name for m in now.values()}
    for name in sorted((subscribed ^ old_subscribed) - told):
        if wants(name, "SUBSCRIPTIONCHANGE"):
            attributes = ("\\Subscribed",) if name in subscribed else ()
            if name not in names:
                attributes = ("\\NonExistent", *attributes)
            lines.append(_list_line(attributes, name, utf8))
    return lines, statuses


def _list_line(attributes: tuple[str, ...], name: str, utf8: bool, extra: bytes = b"") -> bytes:
    return (
        f'* LIST ({" ".join(attributes)}) "/" '.encode()
        + serializer.mailbox(name, utf8=utf8)
        + extra
        + b"\r\n"
    )


async def _status(session: IMAPSession, name: str) -> bytes:
    from mailpipe_gateway.imap.mailbox_commands import status_line  # imports the session's modules

    items = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
    if session.st.condstore:
        items += ("HIGHESTMODSEQ",)
    return await status_line(session, name, items)


async def _fetch_new(
    session: IMAPSession, notifications: Notifications, items: tuple[FetchItem, ...]
) -> None:
    """MessageNew's fetch attributes for the messages new in the selected mailbox since last time."""
    from mailpipe_gateway.imap.message_commands import cmd_fetch  # imports the session's modules

    view = session.st.view
    if view is None:
        notifications.selected_id = None
        return
    if notifications.selected_id != view.mailbox.mailbox_id:  # just selected: SELECT told it all
        notifications.selected_id = view.mailbox.mailbox_id
        notifications.fetched_below = view.mailbox.uidnext
        return
    if view.mailbox.uidnext <= notifications.fetched_below:
        return
    uids = [uid for uid in view.uids if uid >= notifications.fetched_below]
    notifications.fetched_below = view.mailbox.uidnext
    if not uids:
        return
    fetch = Fetch(
        tag="*", name="FETCH", uid=True, sequence_set=SequenceSet(((uids[0], uids[-1]),)), items=items
    )
    done = await cmd_fetch(session, fetch)
    if done.status != "OK":
        log.info("IMAP NOTIFY FETCH of new messages for %s: %s", session.st.user, done.text)
