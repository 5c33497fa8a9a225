"""Inbound delivery: a spooled message into the INBOX of every local recipient."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from mailpipe.directory import Directory, Verdict
from mailpipe.mime import lines
from mailpipe.mime.summary import summarize
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.spool import Envelope, Spool
from mailpipe.store import MailStore
from mailpipe.store.headers import header_end

log = logging.getLogger(__name__)

INBOX = "INBOX"


class UnexpectedRelay(RuntimeError):
    """An envelope with remote recipients that nobody authenticated: never relayed."""


@dataclass
class DeliveryReport:
    envelope_id: str
    uids: dict[str, int] = field(default_factory=dict)
    remote: list[str] = field(default_factory=list)


class InboundDelivery:
    def __init__(
        self, spool: Spool, directory: Directory, store: MailStore, outbound: OutboundQueue | None = None
    ) -> None:
        self._spool = spool
        self._directory = directory
        self._store = store
        self._outbound = outbound

    def deliver(self, envelope: Envelope) -> DeliveryReport:
        """Store the message for every recipient; safe to call again for the same envelope.

        Raises when any recipient's copy could not be stored, so the queue retries the
        whole envelope; copies already stored are recognised by the envelope id and
        not stored twice.
        """
        local, remote = self.split_recipients(envelope)
        report = DeliveryReport(envelope.id, remote=[r.address for r in remote])
        if remote:
            self._hand_to_outbound(envelope, remote)
        if not local:
            return report
        raw = self._spool.read(envelope)
        summary = summarize(raw)
        internaldate = _epoch(envelope.received_at)
        for owner in self.mailbox_owners(local):
            report.uids[owner] = self._store.deliver(
                owner,
                INBOX,
                delivery_id=envelope.id,
                source_bucket=self._spool.bucket,
                source_key=envelope.s3_key,
                size=len(raw),
                summary=summary,
                header=raw[: header_end(raw, summary)],
                internaldate=internaldate,
                crlf_size=lines.crlf_size(raw),
            )
        return report

    def split_recipients(self, envelope: Envelope) -> tuple[list[str], list[OutboundRecipient]]:
        """Recipients in hosted domains, and the others (with their DSN parameters)."""
        local: list[str] = []
        remote: list[OutboundRecipient] = []
        for index, rcpt in enumerate(envelope.rcpt_tos):
            if self._directory.lookup(rcpt).verdict is Verdict.NOT_LOCAL:
                dsn = envelope.rcpt_dsn[index] if index < len(envelope.rcpt_dsn) else {}
                remote.append(OutboundRecipient(rcpt, dsn.get("notify"), dsn.get("orcpt")))
            else:
                local.append(rcpt)
        return local, remote

    def _hand_to_outbound(self, envelope: Envelope, remote: list[OutboundRecipient]) -> None:
        if not envelope.auth_user:
            # Port 25 refuses such recipients at RCPT; one here is a bug, never a reason to relay.
            raise UnexpectedRelay(f"{envelope.id}: remote recipients without an authenticated sender")
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

    def mailbox_owners(self, recipients: list[str]) -> list[str]:
        owners: list[str] = []
        for rcpt in recipients:
            for owner in self._directory.expand(rcpt):
                if owner not in owners:
                    owners.append(owner)
        return owners


def _epoch(timestamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except (TypeError, ValueError):
        return None
