"""The inbound function fed by the local SQS poller: retries, dead letters, duplicates, aliases."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from conftest import DOMAIN, inbox
from queues import function_queue, in_spool, spooled, upload_raw

from mailpipe import aws
from mailpipe.redelivery import ENV_REDELIVERY_BACKOFF

MAX_RECEIVES = 5


@pytest.fixture
def queue(stack, monkeypatch):
    # No back-off: a failed record comes back at once, so a test drains the queue in rounds.
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    with function_queue(stack, "InboundFunction", MAX_RECEIVES) as queue:
        yield queue


def subjects(stack, owner: str) -> list[str]:
    return [m.summary["envelope"]["subject"] for m in inbox(stack, owner)]


def test_a_failing_record_is_retried_and_the_rest_stored_once(stack, new_user, queue) -> None:
    bob = new_user()
    good = [spooled(stack, [bob]) for _ in range(2)]
    late, late_raw = spooled(stack, [bob], upload=False)  # its body is not in S3 yet: delivery fails
    for envelope in [good[0][0], late, good[1][0]]:
        queue.send(envelope.to_json())
    queue.drain(rounds=2)
    assert sorted(subjects(stack, bob)) == sorted(e.id for e, _ in good)
    assert queue.depth() == 1
    upload_raw(stack, late, late_raw)
    queue.drain()
    assert sorted(subjects(stack, bob)) == sorted([late.id] + [e.id for e, _ in good])
    assert queue.depth() == 0


def test_a_stored_message_leaves_the_spool_and_a_relayed_one_stays(stack, new_user, queue) -> None:
    bob = new_user()
    local, _ = spooled(stack, [bob])
    relayed, _ = spooled(stack, [bob, "carol@remote.test"], mail_from=bob, auth_user=bob)
    queue.send(local.to_json())
    queue.send(relayed.to_json())
    queue.drain()
    assert sorted(subjects(stack, bob)) == sorted([local.id, relayed.id])
    assert not in_spool(stack, local)
    # The outbound function still has to read it; it deletes it when carol's copy is final.
    assert in_spool(stack, relayed)


def test_a_suspect_message_goes_to_junk(stack, store, new_user, queue) -> None:
    bob = new_user()
    clean, _ = spooled(stack, [bob])
    suspect = dataclasses.replace(spooled(stack, [bob])[0], junk=True)
    queue.send(clean.to_json())
    queue.send(suspect.to_json())
    queue.drain()
    assert subjects(stack, bob) == [clean.id]
    junk = [m.summary["envelope"]["subject"] for m in store.list_messages(bob, "Junk")[1]]
    assert junk == [suspect.id]


def test_duplicate_delivery_makes_one_mailbox_entry(stack, new_user, queue) -> None:
    bob = new_user()
    envelope, _ = spooled(stack, [bob])
    for _ in range(3):
        queue.send(envelope.to_json())
    queue.drain()
    queue.send(envelope.to_json())
    queue.drain()
    assert subjects(stack, bob) == [envelope.id]
    # The repeats were answered by Powertools Idempotency from the stored result (the spool
    # object is gone by then).
    table = aws.table(stack.environment["MAILPIPE_IDEMPOTENCY_TABLE"])
    records = [item for item in table.scan()["Items"] if envelope.id in item.get("data", "")]
    assert [record["status"] for record in records] == ["COMPLETED"]


def test_aliases_expand_to_every_target_once(stack, new_user, queue) -> None:
    bob, carol = new_user(), new_user()
    team = f"team-{secrets.token_hex(3)}@{DOMAIN}"
    stack.directory().add_alias(team, [bob, carol])
    envelope, raw = spooled(stack, [team, bob])
    queue.send(envelope.to_json())
    queue.drain()
    assert subjects(stack, bob) == [envelope.id]
    assert subjects(stack, carol) == [envelope.id]
    [stored] = inbox(stack, carol)
    assert stack.mail_store().read_body(stored) == raw


def test_a_message_to_many_users_is_stored_once_for_each(stack, new_user, queue) -> None:
    # More owners than the copiers' threads (inbound.COPY_THREADS): their copies are stored a few
    # at a time, each exactly once, and the envelope fails whole while its body is unreadable.
    users = [new_user() for _ in range(12)]
    envelope, raw = spooled(stack, users, upload=False)
    queue.send(envelope.to_json())
    queue.drain(rounds=2)
    assert queue.depth() == 1
    assert all(subjects(stack, user) == [] for user in users)
    upload_raw(stack, envelope, raw)
    queue.drain()
    store = stack.mail_store()
    for user in users:
        [stored] = inbox(stack, user)
        assert stored.summary["envelope"]["subject"] == envelope.id
        assert store.read_body(stored) == raw
    assert len({stored.uid for user in users for stored in inbox(stack, user)}) == 1  # each UID 1
    assert queue.depth() == 0


def test_every_user_has_the_default_mailboxes(stack, new_user, queue) -> None:
    dave = new_user()
    envelope, _ = spooled(stack, [dave])
    queue.send(envelope.to_json())
    queue.drain()
    mailboxes = {m.name: m.special_use for m in stack.mail_store().list_mailboxes(dave)}
    assert mailboxes == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
