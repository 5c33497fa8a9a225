"""Bodies of expunged messages deleted after the answer, in batches (store/body_deletes.py): every
key handed over is deleted, a failing S3 is tried again and then left to pruning (logged), and a
stopping process deletes what is still waiting."""

from __future__ import annotations

import logging

from conftest import wait_for

from mailpipe import aws
from mailpipe.store import MailStore
from mailpipe.store.body_deletes import BodyDeletes

MESSAGE = b"From: a@remote.test\r\nSubject: gone\r\n\r\nbody\r\n"


def stored_keys(stack, store: MailStore, owner: str, count: int) -> list[str]:
    for n in range(count):
        store.append(owner, "INBOX", MESSAGE + b"%d\r\n" % n)
    _, messages = store.list_messages(owner, "INBOX")
    return [m.blob_key for m in messages]


def exists(stack, key: str) -> bool:
    listed = aws.client("s3").list_objects_v2(Bucket=stack.resources.mail_bucket, Prefix=key)
    return any(entry["Key"] == key for entry in listed.get("Contents", []))


def test_keys_handed_over_are_deleted_together(stack, owner) -> None:
    store = stack.mail_store()
    keys = stored_keys(stack, store, owner, 3)
    deletes = BodyDeletes(store.delete_bodies_now, batch_seconds=0.2)
    deletes.later(keys[:2])
    deletes.later([])
    assert deletes.waiting == 2
    wait_for(lambda: deletes.waiting == 0, timeout=30)
    assert [exists(stack, key) for key in keys] == [False, False, True]


def test_a_failing_delete_is_tried_again_then_left_to_pruning(stack, owner, caplog) -> None:
    store = stack.mail_store()
    keys = stored_keys(stack, store, owner, 1)
    elsewhere = MailStore(store.table, aws.client("s3"), f"{stack.resources.mail_bucket}-missing")
    tried: list[list[str]] = []

    def delete(chunk: list[str]) -> list[str]:
        tried.append(chunk)
        return elsewhere.delete_bodies_now(chunk)  # NoSuchBucket: every key fails

    deletes = BodyDeletes(delete, batch_seconds=0.01, attempts=2)
    with caplog.at_level(logging.WARNING, logger="mailpipe.store.body_deletes"):
        deletes.later(keys)
        wait_for(lambda: deletes.waiting == 0, timeout=30)
    assert tried == [keys, keys]
    assert "left to the pruning of their tombstones" in caplog.text
    assert exists(stack, keys[0])  # still there: pruning's sweep deletes it (test_store_pruning)


def test_flush_deletes_what_is_waiting_now(stack, owner) -> None:
    store = stack.mail_store()
    keys = stored_keys(stack, store, owner, 2)
    deletes = BodyDeletes(store.delete_bodies_now, batch_seconds=3600)  # the thread would wait an hour
    deletes.later(keys)
    assert deletes.flush(timeout=30)
    assert deletes.waiting == 0
    assert not any(exists(stack, key) for key in keys)
