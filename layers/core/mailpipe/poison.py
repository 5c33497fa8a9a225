"""Envelopes that can never be stored: returned to the sender, or reported to the postmaster.

Retrying cannot help an envelope that is malformed, names an unparseable recipient, would relay
for an unauthenticated sender, or whose message cannot be read as mail at all. Such a record
is answered like a delivery: a failure DSN (outbound/dsn.py) goes through the spool to the
sender when we may bounce to them (an authenticated local sender); otherwise (port 25 mail has
a forgeable return path, and bouncing it would be backscatter) the same report, with the whole
message, goes to the postmaster of a hosted domain. Nothing accepted with 250 ends in silence.

A report that cannot be made (no hosted domain, or the poison is itself a report to a
postmaster) is raised: the record is then retried and ends in the dead-letter queue, whose
alarm a person answers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from mailpipe.addresses import AddressError, parse_address
from mailpipe.directory import POSTMASTER, Directory
from mailpipe.outbound.dsn import NULL_SENDERS, RecipientStatus, build_dsn, should_send_dsn
from mailpipe.spool import Envelope, EnvelopeRecipient, Spool, new_queue_id, spool_key

log = logging.getLogger(__name__)


class PoisonEnvelope(Exception):
    """An envelope that no retry can store; `enhanced` is its RFC 3463 status (5.x.x)."""

    def __init__(self, text: str, enhanced: str = "5.3.0") -> None:
        super().__init__(text)
        self.text = text
        self.enhanced = enhanced


class PoisonReports:
    def __init__(self, spool: Spool, directory: Directory, hostname: str) -> None:
        self._spool = spool
        self._directory = directory
        self._hostname = hostname

    def return_envelope(self, envelope: Envelope, raw: bytes | None, reason: PoisonEnvelope) -> str:
        """Spool a failure DSN about `envelope` to its sender or a postmaster; returns its queue id."""
        return self.return_recipients(
            envelope, raw, {rcpt: reason for rcpt in envelope.rcpt_tos or ["unknown"]}
        )

    def return_recipients(
        self, envelope: Envelope, raw: bytes | None, failed: dict[str, PoisonEnvelope]
    ) -> str:
        """The same, for some of its recipients only (the others were delivered)."""
        reason = next(iter(failed.values()))
        authenticated = bool(envelope.auth_user)
        to_sender = should_send_dsn(envelope.mail_from, authenticated=authenticated)
        target = envelope.mail_from if to_sender else self._postmaster(list(failed))
        if envelope.mail_from.strip() in NULL_SENDERS and _is_postmaster(target, list(failed)):
            raise RuntimeError(f"{envelope.id}: a report to the postmaster cannot be stored: {reason.text}")
        now = datetime.now(UTC)
        statuses = [
            RecipientStatus(
                # A malformed recipient may hold line breaks: never let it add fields to the DSN.
                final_recipient=" ".join(str(rcpt).split()) or "unknown",
                status=poison.enhanced,
                diagnostic=poison.text,
                diagnostic_type="X-mailpipe",
                last_attempt=now,
            )
            for rcpt, poison in failed.items()
        ]
        report = build_dsn(
            raw or b"",
            target,
            statuses,
            self._hostname,
            # The sender asked for what they asked for; the postmaster needs all of it to act.
            ret=(envelope.dsn_ret or "HDRS") if to_sender else "FULL",
            envid=envelope.dsn_envid,
            kind="failure",
            arrival_date=_parsed(envelope.received_at),
            now=now,
            queue_id=envelope.id,
        )
        queue_id = self._put(target, report, now)
        log.warning("%s returned to %s as %s: %s", envelope.id, target, queue_id, reason.text)
        return queue_id

    def report_unreadable(self, body: str, reason: str, queue: str) -> str:
        """Spool a notice with an entry of `queue` that cannot be read at all to a postmaster."""
        target = self._postmaster([])
        now = datetime.now(UTC)
        notice = EmailMessage(policy=SMTP)
        notice["From"] = f"Mail Delivery System <MAILER-DAEMON@{self._hostname}>"
        notice["To"] = target
        notice["Subject"] = "Unreadable queue entry"
        notice["Date"] = format_datetime(now)
        notice["Message-ID"] = make_msgid(domain=self._hostname)
        notice["Auto-Submitted"] = "auto-replied"
        notice.set_content(
            f"This is the mail system at host {self._hostname}.\n\n"
            f"An entry of the {queue} queue could not be read ({reason}).\n"
            "If it stood for a message, that message is in the spool (spool/ in the mail bucket)\n"
            "under an id the entry may show. The entry follows.\n\n" + body[:100_000] + "\n"
        )
        queue_id = self._put(target, notice.as_bytes(), now)
        log.warning("unreadable queue entry reported to %s as %s: %s", target, queue_id, reason)
        return queue_id

    def _put(self, target: str, raw: bytes, now: datetime) -> str:
        queue_id = new_queue_id()
        envelope = Envelope(
            id=queue_id,
            mail_from="",
            recipients=(EnvelopeRecipient(target),),
            s3_key=spool_key(queue_id, now),
            size=len(raw),
            received_at=now.isoformat(),
            helo=self._hostname,
        )
        self._spool.put(envelope, raw)
        return queue_id

    def _postmaster(self, recipients: list[str]) -> str:
        """The postmaster of the first recipient's hosted domain, else of the first hosted domain,
        whose postmaster mail reaches someone (its admin); failing that of any hosted domain: the
        report then cannot be stored and ends in the dead-letter queue, whose alarm a person answers."""
        hosted = [domain.name for domain in self._directory.list_domains()]
        if not hosted:
            raise RuntimeError("no hosted domain, so no postmaster to report to")
        preferred = []
        for rcpt in recipients:
            try:
                preferred.append(parse_address(rcpt).domain)
            except AddressError:
                continue
        for domain in dict.fromkeys([d for d in preferred if d in hosted] + hosted):
            if self._directory.expand(f"{POSTMASTER}@{domain}"):
                return f"{POSTMASTER}@{domain}"
        return f"{POSTMASTER}@{hosted[0]}"


def _is_postmaster(target: str, recipients: list[str]) -> bool:
    return target in recipients or any(r.split("@")[0].lower() == POSTMASTER for r in recipients)


def _parsed(timestamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return None
