"""A process's mailbox snapshots agree with the store, however they were brought up to date."""

from __future__ import annotations

import threading

from mailpipe.store import MailboxSnapshots

MESSAGE = b"From: a@remote.test\r\nSubject: cached\r\n\r\nbody line\r\n"


def listing(messages) -> list[tuple]:
    return [(m.uid, m.modseq, m.flags, m.size, m.blob_key) for m in messages]


def assert_agrees(snapshots: MailboxSnapshots, store, owner: str, name: str = "INBOX") -> None:
    cached_mailbox, cached = snapshots.list_messages(owner, name)
    mailbox, messages = store.list_messages(owner, name)
    assert cached_mailbox == mailbox
    assert listing(cached) == listing(messages)


def test_a_snapshot_follows_changes_made_elsewhere(store, owner) -> None:
    snapshots = MailboxSnapshots(store)
    for _ in range(4):
        store.append(owner, "INBOX", MESSAGE)
    assert_agrees(snapshots, store, owner)  # first read: the whole mailbox
    store.update_flags(owner, "INBOX", [1, 3], "add", ["\\Seen", "$label1"])
    store.expunge(owner, "INBOX", [2])
    store.append(owner, "INBOX", MESSAGE, flags=["\\Flagged"])
    assert_agrees(snapshots, store, owner)  # then only what changed
    store.expunge(owner, "INBOX", [5])
    store.update_flags(owner, "INBOX", [3], "remove", ["\\Seen"])
    assert_agrees(snapshots, store, owner)


def test_changes_from_memory_equal_the_stores_for_every_starting_modseq(store, owner) -> None:
    snapshots = MailboxSnapshots(store)
    store.append(owner, "INBOX", MESSAGE)
    snapshots.list_messages(owner, "INBOX")
    start = store.get_mailbox(owner, "INBOX").highestmodseq
    steps = [
        lambda: store.append(owner, "INBOX", MESSAGE),
        lambda: store.update_flags(owner, "INBOX", [1], "add", ["\\Seen"]),
        lambda: store.append(owner, "INBOX", MESSAGE),
        lambda: store.expunge(owner, "INBOX", [2]),
        lambda: store.update_flags(owner, "INBOX", [1, 3], "add", ["\\Answered"]),
    ]
    for step in steps:
        step()
        snapshots.list_messages(owner, "INBOX")  # a batch of changes per step into the log
    mailbox = store.get_mailbox(owner, "INBOX")
    for since in range(start, mailbox.highestmodseq + 1):
        cached = snapshots.changes(mailbox, since)
        read = store.changes_since(mailbox, since)
        assert [(s.uid, s.flags, s.expunged) for s in cached.states] == [
            (s.uid, s.flags, s.expunged) for s in read
        ], since
        assert [(s.uid, s.modseq) for s in cached.states if not s.expunged] == [
            (s.uid, s.modseq) for s in read if not s.expunged
        ]
        assert sorted(cached.messages) == [s.uid for s in read if not s.expunged]


def test_a_session_further_behind_than_the_log_is_answered_by_the_store(store, owner) -> None:
    store.append(owner, "INBOX", MESSAGE)
    before = store.get_mailbox(owner, "INBOX")
    store.update_flags(owner, "INBOX", [1], "add", ["\\Seen"])
    snapshots = MailboxSnapshots(store)  # its first read is after the change: no log reaches `before`
    snapshots.list_messages(owner, "INBOX")
    mailbox = store.get_mailbox(owner, "INBOX")
    changes = snapshots.changes(mailbox, before.highestmodseq)
    assert [(s.uid, s.flags) for s in changes.states] == [(1, ("\\Seen",))]


def test_a_renamed_mailbox_is_listed_under_its_new_name(store, owner) -> None:
    snapshots = MailboxSnapshots(store)
    store.create_mailbox(owner, "Old")
    store.append(owner, "Old", MESSAGE)
    snapshots.list_messages(owner, "Old")
    store.rename_mailbox(owner, "Old", "New")
    mailbox, messages = snapshots.list_messages(owner, "New")
    assert mailbox.name == "New" and [m.uid for m in messages] == [1]


def test_least_recently_used_mailboxes_make_room(store, owner) -> None:
    snapshots = MailboxSnapshots(store, max_messages=3)
    for name in ("Archive", "Junk"):
        for _ in range(2):
            store.append(owner, name, MESSAGE)
    snapshots.list_messages(owner, "Archive")
    snapshots.list_messages(owner, "Junk")  # 4 messages: Archive goes
    store.append(owner, "Archive", MESSAGE)
    assert_agrees(snapshots, store, owner, "Archive")  # read whole again, and right
    assert_agrees(snapshots, store, owner, "Junk")


def test_concurrent_readers_see_consistent_listings_while_mail_arrives(store, owner) -> None:
    snapshots = MailboxSnapshots(store)
    seen: list[tuple] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                mailbox, messages = snapshots.list_messages(owner, "INBOX")
                seen.append((mailbox.uidnext, [m.uid for m in messages]))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(12):
            store.append(owner, "INBOX", MESSAGE)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    assert not failures
    assert seen
    for uidnext, uids in seen:
        # Every UID below the UIDNEXT of the listing, in order, none missing (nothing was expunged).
        assert uids == list(range(1, uidnext))
    assert_agrees(snapshots, store, owner)


def test_a_held_listing_is_given_only_when_no_read_is_needed(store, owner) -> None:
    """held_listing (SELECT's listing on the event loop): what list_messages gives, from a snapshot
    at least as new as the mailbox item given; None when the snapshot is missing or behind."""
    snapshots = MailboxSnapshots(store)
    store.append(owner, "INBOX", MESSAGE)
    mailbox = store.get_mailbox(owner, "INBOX")
    assert snapshots.held_listing(mailbox) is None  # nothing held yet
    listed = snapshots.list_messages(owner, "INBOX")
    held = snapshots.held_listing(mailbox)
    assert held is not None and held[0] == listed[0] and listing(held[1]) == listing(listed[1])
    store.append(owner, "INBOX", MESSAGE)
    assert snapshots.held_listing(store.get_mailbox(owner, "INBOX")) is None  # behind the item
    assert_agrees(snapshots, store, owner)
    held = snapshots.held_listing(store.get_mailbox(owner, "INBOX"))
    assert held is not None and [m.uid for m in held[1]] == [1, 2]
