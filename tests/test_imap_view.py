"""The per-session mailbox view: numbering, updates from the store's changes, and its own writes."""

from __future__ import annotations

from dataclasses import replace

from mailpipe.store import Mailbox, MessageState, StoredMessage
from mailpipe_gateway.imap.view import MailboxView

MAILBOX = Mailbox("u@x.test", "INBOX", "id", uidvalidity=1, uidnext=4, highestmodseq=10)


def message(uid: int, modseq: int = 5, flags: tuple[str, ...] = ()) -> StoredMessage:
    return StoredMessage(uid, modseq, flags, 0, 10, f"k{uid}", f"d{uid}")


def view() -> MailboxView:
    return MailboxView(MAILBOX, [message(1), message(2), message(3)], read_only=False)


def test_refresh_announces_expunges_new_mail_and_flag_changes() -> None:
    v = view()
    fresh = replace(MAILBOX, uidnext=6, highestmodseq=13)
    changes = [
        MessageState(1, 12, ("\\Seen",)),
        MessageState(2, 11, (), expunged=True),
        MessageState(5, 13, ()),
    ]
    updates = v.refresh(fresh, changes, {5: message(5, 13)}, may_expunge=True)
    assert updates.expunged == [2] and updates.exists == 3
    assert [(m.uid, m.flags, m.modseq) for m in updates.changed] == [(1, ("\\Seen",), 12)]
    assert v.uids == [1, 3, 5] and v.number_of(5) == 3 and v.mailbox == fresh


def test_expunges_wait_while_numbers_must_not_move() -> None:
    v = view()
    gone = [MessageState(2, 11, (), expunged=True)]
    updates = v.refresh(replace(MAILBOX, highestmodseq=11), gone, {}, may_expunge=False)
    assert updates.expunged == [] and v.exists == 3 and v.is_expunged(2)
    later = v.refresh(replace(MAILBOX, highestmodseq=11), [], {}, may_expunge=True)
    assert later.expunged == [2] and v.exists == 2


def test_qresync_hears_vanished_uids_instead_of_expunges() -> None:
    v = view()
    gone = [MessageState(1, 11, (), expunged=True), MessageState(3, 11, (), expunged=True)]
    updates = v.refresh(replace(MAILBOX, highestmodseq=11), gone, {}, may_expunge=True, qresync=True)
    assert updates.vanished == [1, 3] and updates.expunged == [] and v.uids == [2]


def test_new_mail_expunged_before_it_was_seen_is_never_announced() -> None:
    v = view()
    fresh = replace(MAILBOX, uidnext=6, highestmodseq=12)
    changes = [MessageState(4, 12, (), expunged=True), MessageState(5, 11, ())]
    updates = v.refresh(fresh, changes, {5: message(5, 11)}, may_expunge=True)
    assert v.uids == [1, 2, 3, 5] and updates.exists == 4 and updates.expunged == []


def test_unchanged_messages_are_not_announced_again() -> None:
    v = view()
    updates = v.refresh(replace(MAILBOX, highestmodseq=11), [MessageState(2, 5, ())], {}, may_expunge=True)
    assert updates.changed == [] and updates.exists is None


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


def test_an_own_append_joins_the_view_only_if_nothing_came_between() -> None:
    v = view()
    assert v.followed_own_append(message(4, 11), started_from=10)
    assert v.uids == [1, 2, 3, 4] and (v.mailbox.uidnext, v.mailbox.highestmodseq) == (5, 11)
    # Someone else's commit (11 -> 12) came first: the store must be asked, not guessed.
    assert not v.followed_own_append(message(6, 13), started_from=12)
    assert v.uids == [1, 2, 3, 4] and v.mailbox.highestmodseq == 11


class Counted(int):
    """An int that counts the comparisons made with it, to measure work without a clock."""

    comparisons = 0

    def _count(self, other: object, op: str) -> bool:
        Counted.comparisons += 1
        return getattr(int(self), op)(other)

    def __lt__(self, other: object) -> bool:
        return self._count(other, "__lt__")

    def __le__(self, other: object) -> bool:
        return self._count(other, "__le__")

    def __gt__(self, other: object) -> bool:
        return self._count(other, "__gt__")

    def __ge__(self, other: object) -> bool:
        return self._count(other, "__ge__")


def test_a_long_sequence_set_costs_no_work_per_message_and_range() -> None:
    # 13,000 ranges fit in a 64 KiB command line; against 20,000 messages a test of each message
    # against each range was 260 million comparisons on the event loop. A tenth of each here.
    messages = [message(uid) for uid in range(1, 2_001)]
    many = MailboxView(MAILBOX, messages, read_only=False)
    ranges = [(Counted(n), Counted(n)) for n in range(1, 2_600, 2)]
    Counted.comparisons = 0
    found = many.by_uids(ranges)
    assert [m.uid for _, m in found] == list(range(1, 2_001, 2))
    found_numbers = many.by_numbers(ranges)
    assert [n for n, _ in found_numbers] == list(range(1, 2_001, 2))
    assert Counted.comparisons <= 40 * (len(ranges) + len(messages))
