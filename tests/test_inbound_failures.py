"""Mail answered 250 survives whatever fails after it: long outages, poison, dead letters.

Transient failures are retried with a hold that grows per receive; what can never be stored is
returned to its sender or reported to a postmaster; what the retries do not deliver waits in the
dead-letter queue until `mailpipe queue redrive` puts it back.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys

import pytest
from conftest import DOMAIN, inbox, wait_for_inbox
from queues import function_queue, in_spool, spooled, upload_raw

from mailpipe import aws
from mailpipe.outbound.queue import OutboundMessage, OutboundRecipient
from mailpipe.redelivery import ENV_REDELIVERY_BACKOFF, Backoff
from mailpipe.redrive import dead_letter_queue_url, redrive

# Long enough that no test run is slow enough to see a held record come back by itself.
SLOW = Backoff(first=60, cap=480)


def subjects(stack, owner: str) -> list[str]:
    return [m.summary["envelope"]["subject"] for m in inbox(stack, owner)]


def reads_postmaster_mail(stack) -> str:
    """Who gets reports not about any domain: the first domain's whose postmaster reaches someone."""
    directory = stack.directory()
    return next(
        owners for d in directory.list_domains() if (owners := directory.expand(f"postmaster@{d.name}"))
    )[0]


def bodies(stack, owner: str) -> list[bytes]:
    store = stack.mail_store()
    return [store.read_body(m) for m in inbox(stack, owner)]


