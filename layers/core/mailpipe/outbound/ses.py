"""Deliver one message through Amazon SES (SESv2 `SendEmail` with raw content): the `ses` transport.

Why SES: Lambda functions cannot open port 25 to the world, so on AWS most mail leaves
through SES (or a smarthost). SES takes the message bytes as they are (`Content.Raw.Data`);
the envelope recipients go in `Destination.ToAddresses` (for raw content SES sends to these
and does not read the To/Cc headers, so Bcc works as in SMTP), at most 50 per call, so
larger lists are sent in several calls, each with its own SES message id.

The envelope sender is `FromEmailAddress`; its address or domain must be a verified SES
identity (in the SES sandbox the recipients too). SES uses its own MAIL FROM (amazonses.com
or the identity's custom MAIL FROM domain) and turns later bounces into notifications, so a
250 here means "SES accepted it", not "delivered": later bounces, complaints and delays
come back as events of the configuration set (`configuration_set`), which `ses_events`
feeds into the queue state. `tags` (SES message tags, e.g. the envelope id) travel with
every event SES publishes about the message, which is how an event finds its queue entry.
The null sender (a DSN of ours) has no `FromEmailAddress`: SES then takes the sender from
the From: header (MAILER-DAEMON@ our domain, which must be a verified domain identity).

Results name the SES endpoint's host as `remote_mta` (None when it could not be reached).
SES has no SMTPUTF8: an address whose local part is not ASCII fails with `553 5.6.7` without
a call, and a non-ASCII domain is sent in its IDNA (xn--) form, as SES asks.

Errors become statuses, as SMTP replies would:

- `MessageRejected` (content, sandbox, unverified sender): permanent `554 5.7.1`, or `552 5.3.4`
  when the text says the message is too long;
- `BadRequestException` / `InvalidParameterValue`: permanent `553 5.1.3` when one recipient was
  sent alone; with several, each is retried alone, so one address SES dislikes does not
  bounce the others;
- throttling (`TooManyRequestsException`, `Throttling`, `LimitExceededException`, the daily
  quota): temporary `451 4.4.5` (congestion);
- our account or configuration (`AccountSuspendedException`, `SendingPausedException`,
  `MailFromDomainNotVerifiedException`, `NotFoundException`): temporary `451 4.3.5`, to be
  fixed by the operator within the retry schedule rather than bounced;
- `ServiceUnavailable`, `InternalFailure`, any other or unknown error, and a network failure
  (botocore's own retries exhausted): temporary `451 4.3.0` / `451 4.4.1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from mailpipe.outbound.status import SmtpStatus
from mailpipe.outbound.transports import LOCAL_DIAGNOSTIC, Recipient, RecipientResult, ascii_address, one_line

SES_MAX_RECIPIENTS = 50
# The SES message tag that carries the envelope id into every event SES publishes (ses_events.py).
ENVELOPE_TAG = "mailpipe-envelope"

_REJECTED = ("MessageRejected",)
_INVALID = ("BadRequestException", "InvalidParameterValue", "InvalidParameterValueException")
_THROTTLED = ("TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException")
_OURS = (
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
    "ConfigurationSetDoesNotExistException",
    "AccessDeniedException",
)


def deliver_ses(
    message: bytes,
    mail_from: str,
    recipients: Sequence[Recipient],
    *,
    client: Any,
    configuration_set: str | None = None,
    tags: dict[str, str] | None = None,
) -> list[RecipientResult]:
    """Send `message` to `recipients` through an SESv2 `client`; one result per recipient, in order."""
    results: list[RecipientResult | None] = [None] * len(recipients)
    remote = urlparse(client.meta.endpoint_url).hostname
    sender = mail_from.strip().strip("<>")
    sender_wire = ascii_address(sender) if sender else ""
    extra: dict[str, Any] = {}
    if configuration_set:
        extra["ConfigurationSetName"] = configuration_set
    if tags:
        extra["EmailTags"] = [{"Name": name, "Value": value} for name, value in tags.items()]
    sendable: list[tuple[int, str]] = []
    for index, recipient in enumerate(recipients):
        wire = ascii_address(recipient.address)
        if sender_wire is None or wire is None:
            who = sender if sender_wire is None else recipient.address
            status = SmtpStatus(
                553, "5.6.7", one_line(f"Amazon SES cannot send to or from {who} (no SMTPUTF8)")
            )
            results[index] = RecipientResult(recipient.address, status, None, LOCAL_DIAGNOSTIC)
        else:
            sendable.append((index, wire))
    for start in range(0, len(sendable), SES_MAX_RECIPIENTS):
        batch = sendable[start : start + SES_MAX_RECIPIENTS]
        for index, status, reached in _send(client, message, sender_wire or "", batch, extra):
            where = remote if reached else None
            results[index] = RecipientResult(recipients[index].address, status, where, LOCAL_DIAGNOSTIC)
    return [result for result in results if result is not None]


def _send(
    client: Any, message: bytes, sender: str, batch: list[tuple[int, str]], extra: dict[str, Any]
) -> list[tuple[int, SmtpStatus, bool]]:
    """One SendEmail call; each recipient's status, and whether SES itself answered."""
    request: dict[str, Any] = {
        "Destination": {"ToAddresses": [wire for _index, wire in batch]},
        "Content": {"Raw": {"Data": message}},
        **extra,
    }
    if sender:
        request["FromEmailAddress"] = sender
    try:
        response = client.send_email(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, text = str(error.get("Code", "")), str(error.get("Message", ""))
        if code in _INVALID and len(batch) > 1:
            return [sent for one in batch for sent in _send(client, message, sender, [one], extra)]
        status = _error_status(code, text)
    except BotoCoreError as exc:
        status = SmtpStatus(451, "4.4.1", one_line(f"Amazon SES could not be reached: {exc}"))
        return [(index, status, False) for index, _wire in batch]
    else:
        text = f"Ok: accepted by Amazon SES as {response.get('MessageId', '(no message id)')}"
        status = SmtpStatus(250, "2.0.0", one_line(text))
    return [(index, status, True) for index, _wire in batch]


def _error_status(code: str, text: str) -> SmtpStatus:
    said = one_line(f"Amazon SES said: {code}: {text}")
    if code in _REJECTED:
        too_big = "length" in text.lower() or "too large" in text.lower()
        return SmtpStatus(552, "5.3.4", said) if too_big else SmtpStatus(554, "5.7.1", said)
    if code in _INVALID:
        return SmtpStatus(553, "5.1.3", said)
    if code in _THROTTLED:
        return SmtpStatus(451, "4.4.5", said)
    if code in _OURS:
        return SmtpStatus(451, "4.3.5", said)
    return SmtpStatus(451, "4.3.0", said)
