"""SES events, SNS-wrapped as SQS hands them to the ses-events function, against the dev stack.

Mail goes out through the `ses` transport to the stack's moto SES (which accepts it as SES
would); what SES would report later is then fed to the function as the event SES publishes.
The bounce the sender gets is the one the `mx` transport's bounces arrive as: spooled, stored
in the sender's INBOX by the stack's own pipeline.
"""

from __future__ import annotations

import copy
import email
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from conftest import DOMAIN, REPO_ROOT, wait_for, wait_for_inbox

from mailpipe import aws
from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.outbound.ses import ENVELOPE_TAG
from mailpipe.outbound.state import DELIVERED, FAILED, QueueEntry, QueueState
from mailpipe.outbound.suppression import BOUNCE, COMPLAINT, SesSuppressionList, SuppressionList
from mailpipe.outbound.transport_map import TransportMap
from mailpipe.spool import Envelope, new_queue_id, spool_key
from mailpipe_tools.local.functions import LocalLambdaContext

SAMPLE = REPO_ROOT / "events" / "ses_events.json"
FUNCTION = "SesEventsFunction"
NOW = datetime(2026, 11, 27, 17, 21, tzinfo=UTC)


@dataclass
class SesOutbound:
    engine: OutboundDelivery
    state: QueueState
    suppressions: SuppressionList
    sends: list[dict[str, Any]]  # the SendEmail requests the transport made, as it made them
    configuration_set: str


@pytest.fixture
def ses_outbound(stack) -> Iterator[SesOutbound]:
    """An engine routing everything through SES (the stack's moto), on the stack's outbound table."""
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"ses-outbound-{secrets.token_hex(4)}")["QueueUrl"]
    table = aws.table(stack.environment["MAILPIPE_OUTBOUND_TABLE"])
    ses = aws.client("sesv2")
    try:
        ses.create_email_identity(EmailIdentity=DOMAIN)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AlreadyExistsException":
            raise
    sends: list[dict[str, Any]] = []
    ses.meta.events.register(
        "provide-client-params.sesv2.SendEmail", lambda params, **_: sends.append(params)
    )
    configuration_set = stack.environment["MAILPIPE_SES_CONFIGURATION_SET"]
    config = OutboundConfig(
        hostname="mail.example.test",
        transports=TransportMap.from_text("*=ses"),
        ses_client=ses,
        ses_configuration_set=configuration_set,
    )
    state, suppressions = QueueState(table), SuppressionList(table)
    engine = OutboundDelivery(
        stack.spool(), state, OutboundQueue(sqs, queue_url), config, suppressions=suppressions
    )
    yield SesOutbound(engine, state, suppressions, sends, configuration_set)
    sqs.delete_queue(QueueUrl=queue_url)


def queued(stack, sender: str, *recipients: OutboundRecipient) -> OutboundMessage:
    queue_id = new_queue_id()
    head = f"From: {sender}\r\nTo: friend@hamburger.edu\r\nSubject: through SES {queue_id}\r\n"
    raw = (head + "\r\nhi\r\n").encode()
    envelope = Envelope(queue_id, sender, [], spool_key(queue_id, NOW), len(raw), NOW.isoformat())
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key, Body=raw)
    return OutboundMessage(
        envelope_id=queue_id,
        s3_key=envelope.s3_key,
        mail_from=sender,
        auth_user=sender,
        received_at=NOW.isoformat(),
        size=len(raw),
        recipients=list(recipients),
    )


def ses_event(kind: str, entry: QueueEntry | None, destination: list[str], **details: Any) -> dict[str, Any]:
    """The event SES publishes about a message mailpipe sent (from the sample's shape)."""
    sample = json.loads(json.loads(json.loads(SAMPLE.read_text())["Records"][0]["body"])["Message"])
    mail = copy.deepcopy(sample["mail"])
    mail["destination"] = destination
    if entry is None:
        del mail["tags"][ENVELOPE_TAG]
    else:
        mail["messageId"] = entry.last_reply.rsplit(" ", 1)[-1]
        mail["tags"][ENVELOPE_TAG] = [entry.envelope_id]
        mail["headers"] = [{"name": "Subject", "value": f"through SES {entry.envelope_id}"}]
    return {"eventType": kind, "mail": mail, **details}


