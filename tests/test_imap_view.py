"""The per-session mailbox view: numbering, updates from fresh listings, and its own writes."""

from __future__ import annotations

from dataclasses import replace

from mailpipe.store import Mailbox, StoredMessage
from mailpipe_gateway.imap.view import MailboxView

MAILBOX = Mailbox("u@x.test", "INBOX", "id", uidvalidity=1, uidnext=4, highestmodseq=10)


def message(uid: int, modseq: int = 5, flags: tuple[str, ...] = ()) -> StoredMessage:
    return StoredMessage(uid, modseq, flags, 0, 10, f"k{uid}", f"d{uid}")


def view() -> MailboxView:
    return MailboxView(MAILBOX, [message(1), message(2), message(3)], read_only=False)


def test_refresh_announces_expunges_new_mail_and_flag_changes() -> None:
    v = view()
    fresh = replace(MAILBOX, uidnext=6, highestmodseq=13)
    updates = v.refresh(fresh, [message(1, 12, ("\\Seen",)), message(3), message(5, 13)], may_expunge=True)
    assert updates.expunged == [2] and updates.exists == 3
    assert [m.uid for m in updates.changed] == [1]
    assert v.uids == [1, 3, 5] and v.number_of(5) == 3


def test_expunges_wait_while_numbers_must_not_move() -> None:
    v = view()
    updates = v.refresh(replace(MAILBOX, highestmodseq=11), [message(1), message(3)], may_expunge=False)
    assert updates.expunged == [] and v.exists == 3 and v.is_expunged(2)
    later = v.refresh(replace(MAILBOX, highestmodseq=11), [message(1), message(3)], may_expunge=True)
    assert later.expunged == [2] and v.exists == 2


def test_own_commits_bring_the_view_up_to_date_only_without_gaps() -> None:
    v = view()
    v.followed_own_commits([10, 11])
    assert v.mailbox.highestmodseq == 12  # two commits of ours, nothing in between
    v.followed_own_commits([13])  # someone else committed 12 -> 13 meanwhile: the view must relist
    assert v.mailbox.highestmodseq == 12
    v.followed_own_commits([12, 14])  # a gap between our own commits: someone else's change
    assert v.mailbox.highestmodseq == 12
    v.followed_own_commits([])
    assert v.mailbox.highestmodseq == 12
