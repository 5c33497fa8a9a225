"""Each sample event in events/ fed to its function's handler, on moto."""

from __future__ import annotations

import base64
import json

from conftest import REPO_ROOT, wait_for

from mailpipe import aws
from mailpipe.changes.feed import ChangeFeed
from mailpipe.changes.notice import MailboxNotice
from mailpipe.outbound.suppression import SuppressionList
from mailpipe.spool import Envelope
from mailpipe_tools.local.functions import LocalLambdaContext

EVENTS = REPO_ROOT / "events"


def test_validate_recipient_event(stack) -> None:
    # bob@example.test is one of the stack's users (tests/conftest.py).
    function = stack.functions["ValidateRecipientFunction"]
    event = json.loads((EVENTS / "validate_recipient.json").read_text())
    answer = function.handler(event, LocalLambdaContext(function.name))
    assert answer == {"address": "bob+newsletters@example.test", "verdict": "deliverable", "reason": ""}


def test_validate_recipient_rejects_a_malformed_event(stack) -> None:
    function = stack.functions["ValidateRecipientFunction"]
    try:
        function.handler({"addr": 1}, LocalLambdaContext(function.name))
    except ValueError as exc:
        assert "address" in str(exc)
    else:
        raise AssertionError("a malformed event must fail the invocation")


def test_inbound_event(stack) -> None:
    function = stack.functions["InboundFunction"]
    event = json.loads((EVENTS / "inbound.json").read_text())
    envelope = Envelope.from_json(event["Records"][0]["body"])
    raw = (EVENTS / "inbound-message.eml").read_bytes()
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key, Body=raw)
    assert function.handler(event, LocalLambdaContext(function.name)) == {"batchItemFailures": []}
    _, messages = stack.mail_store().list_messages("bob@example.test", "INBOX")
    [stored] = [m for m in messages if m.delivery_id == envelope.id]
    assert stack.mail_store().read_body(stored) == raw
    assert stored.summary["envelope"]["subject"] == "Bonjour from crepes.fr"


def test_ses_events_event(stack) -> None:
    """A hard bounce from SES, SNS-wrapped in an SQS record: the address is suppressed (the sample's
    envelope is in no queue here, so nobody is owed a bounce)."""
    function = stack.functions["SesEventsFunction"]
    event = json.loads((EVENTS / "ses_events.json").read_text())
    assert function.handler(event, LocalLambdaContext(function.name)) == {"batchItemFailures": []}
    suppressions = SuppressionList(aws.table(stack.environment["MAILPIPE_OUTBOUND_TABLE"]))
    suppressed = suppressions.get("nobody@hamburger.edu")
    assert suppressed is not None and suppressed.reason == "bounce"
    assert suppressed.envelope_id == "01A21E05E9755A96E0B978CE7E63"
    assert "User unknown" in suppressed.detail
    assert suppressions.remove("nobody@hamburger.edu")


IDS = {"INBOX": "0f5e3c1c7a8b4d2e9f1a2b3c4d5e6f70", "Old Projects": "8d777f385d3dfec8815d20f7496026dc"}


def test_mailbox_changes_event(stack) -> None:
    """The relay function publishes the event's notices to the changes topic: a process's feed
    hears of both mailboxes (bob's INBOX got mail; "Old Projects" was deleted or renamed away)."""
    function = stack.functions["MailboxChangesFunction"]
    event = json.loads((EVENTS / "mailbox_changes.json").read_text())
    feed = ChangeFeed(
        aws.long_poll_client("sqs"), aws.client("sns"), stack.deployment.refs["MailboxChangesTopic"]
    )
    heard: list[MailboxNotice] = []
    feed.add_listener(heard.extend)
    feed.start()
    try:
        assert function.handler(event, LocalLambdaContext(function.name)) == {"notices": 2}
        # By the event's mailbox ids: the stack's own bob may have real notices on the way too.
        wait_for(lambda: {n.mailbox_id for n in heard} >= set(IDS.values()))
    finally:
        feed.close()
    by_name = {n.name: n for n in heard if n.mailbox_id in IDS.values()}
    assert by_name["INBOX"] == MailboxNotice(
        "bob@example.test", "INBOX", IDS["INBOX"], 43, 118, False, 1, prunedmodseq=0
    )
    assert by_name["Old Projects"] == MailboxNotice(
        "bob@example.test", "Old Projects", IDS["Old Projects"], 7, 12, True, 1, prunedmodseq=0
    )


def test_jmap_event(stack) -> None:
    """An HTTP API request as API Gateway gives it (payload 2.0, a text body, bob's Basic
    credentials): the answer is API Gateway's response format with the JMAP response."""
    function = stack.functions["JmapFunction"]
    event = json.loads((EVENTS / "jmap.json").read_text())
    answer = function.handler(event, LocalLambdaContext(function.name))
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is True
    assert answer["headers"]["Content-Type"] == "application/json"
    echo, query = json.loads(base64.b64decode(answer["body"]))["methodResponses"]
    assert echo == ["Core/echo", {"hello": "world"}, "0"]
    assert query[0] == "Mailbox/query" and len(query[1]["ids"]) == 1
    event["headers"]["authorization"] = "Basic " + base64.b64encode(b"bob@example.test:wrong").decode()
    assert function.handler(event, LocalLambdaContext(function.name))["statusCode"] == 401


def test_prune_event(stack, owner: str) -> None:
    """The hourly schedule's event: a run over every user's mailboxes (of this long test session,
    so given 35 s: it stops 30 s before its time is up), its report returned."""
    function = stack.functions["PruneFunction"]
    event = json.loads((EVENTS / "prune.json").read_text())
    report = function.handler(event, LocalLambdaContext(function.name, 35))
    assert report["mailboxes"] >= 1
    assert report["complete"] or report["mailboxes"] < 6 * len(stack.directory().list_users())
