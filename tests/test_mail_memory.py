"""A process's memory of the store (MailMemory) agrees with the store, and while the change feed is
healthy answers from memory without a request; without the feed it reads the store as before.

The notices here are those the relay publishes for each change (the mailbox item's new image, or
its old one when removed), built from the store; tests/test_imap_memory.py runs the whole feed.
"""

from __future__ import annotations

from collections import Counter

from mailpipe.changes.notice import MailboxNotice
from mailpipe.store import MailboxItems, MailMemory
from mailpipe.store.mailbox_items import REVALIDATE_SECONDS

MESSAGE = b"From: a@remote.test\r\nSubject: remembered\r\n\r\nbody line\r\n"


def store_requests(stack) -> Counter[str]:
    """The store's requests so far (DynamoDB and S3): not the feeds' and pollers' SQS and streams."""
    counts = stack.moto.requests.counts()
    return Counter({k: v for k, v in counts.items() if k.split(":")[0] in ("dynamodb", "s3")})


def notice(store, owner: str, name: str) -> MailboxNotice:
    """The notice the relay makes of the mailbox's item as it is now (changes/relay.py)."""
    m = store.get_mailbox(owner, name)
    return MailboxNotice(
        owner,
        name,
        m.mailbox_id,
        m.uidnext,
        m.highestmodseq,
        False,
        m.recent_from,
        m.size_total,
        m.message_total,
    )


def removed(mailbox) -> MailboxNotice:
    return MailboxNotice(
        mailbox.owner, mailbox.name, mailbox.mailbox_id, mailbox.uidnext, mailbox.highestmodseq, True
    )


def listing(messages) -> list[tuple]:
    return [(m.uid, m.modseq, m.flags, m.blob_key) for m in messages]


def assert_agrees(memory: MailMemory, store, owner: str, name: str = "INBOX") -> None:
    assert sorted(memory.items.list(owner), key=lambda m: m.name) == sorted(
        store.list_mailboxes(owner), key=lambda m: m.name
    )
    cached_mailbox, cached = memory.snapshots.list_messages(owner, name)
    mailbox, messages = store.list_messages(owner, name)
    assert cached_mailbox == mailbox
    assert listing(cached) == listing(messages)


def test_trusted_memory_answers_reads_without_requests(stack, store, owner) -> None:
    memory = MailMemory(store)
    memory.set_trusted(True)
    store.append(owner, "INBOX", MESSAGE)
    assert_agrees(memory, store, owner)  # the first reads load the user's items and the snapshot
    before = store_requests(stack)
    for _ in range(3):
        assert memory.items.get(owner, "INBOX") is not None
        assert memory.items.get(owner, "Nothing") is None
        assert {m.name for m in memory.items.list(owner)} >= {"INBOX", "Sent", "Trash"}
        memory.snapshots.list_messages(owner, "INBOX")
    assert store_requests(stack) == before


def test_untrusted_memory_reads_the_store_every_time(stack, store, owner) -> None:
    memory = MailMemory(store)  # no feed: as before the feed existed
    memory.items.get(owner, "INBOX")
    before = store_requests(stack)
    memory.items.get(owner, "INBOX")
    memory.items.list(owner)
    after = store_requests(stack) - before
    assert after["dynamodb:GetItem"] == 1 and after["dynamodb:Query"] == 1


def test_notices_bring_memory_forward_with_one_read_per_change(stack, store, owner) -> None:
    memory = MailMemory(store)
    memory.set_trusted(True)
    for _ in range(3):
        store.append(owner, "INBOX", MESSAGE)
    assert_agrees(memory, store, owner)
    # Another process changes the mailbox; its notices arrive.
    store.update_flags(owner, "INBOX", [1], "add", ["\\Seen"])
    store.expunge(owner, "INBOX", [2])
    store.append(owner, "INBOX", MESSAGE)
    memory.apply([notice(store, owner, "INBOX")])
    before = store_requests(stack)
    _, messages = memory.snapshots.list_messages(owner, "INBOX")
    read = store_requests(stack) - before
    assert read["dynamodb:GetItem"] == 0  # the counters came with the notice
    assert read["dynamodb:Query"] == 1  # what changed since the snapshot
    assert [m.uid for m in messages] == [1, 3, 4]
    assert messages[0].flags == ("\\Seen",)
    assert_agrees(memory, store, owner)


