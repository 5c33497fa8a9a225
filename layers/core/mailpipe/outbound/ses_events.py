"""What SES learns after it accepted a message: bounces, complaints, delivery delays, rejects.

SES answers `SendEmail` at once (the `ses` transport records "delivered" then); what the
receiving server says later comes back as an event of the configuration set, published to
SNS and queued in SQS for the ses-events function. This module turns those events into what
the `mx` transport would have done with the same answer:

- a permanent (hard) bounce: the recipient's queue entry becomes `failed`, the sender gets
  the same RFC 3464 bounce as from `mx` (reports.py; the original's header section comes
  from the event, since the spool object was deleted once SES took the message), and the
  address is suppressed (suppression.py), so later mail to it fails at once;
- a complaint: the address is suppressed (the message was delivered: no bounce);
- a reject (SES refused the message after accepting it, e.g. a virus): a bounce, `5.7.1`,
  and no suppression: the address is not at fault;
- a transient bounce or a delivery delay: logged only. SES keeps retrying, and reports a
  hard bounce if it gives up.

An event finds its queue entry through the `mailpipe-envelope` message tag (ses.ENVELOPE_TAG)
and the recipient's address. An event without one (mail sent through the configuration set
by something else) still suppresses, but bounces to nobody: only mailpipe's queue knows
whether a sender was authenticated, and a bounce to anyone else would be backscatter.

Events may come twice (SNS and SQS deliver at least once): a recipient already `failed` gets
no second bounce. A bounce is spooled before the entry is marked, so a crash in between
sends the bounce again rather than never.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailpipe.outbound.dsn import RecipientStatus, notify_allows, xtext_decode
from mailpipe.outbound.queue import OutboundMessage, OutboundRecipient
from mailpipe.outbound.reports import DsnReporter
from mailpipe.outbound.ses import ENVELOPE_TAG
from mailpipe.outbound.state import FAILED, QueueEntry, QueueState
from mailpipe.outbound.suppression import BOUNCE, COMPLAINT, Suppression, SuppressionList
from mailpipe.outbound.transports import LOCAL_DIAGNOSTIC, ascii_address, one_line

log = logging.getLogger(__name__)

_STATUS = re.compile(r"^5\.\d{1,3}\.\d{1,3}$")
# A hard bounce without a DSN status of its own: SES's subtype says what happened.
_SUBTYPE_STATUS = {
    "NoEmail": "5.1.1",
    "Suppressed": "5.1.1",
    "OnAccountSuppressionList": "5.1.1",
}


class UnreadableEvent(ValueError):
    """A notification that is not an SES event: nothing can be done with it but log it."""


@dataclass(frozen=True)
class _Failure:
    address: str  # as SES wrote it
    status: str
    diagnostic: str
    diagnostic_type: str
    remote_mta: str | None


class SesEvents:
    def __init__(
        self,
        state: QueueState,
        suppressions: SuppressionList,
        reports: DsnReporter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._state = state
        self._suppressions = suppressions
        self._reports = reports
        self._clock = clock

    def handle_notification(self, body: str) -> None:
        """One SNS notification as SQS holds it (the SNS envelope; its `Message` is the SES event)."""
        self.handle(parse_notification(body))

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("eventType") or event.get("notificationType")
        mail = event.get("mail") or {}
        if kind == "Bounce":
            self._bounce(mail, event.get("bounce") or {})
        elif kind == "Complaint":
            self._complaint(mail, event.get("complaint") or {})
        elif kind == "Reject":
            self._reject(mail, event.get("reject") or {})
        elif kind == "DeliveryDelay":
            delay = event.get("deliveryDelay") or {}
            for recipient in delay.get("delayedRecipients", []):
                log.info(
                    "SES delays %s of %s (%s): %s; SES retries until %s",
                    recipient.get("emailAddress"),
                    _envelope_id(mail) or mail.get("messageId"),
                    delay.get("delayType"),
                    recipient.get("diagnosticCode", ""),
                    delay.get("expirationTime"),
                )
        else:
            log.info("SES %s event for %s ignored", kind, mail.get("messageId"))

    # -- events --------------------------------------------------------------------

    def _bounce(self, mail: dict[str, Any], bounce: dict[str, Any]) -> None:
        kind, subtype = bounce.get("bounceType"), bounce.get("bounceSubType", "")
        bounced = bounce.get("bouncedRecipients", [])
        if kind != "Permanent":
            for recipient in bounced:
                log.info(
                    "SES soft bounce (%s/%s) of %s for %s: %s",
                    kind,
                    subtype,
                    _envelope_id(mail) or mail.get("messageId"),
                    recipient.get("emailAddress"),
                    recipient.get("diagnosticCode", ""),
                )
            return
        since = bounce.get("timestamp") or mail.get("timestamp") or self._clock().isoformat()
        failures = []
        for recipient in bounced:
            address = str(recipient.get("emailAddress", ""))
            if not address:
                continue
            failure = _bounce_failure(recipient, subtype, bounce.get("remoteMtaIp"))
            self._suppressions.add(
                Suppression(address, BOUNCE, since, failure.diagnostic, _envelope_id(mail) or "")
            )
            log.info("SES hard bounce (%s) of %s: %s suppressed", subtype, mail.get("messageId"), address)
            failures.append(failure)
        self._fail(mail, failures, _timestamp(since))

    def _complaint(self, mail: dict[str, Any], complaint: dict[str, Any]) -> None:
        since = complaint.get("timestamp") or mail.get("timestamp") or self._clock().isoformat()
        feedback = complaint.get("complaintFeedbackType") or complaint.get("complaintSubType") or "complaint"
        for recipient in complaint.get("complainedRecipients", []):
            address = str(recipient.get("emailAddress", ""))
            if address:
                detail = f"complaint ({feedback}) about {mail.get('messageId')}"
                self._suppressions.add(
                    Suppression(address, COMPLAINT, since, detail, _envelope_id(mail) or "")
                )
                log.info("SES complaint (%s) from %s: suppressed", feedback, address)

    def _reject(self, mail: dict[str, Any], reject: dict[str, Any]) -> None:
        text = one_line(f"Amazon SES rejected the message: {reject.get('reason', 'no reason given')}")
        failures = [
            _Failure(str(address), "5.7.1", text, LOCAL_DIAGNOSTIC, None)
            for address in mail.get("destination", [])
        ]
        self._fail(mail, failures, self._clock())

    # -- the queue entries and the bounce --------------------------------------------

    def _fail(self, mail: dict[str, Any], failures: list[_Failure], when: datetime) -> None:
        """Mark the recipients' entries failed, after one bounce to the sender about them."""
        envelope_id = _envelope_id(mail)
        if not failures:
            return
        if envelope_id is None:
            log.warning("SES event for %s carries no %s tag: no bounce", mail.get("messageId"), ENVELOPE_TAG)
            return
        entries = self._state.entries(envelope_id)
        failed: list[tuple[QueueEntry, _Failure]] = []
        for failure in failures:
            entry = _entry_for(entries, failure.address)
            if entry is None:
                log.warning("SES event about %s of %s: not in the queue", failure.address, envelope_id)
            elif entry.status != FAILED:
                failed.append((entry, failure))
        if not failed:
            return
        # Each entry keeps the queued message it first came in (its NOTIFY and ORCPT among them).
        messages = [(entry, failure, _message(entry)) for entry, failure in failed]
        message = next((m for _, _, m in messages if m is not None), None)
        if message is None:
            log.warning("SES event for %s: the queue entry lacks its message, no bounce", envelope_id)
        else:
            statuses = []
            for entry, failure, queued in messages:
                recipient = _recipient(queued or message, entry.recipient)
                notify = ",".join(recipient.notify) if recipient and recipient.notify else None
                if not notify_allows(notify, "failure"):
                    continue
                statuses.append(
                    RecipientStatus(
                        final_recipient=entry.recipient,
                        status=failure.status,
                        action="failed",
                        original_recipient=xtext_decode(recipient.orcpt)
                        if recipient and recipient.orcpt
                        else None,
                        remote_mta=failure.remote_mta,
                        diagnostic=failure.diagnostic,
                        diagnostic_type=failure.diagnostic_type,
                        last_attempt=when,
                    )
                )
            self._reports.report(message, _header_section(mail), "failure", statuses, self._clock())
        for entry, failure in failed:
            entry.status = FAILED
            entry.last_reply = failure.diagnostic
            self._state.save(entry)