def deliver(stack, event: dict[str, Any]) -> dict[str, Any]:
    """The event as the function gets it: SNS notification JSON in an SQS record, as in events/."""
    sqs_event = json.loads(SAMPLE.read_text())
    record = sqs_event["Records"][0]
    notification = json.loads(record["body"])
    notification["Message"] = json.dumps(event)
    record["body"] = json.dumps(notification)
    record["messageId"] = secrets.token_hex(8)
    function = stack.functions[FUNCTION]
    return function.handler(sqs_event, LocalLambdaContext(function.name))


def hard_bounce(address: str, status: str = "5.1.1") -> dict[str, Any]:
    return {
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} <{address}>: Recipient address rejected: "
                    "User unknown",
                }
            ],
            "timestamp": "2026-11-27T17:21:05.000Z",
            "remoteMtaIp": "192.0.2.80",
            "reportingMTA": "dsn; a8-12.smtp-out.amazonses.com",
        }
    }


def sent(ses_outbound: SesOutbound, message: OutboundMessage, address: str) -> QueueEntry:
    ses_outbound.engine.process(message)
    entry = ses_outbound.state.entries(message.envelope_id)[address]
    assert entry.status == DELIVERED, entry.last_reply
    return entry


def report_parts(message: Message) -> tuple[str, str]:
    """A DSN's delivery-status part (fields unfolded) and its returned-headers part, as text."""
    assert message.get_content_type() == "multipart/report"
    _human, status, returned = message.get_payload()
    return status.as_string().replace("\n ", " "), returned.as_string()


