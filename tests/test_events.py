"""Each sample event in events/ fed to its function's handler, on moto."""

from __future__ import annotations

import json

from conftest import REPO_ROOT

from mailpipe import aws
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


def test_prune_event(stack, owner: str) -> None:
    """The hourly schedule's event: a run over every user's mailboxes, its report returned."""
    function = stack.functions["PruneFunction"]
    event = json.loads((EVENTS / "prune.json").read_text())
    report = function.handler(event, LocalLambdaContext(function.name, function.timeout))
    assert report["complete"] is True
    assert report["mailboxes"] >= 6  # the test's own user's, at least
    inbox = stack.mail_store().require_mailbox(owner, "INBOX")
    assert inbox.prunemark == inbox.highestmodseq  # marked: its floor may move in 30 days
