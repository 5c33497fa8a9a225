"""The spool's envelope: typed recipients in the code, the queue's JSON as every release wrote it."""

from __future__ import annotations

import json

import pytest
from conftest import wait_for, wait_for_inbox

from mailpipe import aws
from mailpipe.outbound.queue import OutboundMessage
from mailpipe.outbound.state import QueueState
from mailpipe.spool import Envelope, EnvelopeRecipient, new_queue_id, now_utc, spool_key

# As the gateway wrote envelopes before recipients were typed (and still writes them): the
# addresses in rcpt_tos, their DSN parameters in the same order in rcpt_dsn.
WITH_DSN = (
    '{"id":"019A1B2C3D4E5F60718293A4B5C6D7E8","mail_from":"alice@example.test",'
    '"rcpt_tos":["friend@elsewhere.test","bob@example.test"],'
    '"s3_key":"spool/2026/12/01/019A1B2C3D4E5F60718293A4B5C6D7E8.eml","size":120,'
    '"received_at":"2026-12-01T10:00:00+00:00","client_address":"192.0.2.7","helo":"laptop.test",'
    '"tls":true,"auth_user":"alice@example.test","mail_options":[],"dsn_ret":"HDRS",'
    '"dsn_envid":"QQ314159","rcpt_dsn":[{"notify":["FAILURE","DELAY"],'
    '"orcpt":"rfc822;Friend@Elsewhere.test"},{"notify":null,"orcpt":null}],"junk":false}'
)
# Before the DSN extension: no rcpt_dsn, dsn_ret, dsn_envid or junk at all.
BEFORE_DSN = (
    '{"id":"01A21E05E9755A96E0B978CE7E62","mail_from":"alice@crepes.fr","rcpt_tos":["bob@example.test"],'
    '"s3_key":"spool/2026/11/27/01A21E05E9755A96E0B978CE7E62.eml","size":412,'
    '"received_at":"2026-11-27T17:20:33.612000+00:00","client_address":"192.0.2.25",'
    '"helo":"mail.crepes.fr","tls":true,"auth_user":null,"mail_options":["BODY=8BITMIME"]}'
)


def test_an_envelope_with_dsn_parameters_reads_as_typed_recipients_and_writes_back_the_same() -> None:
    envelope = Envelope.from_json(WITH_DSN)
    assert envelope.recipients == (
        EnvelopeRecipient("friend@elsewhere.test", ("FAILURE", "DELAY"), "rfc822;Friend@Elsewhere.test"),
        EnvelopeRecipient("bob@example.test"),
    )
    assert envelope.rcpt_tos == ["friend@elsewhere.test", "bob@example.test"]
    assert json.loads(envelope.to_json()) == json.loads(WITH_DSN)


def test_an_envelope_from_before_the_dsn_extension_still_reads() -> None:
    envelope = Envelope.from_json(BEFORE_DSN)
    assert envelope.recipients == (EnvelopeRecipient("bob@example.test"),)
    assert (envelope.dsn_ret, envelope.dsn_envid, envelope.junk) == (None, None, False)
    written = json.loads(envelope.to_json())
    assert written["rcpt_tos"] == ["bob@example.test"]
    assert written["rcpt_dsn"] == [{"notify": None, "orcpt": None}]


def test_dsn_parameters_for_fewer_recipients_than_rcpt_tos_leave_the_rest_without() -> None:
    data = json.loads(WITH_DSN)
    data["rcpt_dsn"] = data["rcpt_dsn"][:1]
    envelope = Envelope.from_dict(data)
    assert envelope.recipients[1] == EnvelopeRecipient("bob@example.test")


@pytest.mark.parametrize("rcpt_tos", [None, "bob@example.test", {"bob": 1}])
def test_an_envelope_without_a_recipient_list_is_refused(rcpt_tos) -> None:
    data = json.loads(BEFORE_DSN)
    data["rcpt_tos"] = rcpt_tos
    with pytest.raises(ValueError, match="rcpt_tos"):
        Envelope.from_dict(data)


def test_an_envelope_queued_by_the_previous_release_is_delivered_with_its_dsn_parameters(
    stack, new_user
) -> None:
    """On the stack's own inbound queue, as production queues hold it at a deployment."""
    alice, bob = new_user(), new_user()
    queue_id, when = new_queue_id(), now_utc()
    raw = f"From: {alice}\r\nTo: friend@elsewhere.test\r\nSubject: {queue_id}\r\n\r\nhi\r\n".encode()
    data = json.loads(WITH_DSN)
    data.update(
        id=queue_id,
        mail_from=alice,
        auth_user=alice,
        rcpt_tos=["friend@elsewhere.test", bob],
        s3_key=spool_key(queue_id, when),
        size=len(raw),
        received_at=when.isoformat(),
    )
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=data["s3_key"], Body=raw)
    aws.client("sqs").send_message(QueueUrl=stack.resources.inbound_queue_url, MessageBody=json.dumps(data))

    [stored] = wait_for_inbox(stack, bob, 1)
    assert stored.delivery_id == queue_id
    # The stack's outbound function takes the remote recipient; its state shows what it was given.
    state = QueueState(aws.table(stack.environment["MAILPIPE_OUTBOUND_TABLE"]))
    [entry] = wait_for(lambda: state.entries(queue_id)).values()
    outbound = OutboundMessage.from_json(entry.message)
    assert outbound.recipients == [
        EnvelopeRecipient("friend@elsewhere.test", ("FAILURE", "DELAY"), "rfc822;Friend@Elsewhere.test")
    ]
    assert (outbound.dsn_ret, outbound.dsn_envid) == ("HDRS", "QQ314159")
