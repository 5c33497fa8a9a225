"""Email/changes (RFC 8621 4.3) from the store's MODSEQs: what changed in each mailbox since the
state's (UIDNEXT, HIGHESTMODSEQ) there is one Query of the `by_modseq` index (changes_since), so
changes made by IMAP, by delivery and by JMAP all show. See state.py for the state string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailpipe.jmap import standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.errors import MethodError
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import MailboxMark, email_state, parse_email_state, short
from mailpipe.store import Mailbox


@dataclass(frozen=True)
class Change:
    modseq: int
    uid: int
    kind: str  # created, updated, destroyed


@dataclass
class Delta:
    old_state: str
    new_state: str
    more: bool
    created: list[MessageRef]
    updated: list[MessageRef]
    destroyed: list[MessageRef]


def mailbox_changes(context: Context, mailbox: Mailbox, mark: MailboxMark | None) -> list[Change]:
    if mark is None:  # a mailbox made since the state: everything in it is new
        # Only those below the UIDNEXT the new state records (a snapshot may be newer).
        return [
            Change(m.modseq, m.uid, "created") for m in context.messages(mailbox) if m.uid < mailbox.uidnext
        ]
    changes = []
    for state in context.changes_since(mailbox, mark.highestmodseq):
        if state.uid >= mark.uidnext:
            if not state.expunged:  # new since; one both new and gone since is no change
                changes.append(Change(state.modseq, state.uid, "created"))
        else:
            changes.append(Change(state.modseq, state.uid, "destroyed" if state.expunged else "updated"))
    return changes


def email_delta(context: Context, since: str, limit: int) -> Delta:
    marks = parse_email_state(since)
    if marks is None:
        raise MethodError("cannotCalculateChanges", "not an Email state of this server")
    mailboxes = sorted(context.mailboxes(), key=lambda m: m.mailbox_id)
    current = {short(m.mailbox_id) for m in mailboxes}
    for prefix, mark in marks.items():
        if prefix not in current and mark.uidnext > 1:
            # A mailbox deleted since, with its messages and their tombstones: which Emails went
            # is not known any more. The client syncs again (RFC 8620 5.2).
            raise MethodError("cannotCalculateChanges", "a mailbox was deleted since that state")
    reached: dict[str, MailboxMark] = {}
    created: list[MessageRef] = []
    updated: list[MessageRef] = []
    destroyed: list[MessageRef] = []
    more = False
    lists = {"created": created, "updated": updated, "destroyed": destroyed}
    for mailbox in mailboxes:
        mark = marks.get(short(mailbox.mailbox_id))
        changes = sorted(mailbox_changes(context, mailbox, mark), key=lambda c: (c.modseq, c.uid))
        room = limit - len(created) - len(updated) - len(destroyed)
        if len(changes) > room:
            changes, mark_reached = _cut(changes, room, mailbox, mark)
            more = True
            if mark_reached is not None:
                reached[mailbox.mailbox_id] = mark_reached
            for change in changes:
                lists[change.kind].append(MessageRef(mailbox.mailbox_id, change.uid))
            if not (created or updated or destroyed):
                raise MethodError("cannotCalculateChanges", "maxChanges is smaller than one commit's changes")
            # Mailboxes not reached keep the state's marks.
            for rest in mailboxes[mailboxes.index(mailbox) + 1 :]:
                rest_mark = marks.get(short(rest.mailbox_id))
                reached[rest.mailbox_id] = rest_mark or MailboxMark(1, 0)
            break
        for change in changes:
            lists[change.kind].append(MessageRef(mailbox.mailbox_id, change.uid))
    new_state = email_state(mailboxes, reached)
    return Delta(since, new_state, more, created, updated, destroyed)


def _cut(
    changes: list[Change], room: int, mailbox: Mailbox, mark: MailboxMark | None
) -> tuple[list[Change], MailboxMark | None]:
    """The first changes that fit in `room`, ending at a whole MODSEQ, and the mark they reach."""
    if room <= 0:
        return [], mark or MailboxMark(1, 0)
    cut_modseq = changes[room].modseq  # changes at this MODSEQ and after wait
    taken = [c for c in changes if c.modseq < cut_modseq]
    start = mark or MailboxMark(1, 0)
    if not taken:
        return [], start
    # Messages new since the state but not reported yet must count as new next time: the next
    # state's UIDNEXT stays at or below the lowest of them.
    pending_new = [c.uid for c in changes if c.modseq >= cut_modseq and c.uid >= start.uidnext]
    uidnext = min(pending_new) if pending_new else mailbox.uidnext
    return taken, MailboxMark(uidnext, taken[-1].modseq)


@method("Email/changes", MAIL)
def email_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    since = standard.since_state(arguments)
    delta = email_delta(context, since, standard.max_changes(context, arguments))
    return {
        "accountId": context.account_id,
        "oldState": delta.old_state,
        "newState": delta.new_state,
        "hasMoreChanges": delta.more,
        "created": [r.email_id() for r in delta.created],
        "updated": [r.email_id() for r in delta.updated],
        "destroyed": [r.email_id() for r in delta.destroyed],
    }