def test_a_long_outage_is_retried_with_growing_holds_until_it_ends(stack, new_user, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, f"{SLOW.first};{SLOW.cap}")
    bob = new_user()
    envelope, raw = spooled(stack, [bob], upload=False)  # S3 does not have it: a transient failure
    with function_queue(stack, "InboundFunction", max_receives=10) as queue:
        queue.send(envelope.to_json())
        holds = []
        for receive in range(1, 8):
            poll = queue.poller.poll_once()
            [message] = poll.messages
            assert poll.failed == {message["MessageId"]}
            assert int(message["Attributes"]["ApproximateReceiveCount"]) == receive
            holds.append(queue.seconds_hidden(message["MessageId"]))
            assert not queue.poller.poll_once().messages  # held: not back before its time
            # The hold ends (the test plays the clock): the record is visible again.
            queue.sqs.change_message_visibility(
                QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        expected = [SLOW.delay(n) for n in range(1, 8)]
        assert expected == [60, 120, 240, 480, 480, 480, 480]
        for hold, delay in zip(holds, expected, strict=True):
            assert delay - 30 < hold <= delay
        upload_raw(stack, envelope, raw)  # the outage ends
        assert not queue.poller.poll_once().failed
        assert queue.depth() == queue.depth(queue.dlq) == 0
    assert subjects(stack, bob) == [envelope.id]


def test_an_unreadable_queue_entry_is_reported_to_the_postmaster(stack, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    postmaster = reads_postmaster_mail(stack)
    before = len(inbox(stack, postmaster))
    entry = f"this is not an envelope {os.urandom(4).hex()}"
    with function_queue(stack, "InboundFunction", max_receives=5) as queue:
        queue.send(entry)
        queue.drain(rounds=2)
        assert queue.depth() == queue.depth(queue.dlq) == 0
    # The report goes through the spool like any message, to the stack's own inbound function.
    wait_for_inbox(stack, postmaster, before + 1)
    assert any(entry.encode() in body for body in bodies(stack, postmaster))


def test_an_unreadable_outbound_entry_is_reported_to_the_postmaster(stack, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    postmaster = reads_postmaster_mail(stack)
    before = len(inbox(stack, postmaster))
    entry = json.dumps({"envelope_id": os.urandom(4).hex(), "unexpected": "field"})
    with function_queue(stack, "OutboundFunction", max_receives=5) as queue:
        queue.send(entry)
        queue.drain(rounds=2)
        assert queue.depth() == queue.depth(queue.dlq) == 0
    wait_for_inbox(stack, postmaster, before + 1)
    assert any(entry.encode() in body and b"outbound queue" in body for body in bodies(stack, postmaster))


def test_poison_from_a_local_sender_bounces_to_the_sender(stack, new_user, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    bob, carol = new_user(), new_user()
    envelope, _ = spooled(stack, [carol, "no address\r\nStatus: 2.0.0"], mail_from=bob, auth_user=bob)
    with function_queue(stack, "InboundFunction", max_receives=5) as queue:
        queue.send(envelope.to_json())
        queue.drain(rounds=2)
        assert queue.depth() == queue.depth(queue.dlq) == 0
    wait_for_inbox(stack, bob, 1)
    [bounce] = bodies(stack, bob)
    report = email.message_from_bytes(bounce)
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    assert report.get_content_type() == "multipart/report"
    assert b"Status: 5.1.3" in bounce and f"X-Mailpipe-Queue-ID: {envelope.id}".encode() in bounce
    assert b"\r\nStatus: 2.0.0" not in bounce  # the recipient's line break added no field
    assert f"Subject: {envelope.id}".encode() in bounce  # the original's header, as RET=HDRS says
    assert inbox(stack, carol) == []  # an envelope is returned whole, never half delivered
    assert not in_spool(stack, envelope)


def test_poison_from_an_unauthenticated_sender_goes_to_the_postmaster(stack, new_user, monkeypatch) -> None:
    """Port 25 mail has a forgeable return path: its bounce would be backscatter."""
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    bob = new_user()
    postmaster = stack.directory().get_domain(DOMAIN).admin  # who reads postmaster mail
    before = len(inbox(stack, postmaster))
    # Remote recipients without AUTH: the gateway refuses them at RCPT, so this is a bug to report.
    envelope, raw = spooled(stack, [bob, "carol@remote.test"], mail_from="eve@remote.test")
    with function_queue(stack, "InboundFunction", max_receives=5) as queue:
        queue.send(envelope.to_json())
        queue.drain(rounds=2)
        assert queue.depth() == queue.depth(queue.dlq) == 0
    wait_for_inbox(stack, postmaster, before + 1)
    [report] = [b for b in bodies(stack, postmaster) if envelope.id.encode() in b]
    assert b"Status: 5.7.1" in report
    assert raw in report  # the whole message (RET=FULL), for the postmaster to act on
    assert inbox(stack, bob) == []


def test_dead_lettered_mail_is_redriven_and_then_delivered(stack, new_user, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    bob = new_user()
    envelope, raw = spooled(stack, [bob], upload=False)  # fails on every receive
    lost, _ = spooled(stack, [bob], upload=False)  # and this one's object never comes
    with function_queue(stack, "InboundFunction", max_receives=3) as queue:
        queue.send(envelope.to_json())
        queue.send(lost.to_json())
        queue.drain(rounds=5)
        assert queue.depth() == 0
        assert queue.depth(queue.dlq) == 2
        assert dead_letter_queue_url(queue.sqs, queue.url) == queue.dlq
        upload_raw(stack, envelope, raw)  # the cause is fixed
        before = aws.client("s3").head_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key)
        result = redrive(queue.sqs, queue.url, stack.spool())
        assert (result.moved, result.failed, result.without_object) == (2, 0, 1)
        assert queue.depth(queue.dlq) == 0
        # Touched: the lifecycle backstop counts the object's age from the redrive.
        after = aws.client("s3").head_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key)
        touched = [{key.lower() for key in head["Metadata"]} for head in (before, after)]
        assert touched == [set(), {"touched"}]
        queue.drain(rounds=5)
        # The one without an object failed its receives again: back in the DLQ, not lost.
        assert queue.depth() == 0
        assert queue.depth(queue.dlq) == 1
    assert subjects(stack, bob) == [envelope.id]


def test_the_outbound_function_holds_back_what_it_failed_on(stack, new_user, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, f"{SLOW.first};{SLOW.cap}")
    alice = new_user()
    envelope, _ = spooled(stack, [], upload=False, mail_from=alice, auth_user=alice)  # S3 lacks it
    message = OutboundMessage(
        envelope_id=envelope.id,
        s3_key=envelope.s3_key,
        mail_from=alice,
        auth_user=alice,
        received_at=envelope.received_at,
        size=envelope.size,
        recipients=[OutboundRecipient("friend@remote.test")],
    )
    with function_queue(stack, "OutboundFunction", max_receives=5) as queue:
        queue.send(message.to_json())
        poll = queue.poller.poll_once()
        [received] = poll.messages
        assert poll.failed == {received["MessageId"]}
        assert SLOW.delay(1) - 30 < queue.seconds_hidden(received["MessageId"]) <= SLOW.delay(1)
        assert not queue.poller.poll_once().messages


def test_mailpipe_queue_redrive_puts_the_stacks_dead_letters_back(stack, new_user) -> None:
    bob = new_user()
    envelope, _ = spooled(stack, [bob])
    sqs = aws.client("sqs")
    # As SQS's redrive policy leaves it: the envelope, as sent, on the inbound dead-letter queue.
    sqs.send_message(
        QueueUrl=dead_letter_queue_url(sqs, stack.resources.inbound_queue_url), MessageBody=envelope.to_json()
    )
    result = subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", "queue", "redrive", "all"],
        capture_output=True,
        text=True,
        env={**os.environ, **stack.environment},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["inbound: 1 messages redriven", "outbound: 0 messages redriven"]
    wait_for_inbox(stack, bob, 1)
    assert subjects(stack, bob) == [envelope.id]


def test_the_default_back_off_retries_for_days() -> None:
    # 18 receives (template.yaml's maxReceiveCount): the "about 4.4 days" the docs promise.
    assert round(Backoff().window(18) / 86400, 1) == 4.4


def test_back_off_settings() -> None:
    assert Backoff.from_text("5;300") == Backoff(5, 300)
    assert [Backoff(5, 300).delay(n) for n in (1, 2, 6, 7, 1000)] == [5, 10, 160, 300, 300]
    assert Backoff.from_text("0;0").window(18) == 0
    assert Backoff.from_text("60") == Backoff()
    # SQS refuses a hold ending over 12 hours after the receive: settings that could ask for one fail.
    for text in ("60;43200", "600;60", "-1;60"):
        with pytest.raises(ValueError):
            Backoff.from_text(text)


def test_recipients_disabled_or_deleted_after_rcpt_are_bounced_and_the_rest_stored(
    stack, new_user, monkeypatch
) -> None:
    """The gateway said 250; by delivery one user was disabled and one deleted."""
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    sender, carol, dave, erin = new_user(), new_user(), new_user(), new_user()
    envelope, _ = spooled(stack, [carol, dave, erin], mail_from=sender, auth_user=sender)
    stack.directory().set_disabled(dave, True)
    stack.directory().delete_user(erin)
    with function_queue(stack, "InboundFunction", max_receives=5) as queue:
        queue.send(envelope.to_json())
        queue.drain(rounds=2)
        assert queue.depth() == queue.depth(queue.dlq) == 0
    assert subjects(stack, carol) == [envelope.id]
    assert inbox(stack, dave) == [] and inbox(stack, erin) == []
    wait_for_inbox(stack, sender, 1)
    [bounce] = bodies(stack, sender)
    assert f"Final-Recipient: rfc822; {dave}\r\nAction: failed\r\nStatus: 5.2.1".encode() in bounce
    assert f"Final-Recipient: rfc822; {erin}\r\nAction: failed\r\nStatus: 5.1.1".encode() in bounce
    assert f"Final-Recipient: rfc822; {carol}".encode() not in bounce
    assert not in_spool(stack, envelope)


def test_mail_for_postmaster_reaches_the_domains_admin(stack, new_user, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    admin = stack.directory().get_domain(DOMAIN).admin
    before = len(inbox(stack, admin))
    envelope, _ = spooled(stack, [f"postmaster@{DOMAIN}"])
    with function_queue(stack, "InboundFunction", max_receives=5) as queue:
        queue.send(envelope.to_json())
        queue.drain()
    assert subjects(stack, admin)[before:] == [envelope.id]
    assert inbox(stack, f"postmaster@{DOMAIN}") == []


def test_mail_for_nobody_left_is_returned_whole(stack, new_user, monkeypatch) -> None:
    monkeypatch.setenv(ENV_REDELIVERY_BACKOFF, "0;0")
    sender, dave = new_user(), new_user()
    envelope, _ = spooled(stack, [dave], mail_from=sender, auth_user=sender)
    stack.directory().set_disabled(dave, True)
    with function_queue(stack, "InboundFunction", max_receives=5) as queue:
        queue.send(envelope.to_json())
        queue.drain(rounds=2)
        assert queue.depth() == queue.depth(queue.dlq) == 0
    wait_for_inbox(stack, sender, 1)
    [bounce] = bodies(stack, sender)
    assert b"Status: 5.2.1" in bounce and b"mailbox disabled" in bounce
    assert inbox(stack, dave) == [] and not in_spool(stack, envelope)
