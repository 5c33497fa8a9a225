"""Concurrent deliveries into one mailbox: UIDs unique, dense, and never seen out of order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from mailpipe import aws
from mailpipe.spool import new_queue_id

WRITERS = 8
MESSAGES = 48


def test_readers_never_see_a_lower_uid_appear_after_a_higher_one(stack, new_user) -> None:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    key = f"spool/test/{new_queue_id()}.eml"
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=key, Body=b"Subject: x\r\n\r\nx\r\n")

    done = threading.Event()
    violations: list[str] = []
    listings = 0

    def read() -> None:
        nonlocal listings
        seen: set[int] = set()
        while not done.is_set():
            _, messages = store.list_messages(owner, "INBOX")
            uids = [m.uid for m in messages]
            new = set(uids) - seen
            if seen and new and min(new) < max(seen):
                violations.append(f"new UIDs {sorted(new)} after having seen up to {max(seen)}")
            if not set(seen) <= set(uids):
                violations.append("a UID disappeared")
            seen |= new
            listings += 1

    def deliver(n: int) -> int:
        return store.deliver(
            owner,
            "INBOX",
            delivery_id=f"concurrent-{n}",
            source_bucket=stack.resources.mail_bucket,
            source_key=key,
            size=17,
            summary={"n": n},
        )

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    with ThreadPoolExecutor(WRITERS) as pool:
        uids = list(pool.map(deliver, range(MESSAGES)))
    done.set()
    for reader in readers:
        reader.join()

    assert violations == []
    assert listings > 2, "the readers must have overlapped the writers"
    assert sorted(uids) == list(range(1, MESSAGES + 1))
    mailbox, messages = store.list_messages(owner, "INBOX")
    assert [m.uid for m in messages] == list(range(1, MESSAGES + 1))
    assert mailbox.uidnext == MESSAGES + 1
    modseqs = [m.modseq for m in messages]
    assert len(set(modseqs)) == MESSAGES and mailbox.highestmodseq == max(modseqs)
    # Each delivery id is stored once, whatever order the retries came in.
    assert sorted(m.summary["n"] for m in messages) == list(range(MESSAGES))


def test_redelivering_the_same_id_returns_the_same_uid(stack, new_user) -> None:
    owner = new_user()
    store = stack.mail_store()
    key = f"spool/test/{new_queue_id()}.eml"
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=key, Body=b"\r\n")
    args = dict(
        delivery_id="same", source_bucket=stack.resources.mail_bucket, source_key=key, size=2, summary={}
    )
    with ThreadPoolExecutor(4) as pool:
        uids = list(pool.map(lambda _: store.deliver(owner, "INBOX", **args), range(4)))
    assert uids == [1, 1, 1, 1]
    assert len(store.list_messages(owner, "INBOX")[1]) == 1
