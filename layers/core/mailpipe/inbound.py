"""Inbound delivery: a spooled message into the INBOX (or Junk) of every local recipient.

Failures are of two kinds. Transient ones (S3, SQS or DynamoDB unreachable, the spool object
not readable yet) raise, and the queue brings the envelope back later (redelivery.py). Permanent
ones (poison.py: a malformed envelope or recipient, relaying for nobody, a message that cannot
be read as mail) are answered at once with a bounce or a report to the postmaster, because no
retry would ever store them.

A local recipient is looked up again at delivery: a user disabled or deleted, or an alias left
with no one behind it, since the gateway said 250 is a permanent failure for that recipient only
(5.2.1 disabled, 5.1.1 no such user), answered by the same bounce path; the others are stored.

The spool object is deleted once nothing needs it any more: here when every recipient is
local and stored (or the envelope was returned), and by the outbound function when the
last remote recipient is delivered or bounced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from mailpipe.addresses import AddressError
from mailpipe.directory import Directory, Verdict
from mailpipe.mime import lines
from mailpipe.mime.summary import summarize
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.poison import PoisonEnvelope, PoisonReports
from mailpipe.quota import Quotas
from mailpipe.spool import Envelope, Spool
from mailpipe.store import MailStore
from mailpipe.store.headers import header_end
from mailpipe.thread_pools import LazyPool

log = logging.getLogger(__name__)

INBOX = "INBOX"
JUNK = "Junk"
# A message to many local recipients stores their copies this many at a time: each copy is an S3
# copy and a transaction (tens of ms on AWS), so a list of 100 recipients is stored in a few rounds
# rather than 100 requests one after another; few enough to bound what one delivery asks at once.
COPY_THREADS = 8
_copiers = LazyPool(COPY_THREADS, "inbound-copy")  # made at the first message with more than one local owner


class UnexpectedRelay(PoisonEnvelope):
    """An envelope with remote recipients that nobody authenticated: never relayed."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "5.7.1")


@dataclass
class DeliveryReport:
    envelope_id: str
    uids: dict[str, int] = field(default_factory=dict)
    remote: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # recipient -> enhanced status, bounced
    returned_as: str | None = None  # the queue id of the bounce or report, if any