def test_hard_bounce_through_ses_bounces_like_mx_suppresses_and_later_sends_fail_at_once(
    stack, new_user, ses_outbound: SesOutbound
) -> None:
    alice = new_user()
    nobody = f"nobody-{secrets.token_hex(3)}@hamburger.edu"
    message = queued(stack, alice, OutboundRecipient(nobody, None, f"rfc822;{nobody.capitalize()}"))
    entry = sent(ses_outbound, message, nobody)
    # The transport sent with the stack's configuration set and the envelope id as a tag.
    [request] = ses_outbound.sends
    assert request["ConfigurationSetName"] == ses_outbound.configuration_set
    assert {"Name": ENVELOPE_TAG, "Value": message.envelope_id} in request["EmailTags"]

    event = ses_event("Bounce", entry, [nobody], **hard_bounce(nobody))
    assert deliver(stack, event) == {"batchItemFailures": []}

    [stored] = wait_for_inbox(stack, alice, 1)
    bounce = email.message_from_bytes(stack.mail_store().read_body(stored))
    assert bounce["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    status, returned = report_parts(bounce)
    for field in (
        "Reporting-MTA: dns; mail.example.test",
        f"X-Mailpipe-Queue-ID: {message.envelope_id}",
        f"Original-Recipient: rfc822; {nobody.capitalize()}",
        f"Final-Recipient: rfc822; {nobody}",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; 192.0.2.80",
        f"Diagnostic-Code: smtp; 550 5.1.1 <{nobody}>: Recipient address rejected: User unknown",
    ):
        assert field in status, field
    assert f"Subject: through SES {message.envelope_id}" in returned

    failed = ses_outbound.state.entries(message.envelope_id)[nobody]
    assert failed.status == FAILED and "User unknown" in failed.last_reply
    suppressed = ses_outbound.suppressions.get(nobody.upper())
    assert suppressed is not None and suppressed.reason == BOUNCE
    assert suppressed.envelope_id == message.envelope_id and "User unknown" in suppressed.detail

    # The same event again (SNS and SQS deliver at least once): the entry is failed already.
    assert deliver(stack, event) == {"batchItemFailures": []}

    # A later message to the address fails at once: no call to SES, and the usual bounce.
    later = queued(stack, alice, OutboundRecipient(nobody), OutboundRecipient("friend@hamburger.edu"))
    ses_outbound.engine.process(later)
    assert [r["Destination"]["ToAddresses"] for r in ses_outbound.sends[1:]] == [["friend@hamburger.edu"]]
    entries = ses_outbound.state.entries(later.envelope_id)
    assert entries["friend@hamburger.edu"].status == DELIVERED
    assert entries[nobody].status == FAILED
    assert "suppressed after a bounce" in entries[nobody].last_reply
    reports = [
        email.message_from_bytes(stack.mail_store().read_body(m)) for m in wait_for_inbox(stack, alice, 2)
    ]
    later_status = [report_parts(r)[0] for r in reports if later.envelope_id in report_parts(r)[0]]
    assert len(later_status) == 1 and "Status: 5.1.1" in later_status[0] and "suppressed" in later_status[0]


def test_complaint_suppresses_without_a_bounce(stack, new_user, ses_outbound: SesOutbound) -> None:
    alice = new_user()
    address = f"grumpy-{secrets.token_hex(3)}@hamburger.edu"
    message = queued(stack, alice, OutboundRecipient(address))
    entry = sent(ses_outbound, message, address)
    complaint = {
        "complaint": {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": "2026-11-27T18:00:00.000Z",
            "feedbackId": "0100019c-complaint",
            "complaintFeedbackType": "abuse",
        }
    }
    assert deliver(stack, ses_event("Complaint", entry, [address], **complaint)) == {"batchItemFailures": []}
    suppressed = ses_outbound.suppressions.get(address)
    assert suppressed is not None and suppressed.reason == COMPLAINT and "abuse" in suppressed.detail
    # Delivered it was: no bounce, the entry stays as it is.
    assert ses_outbound.state.entries(message.envelope_id)[address].status == DELIVERED
    later = queued(stack, alice, OutboundRecipient(address, ["NEVER"]))
    ses_outbound.engine.process(later)
    assert len(ses_outbound.sends) == 1
    assert ses_outbound.state.entries(later.envelope_id)[address].status == FAILED


@pytest.mark.parametrize(
    ("kind", "details"),
    [
        (
            "Bounce",
            {
                "bounce": {
                    "bounceType": "Transient",
                    "bounceSubType": "MailboxFull",
                    "bouncedRecipients": [{"emailAddress": "ADDRESS", "status": "4.2.2"}],
                }
            },
        ),
        (
            "DeliveryDelay",
            {
                "deliveryDelay": {
                    "delayType": "TransientCommunicationFailure",
                    "delayedRecipients": [
                        {
                            "emailAddress": "ADDRESS",
                            "status": "4.4.1",
                            "diagnosticCode": "smtp; 421 4.4.1 busy",
                        }
                    ],
                    "expirationTime": "2026-11-28T17:21:02.350Z",
                }
            },
        ),
    ],
)
def test_soft_bounce_and_delay_are_only_logged(
    stack, new_user, ses_outbound: SesOutbound, caplog: pytest.LogCaptureFixture, kind: str, details: dict
) -> None:
    address = f"busy-{secrets.token_hex(3)}@hamburger.edu"
    message = queued(stack, new_user(), OutboundRecipient(address))
    entry = sent(ses_outbound, message, address)
    event = ses_event(kind, entry, [address], **json.loads(json.dumps(details).replace("ADDRESS", address)))
    with caplog.at_level(logging.INFO, logger="mailpipe.outbound.ses_events"):
        assert deliver(stack, event) == {"batchItemFailures": []}
    assert any(address in r.getMessage() for r in caplog.records if r.name == "mailpipe.outbound.ses_events")
    assert ses_outbound.suppressions.get(address) is None
    assert ses_outbound.state.entries(message.envelope_id)[address].status == DELIVERED


def test_reject_bounces_without_suppressing(stack, new_user, ses_outbound: SesOutbound) -> None:
    alice = new_user()
    address = f"carl-{secrets.token_hex(3)}@hamburger.edu"
    message = queued(stack, alice, OutboundRecipient(address))
    entry = sent(ses_outbound, message, address)
    event = ses_event("Reject", entry, [address], reject={"reason": "Bad content"})
    assert deliver(stack, event) == {"batchItemFailures": []}
    [stored] = wait_for_inbox(stack, alice, 1)
    status, _ = report_parts(email.message_from_bytes(stack.mail_store().read_body(stored)))
    assert "Status: 5.7.1" in status and "Amazon SES rejected the message: Bad content" in status
    assert ses_outbound.state.entries(message.envelope_id)[address].status == FAILED
    assert ses_outbound.suppressions.get(address) is None


def test_an_event_without_our_tag_still_suppresses(stack, ses_outbound: SesOutbound) -> None:
    address = f"gone-{secrets.token_hex(3)}@hamburger.edu"
    assert deliver(stack, ses_event("Bounce", None, [address], **hard_bounce(address))) == {
        "batchItemFailures": []
    }
    suppressed = ses_outbound.suppressions.get(address)
    assert suppressed is not None and suppressed.envelope_id == ""


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"Type": "SubscriptionConfirmation", "Message": "{}"}), json.dumps({"x": 1})],
)
def test_unreadable_notifications_are_logged_and_dropped(
    stack, caplog: pytest.LogCaptureFixture, body: str
) -> None:
    sqs_event = json.loads(SAMPLE.read_text())
    sqs_event["Records"][0]["body"] = body
    function = stack.functions[FUNCTION]
    with caplog.at_level(logging.ERROR):
        assert function.handler(sqs_event, LocalLambdaContext(function.name)) == {"batchItemFailures": []}
    assert "unreadable SES event dropped" in caplog.text


