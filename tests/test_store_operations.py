"""The mail store's operations for IMAP and POP3, against DynamoDB and S3 on moto."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailpipe.store import DEFAULT_MAILBOXES, MailboxExists, NoSuchMailbox, StoreError
from mailpipe.store.model import mailbox_sk, owner_pk

MESSAGE = b"From: a@remote.test\r\nSubject: stored\r\n\r\nbody line\r\n"


def test_append_and_read(store, owner) -> None:
    mailbox, uid = store.append(
        owner, "Drafts", MESSAGE, flags=["\\Draft", "$label1"], internaldate=1_700_000_000
    )
    assert uid == 1 and mailbox.name == "Drafts"
    _, [message] = store.list_messages(owner, "Drafts")
    assert message.flags == ("$label1", "\\Draft")
    assert message.internaldate == 1_700_000_000
    assert message.size == len(MESSAGE)
    assert message.summary["envelope"]["subject"] == "stored"
    assert store.read_body(message) == MESSAGE
    assert store.read_range(message, 6, 19) == MESSAGE[6:19]


def test_flags_change_with_new_modseqs(store, owner) -> None:
    for _ in range(3):
        store.append(owner, "INBOX", MESSAGE)
    before, messages = store.list_messages(owner, "INBOX")
    change = store.update_flags(owner, "INBOX", [1, 2], "add", ["\\Seen"])
    assert [m.uid for m in change.changed] == [1, 2]
    assert all(m.flags == ("\\Seen",) and m.modseq == before.highestmodseq + 1 for m in change.changed)
    # No change, no new MODSEQ.
    assert store.update_flags(owner, "INBOX", [1], "add", ["\\Seen"]).changed == []
    after = store.get_mailbox(owner, "INBOX")
    assert after.highestmodseq == before.highestmodseq + 1
    store.update_flags(owner, "INBOX", [1, 2, 3], "replace", ["\\Flagged", "NonJunk"])
    store.update_flags(owner, "INBOX", [2], "remove", ["NonJunk"])
    _, messages = store.list_messages(owner, "INBOX")
    assert [m.flags for m in messages] == [("NonJunk", "\\Flagged"), ("\\Flagged",), ("NonJunk", "\\Flagged")]


def test_unchanged_since(store, owner) -> None:
    store.append(owner, "INBOX", MESSAGE)
    store.append(owner, "INBOX", MESSAGE)
    mailbox = store.get_mailbox(owner, "INBOX")
    store.update_flags(owner, "INBOX", [2], "add", ["\\Answered"])
    change = store.update_flags(
        owner, "INBOX", [1, 2], "add", ["\\Seen"], unchanged_since=mailbox.highestmodseq
    )
    assert [m.uid for m in change.changed] == [1]
    assert change.modified == [2]


def test_expunge_leaves_tombstones_and_never_reuses_uids(stack, store, owner) -> None:
    for _ in range(3):
        store.append(owner, "INBOX", MESSAGE)
    _, messages = store.list_messages(owner, "INBOX")
    assert store.expunge(owner, "INBOX", [2, 3, 99]) == [2, 3]
    mailbox, left = store.list_messages(owner, "INBOX")
    assert [m.uid for m in left] == [1]
    _, everything = store.list_messages(owner, "INBOX", include_expunged=True)
    assert [(m.uid, m.expunged) for m in everything] == [(1, False), (2, True), (3, True)]
    assert everything[1].modseq == mailbox.highestmodseq
    with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404"):
        store.read_body(messages[1])
    _, uid = store.append(owner, "INBOX", MESSAGE)
    assert uid == 4


def test_copy_gives_new_uids_and_independent_bodies(store, owner) -> None:
    for _ in range(2):
        store.append(owner, "INBOX", MESSAGE, flags=["\\Seen"])
    store.append(owner, "Archive", MESSAGE)
    target, pairs = store.copy(owner, "INBOX", [1, 2], "Archive")
    assert pairs == [(1, 2), (2, 3)]
    assert target.uidnext == 4
    store.expunge(owner, "INBOX", [1, 2])
    _, archived = store.list_messages(owner, "Archive")
    assert [(m.uid, m.flags) for m in archived] == [(1, ()), (2, ("\\Seen",)), (3, ("\\Seen",))]
    assert all(store.read_body(m) == MESSAGE for m in archived)


def test_many_messages_change_in_chunks(store, owner) -> None:
    for _ in range(120):
        store.append(owner, "Junk", MESSAGE)
    before = store.get_mailbox(owner, "Junk")
    change = store.update_flags(owner, "Junk", range(1, 121), "add", ["$Junk"])
    assert len(change.changed) == 120
    assert {m.modseq for m in change.changed} == {before.highestmodseq + 1, before.highestmodseq + 2}
    assert len(store.expunge(owner, "Junk", range(1, 121))) == 120
    assert store.list_messages(owner, "Junk")[1] == []


def test_mailbox_create_rename_delete(store, owner) -> None:
    created = store.create_mailbox(owner, "Projects/2026")
    with pytest.raises(MailboxExists):
        store.create_mailbox(owner, "Projects/2026")
    store.append(owner, "Projects/2026", MESSAGE)
    renamed = store.rename_mailbox(owner, "Projects/2026", "Done/2026")
    assert (renamed.mailbox_id, renamed.uidvalidity) == (created.mailbox_id, created.uidvalidity)
    assert store.get_mailbox(owner, "Projects/2026") is None
    _, [message] = store.list_messages(owner, "Done/2026")
    with pytest.raises(MailboxExists):
        store.rename_mailbox(owner, "Done/2026", "Sent")
    with pytest.raises(NoSuchMailbox):
        store.rename_mailbox(owner, "Nope", "Other")
    # The subscription moved along with the rename; it outlives the mailbox (RFC 9051 6.3.7).
    assert {"Done/2026"} <= store.mailboxes_and_subscriptions(owner)[1]
    assert "Projects/2026" not in store.mailboxes_and_subscriptions(owner)[1]
    store.unsubscribe(owner, "Done/2026")
    store.unsubscribe(owner, "Done/2026")  # not subscribed: no error
    assert "Done/2026" not in store.mailboxes_and_subscriptions(owner)[1]
    store.subscribe(owner, "Done/2026")
    store.delete_mailbox(owner, "Done/2026")
    assert "Done/2026" in store.mailboxes_and_subscriptions(owner)[1]
    assert store.get_mailbox(owner, "Done/2026") is None
    with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404"):
        store.read_body(message)
    with pytest.raises(StoreError):
        store.delete_mailbox(owner, "INBOX")
    with pytest.raises(NoSuchMailbox):
        store.list_messages(owner, "Done/2026")


def test_one_user_cannot_see_another_users_mailboxes(store, owner, new_user) -> None:
    other = new_user()
    store.ensure_mailboxes(other)
    store.append(owner, "INBOX", MESSAGE)
    assert store.list_messages(other, "INBOX")[1] == []
    assert {m.mailbox_id for m in store.list_mailboxes(owner)}.isdisjoint(
        m.mailbox_id for m in store.list_mailboxes(other)
    )


def test_changes_since_a_modseq_are_new_mail_flag_changes_and_expunges(store, owner) -> None:
    for _ in range(3):
        store.append(owner, "INBOX", MESSAGE)
    seen = store.get_mailbox(owner, "INBOX")
    store.update_flags(owner, "INBOX", [2], "add", ["\\Seen"])
    store.update_flags(owner, "INBOX", [2], "add", ["\\Flagged"])  # twice: reported once, as it is now
    store.expunge(owner, "INBOX", [3])
    store.append(owner, "INBOX", MESSAGE)
    mailbox = store.get_mailbox(owner, "INBOX")
    changes = store.changes_since(mailbox, seen.highestmodseq)
    _, messages = store.list_messages(owner, "INBOX", include_expunged=True)
    now = {m.uid: m for m in messages}
    assert [(c.uid, c.flags, c.expunged) for c in changes] == [
        (2, ("\\Flagged", "\\Seen"), False),
        (3, (), True),
        (4, (), False),
    ]
    assert all(c.modseq == now[c.uid].modseq for c in changes)
    assert store.changes_since(mailbox, mailbox.highestmodseq) == []
    assert [m.uid for m in store.messages_by_uid(mailbox, [2, 3, 99])] == [2]


def test_changes_leave_mail_newer_than_the_mailbox_as_read_for_next_time(store, owner) -> None:
    store.append(owner, "INBOX", MESSAGE)
    seen = store.get_mailbox(owner, "INBOX")
    store.append(owner, "INBOX", MESSAGE)
    read = store.get_mailbox(owner, "INBOX")
    store.append(owner, "INBOX", MESSAGE)  # uid 3 commits after `read`: not yet known to be in order
    store.update_flags(owner, "INBOX", [1], "add", ["\\Seen"])  # a change after `read` is reported
    assert [(c.uid, c.flags) for c in store.changes_since(read, seen.highestmodseq)] == [
        (1, ("\\Seen",)),
        (2, ()),
    ]


def test_expunge_of_deleted_messages_spares_one_whose_flag_was_taken_off(store, owner) -> None:
    for _ in range(3):
        store.append(owner, "INBOX", MESSAGE)
    store.update_flags(owner, "INBOX", [1, 2], "add", ["\\Deleted"])
    store.update_flags(owner, "INBOX", [2], "remove", ["\\Deleted"])  # another session, meanwhile
    assert store.expunge(owner, "INBOX", [1, 2, 3], only_deleted=True) == [1]
    assert [m.uid for m in store.list_messages(owner, "INBOX")[1]] == [2, 3]


def test_a_flag_change_reports_messages_as_the_store_now_has_them(store, owner) -> None:
    for _ in range(2):
        store.append(owner, "INBOX", MESSAGE)
    change = store.update_flags(owner, "INBOX", [1, 2], "add", ["\\Seen", "$label2"])
    _, messages = store.list_messages(owner, "INBOX")
    assert change.changed == messages and change.modified == []


def test_racing_flag_changes_lose_no_update(store, owner) -> None:
    for _ in range(2):
        store.append(owner, "INBOX", MESSAGE)
    before = store.get_mailbox(owner, "INBOX")
    keywords = [f"$race{i}" for i in range(8)]
    with ThreadPoolExecutor(len(keywords)) as pool:
        changes = list(pool.map(lambda k: store.update_flags(owner, "INBOX", [1, 2], "add", [k]), keywords))
    _, messages = store.list_messages(owner, "INBOX")
    assert all(set(m.flags) == set(keywords) for m in messages)
    # Each change committed once, with a MODSEQ of its own, and reported what it left.
    mailbox = store.get_mailbox(owner, "INBOX")
    assert mailbox.highestmodseq == before.highestmodseq + len(keywords)
    assert sorted({m.modseq for change in changes for m in change.changed}) == list(
        range(before.highestmodseq + 1, mailbox.highestmodseq + 1)
    )


KEYWORDS = ("$k0", "$k1", "$k2")


def test_an_expunge_racing_flag_changes_wins_or_loses_cleanly(store, owner) -> None:
    for _ in range(3):
        store.append(owner, "INBOX", MESSAGE)
    with ThreadPoolExecutor(4) as pool:
        flag = [pool.submit(store.update_flags, owner, "INBOX", [1, 2, 3], "add", [k]) for k in KEYWORDS]
        expunged = pool.submit(store.expunge, owner, "INBOX", [2])
        for change in flag:
            change.result()  # none fails, whichever came first
    assert expunged.result() == [2]
    _, messages = store.list_messages(owner, "INBOX")
    assert [m.uid for m in messages] == [1, 3]
    assert all(set(m.flags) == set(KEYWORDS) for m in messages)


def test_a_user_without_mailboxes_gets_them_at_login(store, new_user) -> None:
    owner = new_user()  # in the directory only, as if its mailboxes had never been made
    assert store.list_mailboxes(owner) == []
    assert not store.inbox_ensured(owner)
    store.ensure_inbox(owner)
    assert store.inbox_ensured(owner)  # what lets IMAP's LOGIN skip the call on its event loop
    store.ensure_inbox(owner)  # remembered: no second look
    assert {m.name for m in store.list_mailboxes(owner)} == set(DEFAULT_MAILBOXES)


def test_a_write_to_a_mailbox_replaced_under_its_name_touches_neither(stack, store, owner) -> None:
    store.create_mailbox(owner, "Foo")
    store.append(owner, "Foo", MESSAGE)
    seen = store.get_mailbox(owner, "Foo")  # a session's picture of the mailbox
    other = stack.mail_store()  # another gateway process
    other.rename_mailbox(owner, "Foo", "Bar")
    other.create_mailbox(owner, "Foo")
    other.append(owner, "Foo", MESSAGE)
    with pytest.raises(NoSuchMailbox):
        store.update_flags(owner, "Foo", [1], "add", ["\\Deleted"], mailbox=seen)
    with pytest.raises(NoSuchMailbox):
        store.expunge(owner, "Foo", [1], mailbox=seen)
    _, [new] = store.list_messages(owner, "Foo")
    _, [moved] = store.list_messages(owner, "Bar")
    assert new.flags == () and moved.flags == ()
    assert store.read_body(moved) == MESSAGE


def test_racing_flag_changes_from_two_processes_stay_serialisable(stack, store, owner) -> None:
    """One process adds \\Seen to 1:2 while another removes it: whichever goes last, both
    messages end alike; a writer must not keep a "nothing to do" it decided before the other
    writer's change."""
    other = stack.mail_store()
    for _ in range(2):
        store.append(owner, "INBOX", MESSAGE)
    for _ in range(25):
        store.update_flags(owner, "INBOX", [1], "remove", ["\\Seen"])
        store.update_flags(owner, "INBOX", [2], "add", ["\\Seen"])
        with ThreadPoolExecutor(2) as pool:
            adding = pool.submit(store.update_flags, owner, "INBOX", [1, 2], "add", ["\\Seen"])
            removing = pool.submit(other.update_flags, owner, "INBOX", [1, 2], "remove", ["\\Seen"])
            adding.result(), removing.result()
        _, messages = store.list_messages(owner, "INBOX")
        assert messages[0].flags == messages[1].flags, [m.flags for m in messages]