def parse_notification(body: str) -> dict[str, Any]:
    """The SES event inside an SNS notification (or a bare event, as raw message delivery sends)."""
    try:
        outer = json.loads(body)
        if isinstance(outer, dict) and "Message" in outer:
            if outer.get("Type", "Notification") != "Notification":
                raise UnreadableEvent(f"an SNS {outer.get('Type')} message, not a notification")
            outer = json.loads(outer["Message"])
    except (TypeError, json.JSONDecodeError) as exc:
        raise UnreadableEvent(f"not JSON: {exc}") from None
    if not isinstance(outer, dict) or not (outer.get("eventType") or outer.get("notificationType")):
        raise UnreadableEvent("no eventType: not an SES event")
    return outer


def _bounce_failure(recipient: dict[str, Any], subtype: str, remote_ip: str | None) -> _Failure:
    status = str(recipient.get("status") or "")
    if not _STATUS.match(status):
        status = _SUBTYPE_STATUS.get(subtype, "5.0.0")
    code = str(recipient.get("diagnosticCode") or "")
    kind, semicolon, text = code.partition(";")
    if semicolon and kind.strip().lower() == "smtp" and text.strip():
        return _Failure(recipient["emailAddress"], status, one_line(text), "smtp", remote_ip or None)
    said = f"Amazon SES reported a permanent bounce ({subtype or 'General'})"
    return _Failure(
        recipient["emailAddress"], status, one_line(f"550 {status} {said}"), LOCAL_DIAGNOSTIC, None
    )


def _envelope_id(mail: dict[str, Any]) -> str | None:
    values = (mail.get("tags") or {}).get(ENVELOPE_TAG) or []
    return str(values[0]) if values else None


def _entry_for(entries: dict[str, QueueEntry], address: str) -> QueueEntry | None:
    """The entry of the recipient SES names (it writes IDNA domains and may change the case)."""
    wanted = address.lower()
    for recipient, entry in entries.items():
        if wanted in (recipient.lower(), (ascii_address(recipient) or "").lower()):
            return entry
    return None


def _recipient(message: OutboundMessage, address: str) -> OutboundRecipient | None:
    return next((r for r in message.recipients if r.address == address), None)


def _message(entry: QueueEntry) -> OutboundMessage | None:
    try:
        return OutboundMessage.from_json(entry.message) if entry.message else None
    except (ValueError, TypeError, KeyError):
        return None


def _header_section(mail: dict[str, Any]) -> bytes:
    """The original's header section as SES reports it (`mail.headers`), for the bounce's third part."""
    lines = [f"{h.get('name')}: {h.get('value')}\r\n" for h in mail.get("headers") or [] if h.get("name")]
    return "".join(lines).encode("utf-8") + b"\r\n"


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
