"""Inbound delivery: a spooled message into the INBOX of every local recipient."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from mailpipe.directory import Directory
from mailpipe.mime import lines
from mailpipe.mime.summary import summarize
from mailpipe.spool import Envelope, Spool
from mailpipe.store import MailStore

log = logging.getLogger(__name__)

INBOX = "INBOX"


@dataclass
class DeliveryReport:
    envelope_id: str
    uids: dict[str, int] = field(default_factory=dict)


class InboundDelivery:
    def __init__(self, spool: Spool, directory: Directory, store: MailStore) -> None:
        self._spool = spool
        self._directory = directory
        self._store = store

    def deliver(self, envelope: Envelope) -> DeliveryReport:
        """Store the message for every recipient; safe to call again for the same envelope.

        Raises when any recipient's copy could not be stored, so the queue retries the
        whole envelope; copies already stored are recognised by the envelope id and
        not stored twice.
        """
        raw = self._spool.read(envelope)
        summary = summarize(raw)
        internaldate = _epoch(envelope.received_at)
        report = DeliveryReport(envelope.id)
        for owner in self.mailbox_owners(envelope):
            report.uids[owner] = self._store.deliver(
                owner,
                INBOX,
                delivery_id=envelope.id,
                source_bucket=self._spool.bucket,
                source_key=envelope.s3_key,
                size=len(raw),
                summary=summary,
                internaldate=internaldate,
                crlf_size=lines.crlf_size(raw),
            )
        return report

    def mailbox_owners(self, envelope: Envelope) -> list[str]:
        owners: list[str] = []
        for rcpt in envelope.rcpt_tos:
            for owner in self._directory.expand(rcpt):
                if owner not in owners:
                    owners.append(owner)
        return owners


def _epoch(timestamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except (TypeError, ValueError):
        return None