def test_mailboxes_made_changed_and_removed_elsewhere_are_seen(store, owner) -> None:
    memory = MailMemory(store)
    memory.set_trusted(True)
    assert_agrees(memory, store, owner)
    created = store.create_mailbox(owner, "Projects")
    memory.apply([notice(store, owner, "Projects")])
    assert memory.items.get(owner, "Projects") == created
    assert "Projects" in memory.items.list_with_subscriptions(owner)[1]  # CREATE subscribes
    store.unsubscribe(owner, "Projects")  # a subscription item: its notice has no mailbox id
    memory.apply([MailboxNotice(owner, "Projects", "", 0, 0, True)])
    assert "Projects" not in memory.items.list_with_subscriptions(owner)[1]
    renamed = store.rename_mailbox(owner, "Projects", "Done")
    memory.apply([removed(created), notice(store, owner, "Done")])
    assert memory.items.get(owner, "Projects") is None
    assert memory.items.get(owner, "Done") == renamed
    store.delete_mailbox(owner, "Done")
    memory.apply([removed(renamed)])
    assert memory.items.get(owner, "Done") is None
    assert_agrees(memory, store, owner)


def test_own_writes_are_read_back_from_memory_and_their_notices_cost_nothing(stack, store, owner) -> None:
    memory = MailMemory(store)
    memory.set_trusted(True)
    store.append(owner, "INBOX", MESSAGE)
    assert_agrees(memory, store, owner)
    inbox = memory.items.get(owner, "INBOX")
    appended = memory.append_message(owner, "INBOX", MESSAGE)
    commits: list[int] = []
    inbox = memory.items.get(owner, "INBOX")
    memory.update_flags(owner, "INBOX", [1, 2], "add", ["\\Flagged"], commits=commits, mailbox=inbox)
    assert commits  # the caller still learns its commits
    inbox = memory.items.get(owner, "INBOX")
    memory.update_flags(owner, "INBOX", [1], "add", ["\\Deleted"], mailbox=inbox)
    inbox = memory.items.get(owner, "INBOX")
    assert memory.expunge(owner, "INBOX", [1], only_deleted=True, mailbox=inbox) == [1]
    before = store_requests(stack)
    _, messages = memory.snapshots.list_messages(owner, "INBOX")
    assert store_requests(stack) == before  # read your writes, from memory
    assert [(m.uid, m.flags) for m in messages] == [(appended.message.uid, ("\\Flagged",))]
    assert_agrees(memory, store, owner)
    # The writes' notices come back: nothing new in them, nothing to read.
    memory.apply([notice(store, owner, "INBOX")])
    before = store_requests(stack)
    memory.items.list(owner)
    memory.snapshots.list_messages(owner, "INBOX")
    assert store_requests(stack) == before


def test_recent_claims_are_followed_from_their_notices(stack, store, owner) -> None:
    """A \\Recent claim writes only the item's recent_from: its notice says all of it, so neither
    this process's own claim coming back nor another process's claim costs a read of the items."""
    memory = MailMemory(store)
    memory.set_trusted(True)
    store.append(owner, "INBOX", MESSAGE)
    store.append(owner, "INBOX", MESSAGE)
    inbox = memory.items.get(owner, "INBOX")
    assert memory.claim_recent(inbox) == (1, 3)
    memory.apply([notice(store, owner, "INBOX")])  # the echo of this process's claim
    before = store_requests(stack)
    assert memory.items.get(owner, "INBOX").recent_from == 3
    assert store_requests(stack) == before
    store.append(owner, "INBOX", MESSAGE)
    memory.apply([notice(store, owner, "INBOX")])
    other = MailMemory(store)  # another process claims UID 3
    other.set_trusted(True)
    assert other.claim_recent(other.items.get(owner, "INBOX")) == (3, 4)
    memory.apply([notice(store, owner, "INBOX")])
    before = store_requests(stack)
    assert memory.items.get(owner, "INBOX").recent_from == 4
    assert store_requests(stack) == before
    assert memory.claim_recent(memory.items.get(owner, "INBOX")) == (4, 4)  # nothing left to claim
    assert_agrees(memory, store, owner)


def test_losing_and_regaining_the_feed_reads_everything_again(stack, store, owner) -> None:
    memory = MailMemory(store)
    memory.set_trusted(True)
    assert_agrees(memory, store, owner)
    memory.set_trusted(False)
    store.append(owner, "INBOX", MESSAGE)  # missed: no feed
    assert_agrees(memory, store, owner)
    memory.set_trusted(True)
    store.append(owner, "INBOX", MESSAGE)  # missed too: its notice came before the feed was back
    assert_agrees(memory, store, owner)


def test_a_lost_notice_is_made_good_by_reading_again_after_a_while(store, owner) -> None:
    now = [0.0]
    items = MailboxItems(store, clock=lambda: now[0])
    items.set_trusted(True)
    before = items.get(owner, "INBOX")
    store.append(owner, "INBOX", MESSAGE)  # its notice never comes
    now[0] += REVALIDATE_SECONDS / 2
    assert items.get(owner, "INBOX") == before  # memory trusted meanwhile
    now[0] += REVALIDATE_SECONDS
    assert items.known(owner, "INBOX") == (False, None)  # too old to answer from
    assert items.get(owner, "INBOX") == store.get_mailbox(owner, "INBOX")