def test_ses_account_level_suppression_list() -> None:
    """moto has no SESv2 suppression list: botocore's Stubber stands in for SES's answers."""
    client = aws.client("sesv2")
    listed = SesSuppressionList(client)
    with Stubber(client) as stubber:
        first = {"EmailAddress": "a@x.test", "Reason": "BOUNCE", "LastUpdateTime": NOW}
        second = {"EmailAddress": "b@x.test", "Reason": "COMPLAINT", "LastUpdateTime": NOW}
        stubber.add_response(
            "list_suppressed_destinations", {"SuppressedDestinationSummaries": [second], "NextToken": "t"}
        )
        stubber.add_response(
            "list_suppressed_destinations", {"SuppressedDestinationSummaries": [first]}, {"NextToken": "t"}
        )
        stubber.add_response("delete_suppressed_destination", {}, {"EmailAddress": "a@x.test"})
        stubber.add_client_error(
            "delete_suppressed_destination", service_error_code="NotFoundException", http_status_code=404
        )
        assert [(s.address, s.reason) for s in listed.all()] == [
            ("a@x.test", "bounce"),
            ("b@x.test", "complaint"),
        ]
        assert listed.remove("a@x.test") is True
        assert listed.remove("a@x.test") is False
        stubber.assert_no_pending_responses()


def test_the_dev_stack_runs_the_function_from_its_queue(stack) -> None:
    """`mailpipe dev` creates the configuration set the functions name, and polls the SES event
    queue as Lambda's event source mapping does: an SNS notification put there is applied."""
    configuration_set = stack.environment["MAILPIPE_SES_CONFIGURATION_SET"]
    assert aws.client("sesv2").get_configuration_set(ConfigurationSetName=configuration_set)
    address = f"polled-{secrets.token_hex(3)}@hamburger.edu"
    body = json.loads(json.loads(SAMPLE.read_text())["Records"][0]["body"])
    body["Message"] = json.dumps(ses_event("Bounce", None, [address], **hard_bounce(address)))
    queue_url = stack.deployment.refs["SesEventQueue"]
    aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    suppressions = SuppressionList(aws.table(stack.environment["MAILPIPE_OUTBOUND_TABLE"]))
    assert wait_for(lambda: suppressions.get(address), timeout=30)


def test_ses_bounce_honours_notify_and_orcpt(stack, new_user, ses_outbound: SesOutbound) -> None:
    """As for mx: NOTIFY=NEVER gets no report, ORCPT comes back xtext-decoded (once)."""
    alice = new_user()
    token = secrets.token_hex(3)
    quiet, loud = f"quiet-{token}@hamburger.edu", f"loud-{token}@hamburger.edu"
    message = queued(
        stack,
        alice,
        OutboundRecipient(quiet, ["NEVER"]),
        OutboundRecipient(loud, ["FAILURE"], f"rfc822;x+2B41-{token}@hamburger.edu"),
    )
    ses_outbound.engine.process(message)
    entry = ses_outbound.state.entries(message.envelope_id)[loud]
    bounce = hard_bounce(quiet)
    bounce["bounce"]["bouncedRecipients"] += hard_bounce(loud)["bounce"]["bouncedRecipients"]
    assert deliver(stack, ses_event("Bounce", entry, [quiet, loud], **bounce)) == {"batchItemFailures": []}
    [stored] = wait_for_inbox(stack, alice, 1)
    status, _ = report_parts(email.message_from_bytes(stack.mail_store().read_body(stored)))
    assert f"Final-Recipient: rfc822; {loud}" in status and quiet not in status
    assert f"Original-Recipient: rfc822; x+41-{token}@hamburger.edu" in status
    entries = ses_outbound.state.entries(message.envelope_id)
    assert entries[quiet].status == entries[loud].status == FAILED
