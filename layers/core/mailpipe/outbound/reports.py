"""Sending a DSN to the sender of a queued message: the one bounce path of every transport.

The delivery engine reports what its transports said at once; the SES event handler reports
what SES learnt later (a bounce after SES had accepted the message). Both go through here,
so a bounce looks the same whichever way the message left: an RFC 3464 report from
MAILER-DAEMON with a null reverse path, spooled to the (authenticated, so local) sender
through the normal inbound pipeline, and never to a sender nobody authenticated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from mailpipe.outbound.dsn import RecipientStatus, build_dsn, should_send_dsn, xtext_decode
from mailpipe.outbound.queue import OutboundMessage
from mailpipe.spool import Envelope, EnvelopeRecipient, Spool, new_queue_id, spool_key

log = logging.getLogger(__name__)


class DsnReporter:
    def __init__(self, spool: Spool, hostname: str) -> None:
        self._spool = spool
        self._hostname = hostname

    def report(
        self,
        message: OutboundMessage,
        original: bytes,
        kind: str,
        statuses: Sequence[RecipientStatus],
        now: datetime,
    ) -> str | None:
        """Spool a DSN of `kind` about `statuses` to the message's sender; its queue id, or None
        when the sender gets none (a null or unauthenticated sender)."""
        if not statuses or not should_send_dsn(message.mail_from, authenticated=bool(message.auth_user)):
            return None
        dsn = build_dsn(
            original,
            message.mail_from,
            statuses,
            self._hostname,
            ret=message.dsn_ret or "HDRS",
            envid=xtext_decode(message.dsn_envid) if message.dsn_envid else None,
            kind=kind,
            arrival_date=datetime.fromisoformat(message.received_at),
            now=now,
            queue_id=message.envelope_id,
        )
        queue_id = new_queue_id()
        envelope = Envelope(
            id=queue_id,
            mail_from="",
            recipients=(EnvelopeRecipient(message.mail_from),),
            s3_key=spool_key(queue_id, now),
            size=len(dsn),
            received_at=now.isoformat(),
            helo=self._hostname,
        )
        self._spool.put(envelope, dsn)
        log.info("%s DSN for %s queued as %s", kind, message.envelope_id, queue_id)
        return queue_id