def test_a_rename_racing_appends_loses_none_of_them(stack, store, owner) -> None:
    store.create_mailbox(owner, "Moving")
    other = stack.mail_store()
    appended: list[int] = []

    def append_until_renamed() -> None:
        with contextlib.suppress(NoSuchMailbox):
            while True:
                appended.append(other.append(owner, "Moving", MESSAGE)[1])

    with ThreadPoolExecutor(1) as pool:
        appending = pool.submit(append_until_renamed)
        while len(appended) < 3:
            time.sleep(0.01)
        store.rename_mailbox(owner, "Moving", "Moved")
        appending.result()
    mailbox, messages = store.list_messages(owner, "Moved")
    assert [m.uid for m in messages] == appended == list(range(1, len(appended) + 1))
    assert mailbox.uidnext == len(appended) + 1
    assert store.append(owner, "Moved", MESSAGE)[1] == len(appended) + 1


def test_subscriptions_kept_on_mailbox_items_before_subscription_items_still_count(store, owner) -> None:
    """Mailbox items made before subscriptions became items carry `subscribed`: still honoured,
    taken off by UNSUBSCRIBE, and turned into an item when the mailbox is deleted."""
    table = store._table
    for name in ("Old/one", "Old/two"):
        store.create_mailbox(owner, name)
        store.unsubscribe(owner, name)
        table.update_item(
            Key={"pk": owner_pk(owner), "sk": mailbox_sk(name)},
            UpdateExpression="SET subscribed = :t",
            ExpressionAttributeValues={":t": True},
        )
    assert {"Old/one", "Old/two"} <= store.mailboxes_and_subscriptions(owner)[1]
    store.unsubscribe(owner, "Old/one")
    store.delete_mailbox(owner, "Old/two")
    subscribed = store.mailboxes_and_subscriptions(owner)[1]
    assert "Old/one" not in subscribed and "Old/two" in subscribed