class InboundDelivery:
    def __init__(
        self,
        spool: Spool,
        directory: Directory,
        store: MailStore,
        outbound: OutboundQueue | None = None,
        reports: PoisonReports | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._spool = spool
        self._directory = directory
        self._store = store
        self._outbound = outbound
        self._reports = reports
        self._quotas = quotas

    def handle(self, envelope: Envelope) -> DeliveryReport:
        """Deliver, or return a poison envelope; raises only for what a retry may fix."""
        try:
            return self.deliver(envelope)
        except PoisonEnvelope as poison:
            if self._reports is None:
                raise
            raw = self._readable_raw(envelope)
            report = DeliveryReport(envelope.id)
            report.returned_as = self._reports.return_envelope(envelope, raw, poison)
            self._spool.discard(envelope)
            return report

    def deliver(self, envelope: Envelope) -> DeliveryReport:
        """Store the message for every recipient; safe to call again for the same envelope.

        Raises PoisonEnvelope for what can never be stored, and anything else when any
        recipient's copy could not be stored yet, so the queue retries the whole envelope;
        copies already stored are recognised by the envelope id and not stored twice.
        Local copies are made before remote recipients are handed on: the outbound function
        deletes the spool object when it is done, and a retry here may still need it.
        Recipients nobody can receive for any more are answered last, once the copies are
        safe, so a retry does not bounce them twice.
        """
        try:
            local, remote = self.split_recipients(envelope)
            owners, failed = self.resolve(local)
        except AddressError as exc:
            raise PoisonEnvelope(f"malformed recipient: {exc}", "5.1.3") from exc
        if remote and not envelope.auth_user:
            # Port 25 refuses such recipients at RCPT; one here is a bug, never a reason to relay.
            raise UnexpectedRelay(f"{envelope.id}: remote recipients without an authenticated sender")
        report = DeliveryReport(envelope.id, remote=[r.address for r in remote])
        if owners:
            raw = self._spool.read(envelope)
            full = self._full_beyond_grace(envelope, owners, len(raw))
            self._store_copies(envelope, raw, [owner for owner in owners if owner not in full], report)
            for owner in full:
                failed[owner] = PoisonEnvelope("mailbox full (over quota)", "5.2.2")
        if failed:
            report.returned_as = self._bounce(envelope, failed)
            report.failed = {rcpt: poison.enhanced for rcpt, poison in failed.items()}
        if remote:
            self._hand_to_outbound(envelope, remote)
        else:
            self._spool.discard(envelope)
        return report

    def resolve(self, recipients: dict[str, Verdict]) -> tuple[list[str], dict[str, PoisonEnvelope]]:
        """The mailbox owners of the local recipients, and the recipients no one receives for."""
        owners: list[str] = []
        failed: dict[str, PoisonEnvelope] = {}
        for rcpt, verdict in recipients.items():
            found = self._directory.expand(rcpt) if verdict is Verdict.DELIVERABLE else []
            if verdict is Verdict.INVALID:
                # A malformed envelope is returned whole (poison.py), as before any copy is stored.
                raise PoisonEnvelope(f"malformed recipient: {rcpt}", "5.1.3")
            if verdict is Verdict.DISABLED:
                failed[rcpt] = PoisonEnvelope(f"{rcpt}: mailbox disabled", "5.2.1")
            elif not found:
                failed[rcpt] = PoisonEnvelope(f"{rcpt}: no such user here", "5.1.1")
            owners += [owner for owner in found if owner not in owners]
        return owners, failed

    def _bounce(self, envelope: Envelope, failed: dict[str, PoisonEnvelope]) -> str:
        if self._reports is None:
            raise PoisonEnvelope(
                "; ".join(p.text for p in failed.values()), next(iter(failed.values())).enhanced
            )
        return self._reports.return_recipients(envelope, self._readable_raw(envelope), failed)

    def _full_beyond_grace(self, envelope: Envelope, owners: list[str], size: int) -> list[str]:
        """The owners this message would take past their quota's grace (mailpipe/quota.py); a copy
        already stored by an earlier attempt at this envelope is kept, not counted again."""
        if self._quotas is None:
            return []
        full = []
        for owner in owners:
            if not self._quotas.state(owner).within_grace(size) and not self._store.has_delivery(
                owner, JUNK if envelope.junk else INBOX, envelope.id
            ):
                full.append(owner)
        return full

    def _store_copies(
        self, envelope: Envelope, raw: bytes, owners: list[str], report: DeliveryReport
    ) -> None:
        if not owners:
            return
        try:
            summary = summarize(raw)
        except Exception as exc:
            # summarize reads anything that looks like mail; what it cannot read never will be.
            raise PoisonEnvelope(f"the message cannot be read as mail: {exc}", "5.6.0") from exc
        internaldate = _epoch(envelope.received_at)
        header = raw[: header_end(raw, summary)]
        crlf_size = lines.crlf_size(raw)

        def store_copy(owner: str) -> int:
            return self._store.deliver(
                owner,
                JUNK if envelope.junk else INBOX,
                delivery_id=envelope.id,
                source_bucket=self._spool.bucket,
                source_key=envelope.s3_key,
                size=len(raw),
                summary=summary,
                header=header,
                internaldate=internaldate,
                crlf_size=crlf_size,
            )

        if len(owners) == 1:
            report.uids[owners[0]] = store_copy(owners[0])
            return
        # Every copy is tried even when one fails: the retry of the envelope then finds the others
        # stored (by the envelope id) and has less to do; the first failure is raised for it.
        futures = {owner: _copiers().submit(store_copy, owner) for owner in owners}
        first_failure: BaseException | None = None
        for owner, future in futures.items():
            try:
                report.uids[owner] = future.result()
            except Exception as exc:  # raised below, once every copy has been tried
                log.warning("%s: copy for %s not stored yet: %s", envelope.id, owner, exc)
                first_failure = first_failure or exc
        if first_failure is not None:
            raise first_failure

    def split_recipients(self, envelope: Envelope) -> tuple[dict[str, Verdict], list[OutboundRecipient]]:
        """Recipients in hosted domains with the directory's verdict now, and the others (with
        their DSN parameters)."""
        local: dict[str, Verdict] = {}
        remote: list[OutboundRecipient] = []
        for rcpt in envelope.recipients:
            verdict = self._directory.lookup(rcpt.address).verdict
            if verdict is Verdict.NOT_LOCAL:
                remote.append(rcpt)
            else:
                local[rcpt.address] = verdict
        return local, remote

    def _readable_raw(self, envelope: Envelope) -> bytes | None:
        """The message for the bounce, if the spool still has it (a poison envelope may not)."""
        try:
            return self._spool.read(envelope)
        except Exception:
            log.warning("%s: spool object unreadable for the bounce", envelope.id, exc_info=True)
            return None

    def _hand_to_outbound(self, envelope: Envelope, remote: list[OutboundRecipient]) -> None:
        if self._outbound is None:
            raise RuntimeError("remote recipients but no outbound queue configured")
        self._outbound.put(
            OutboundMessage(
                envelope_id=envelope.id,
                s3_key=envelope.s3_key,
                mail_from=envelope.mail_from,
                auth_user=envelope.auth_user,
                received_at=envelope.received_at,
                size=envelope.size,
                recipients=remote,
                dsn_ret=envelope.dsn_ret,
                dsn_envid=envelope.dsn_envid,
            )
        )


def _epoch(timestamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except (TypeError, ValueError):
        return None
