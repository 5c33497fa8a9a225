"""The outbound delivery function's work: one queued message, its remote recipients, their fate.

For each recipient still pending: group by domain, pick the transport (transport map),
deliver, then act on each result: 2xx delivered (and a success DSN when NOTIFY asked
for one and the next server does not report itself), 5xx bounced, 4xx retried on the
schedule; past the schedule's end, bounced. Bounces and delay warnings are RFC 3464
DSNs from MAILER-DAEMON with a null reverse path, spooled to the (authenticated, so
local) sender through the normal inbound pipeline (reports.py). A retry goes back on the
queue with `not_before`, in SQS-delay hops of at most 15 minutes. A suppressed address (a hard
bounce or complaint reported by SES, suppression.py) is bounced without a transport call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.resolver

from mailpipe.outbound import smtp_client
from mailpipe.outbound.dsn import notify_allows, xtext_decode
from mailpipe.outbound.mta_sts import MtaSts
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.outbound.reports import DsnReporter
from mailpipe.outbound.schedule import RetrySchedule, sqs_delay_until
from mailpipe.outbound.state import DEFERRED, DELIVERED, FAILED, QueueEntry, QueueState, iso
from mailpipe.outbound.suppression import SuppressionList
from mailpipe.outbound.transport_map import TransportMap
from mailpipe.outbound.transports import Recipient, RecipientResult
from mailpipe.spool import Envelope, Spool

log = logging.getLogger(__name__)
_OUTCOMES = {DELIVERED: "delivered", DEFERRED: "deferred", FAILED: "bounced"}


@dataclass
class OutboundConfig:
    hostname: str  # HELO name and Reporting-MTA
    transports: TransportMap = field(default_factory=TransportMap)
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    options: smtp_client.DeliveryOptions = field(default_factory=smtp_client.DeliveryOptions)
    resolver: dns.resolver.Resolver | None = None
    ses_client: Any = None
    # SES publishes bounces, complaints and delays of what it sends with this set (ses_events.py).
    ses_configuration_set: str | None = None
    # DKIM: the message as it leaves, signed (dkim_signing.MessageSigner.sign); None sends it as spooled.
    sign: Callable[[bytes], bytes] | None = None
    # MTA-STS (RFC 8461) for `mx` routes; None delivers as the TLS options say.
    mta_sts: MtaSts | None = None


class OutboundDelivery:
    def __init__(
        self,
        spool: Spool,
        state: QueueState,
        queue: OutboundQueue,
        config: OutboundConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        suppressions: SuppressionList | None = None,
    ) -> None:
        self._spool = spool
        self._state = state
        self._queue = queue
        self._config = config
        self._clock = clock
        self._reports = DsnReporter(spool, config.hostname)
        self._suppressions = suppressions

    def process(self, message: OutboundMessage) -> None:
        now = self._clock()
        if message.not_before and datetime.fromisoformat(message.not_before) > now:
            # Not due yet: SQS held it as long as it may (15 minutes); another hop.
            delay = sqs_delay_until(datetime.fromisoformat(message.not_before), now)
            self._queue.put(message, delay.delay_seconds)
            return
        entries = self._state.entries(message.envelope_id)
        pending = [r for r in message.recipients if not (r.address in entries and entries[r.address].final)]
        if not pending:
            return  # a second copy of a message already dealt with
        for recipient in pending:
            if recipient.address not in entries:
                entries[recipient.address] = QueueEntry(
                    message.envelope_id,
                    recipient.address,
                    first_attempt=iso(now),
                    mail_from=message.mail_from,
                    message=replace(message, not_before=None).to_json(),
                )
        raw = self._spool.read(_spooled(message))
        # Signed here, where the message leaves for other servers, once for every transport: the
        # spooled bytes (and the copy a DSN returns) stay as the sender wrote them.
        outgoing = self._config.sign(raw) if self._config.sign else raw
        results = self._deliver(outgoing, message, pending)
        self._record(message, raw, pending, results, entries, now)

    @property
    def state(self) -> QueueState:
        return self._state

    def retry_now(self, envelope_id: str) -> int:
        """`mailpipe queue retry`: put the message's deferred recipients back on the queue, due now."""
        pending = [e for e in self._state.entries(envelope_id).values() if not e.final]
        if not pending:
            return 0
        message = OutboundMessage.from_json(pending[0].message)
        wanted = {e.recipient for e in pending}
        recipients = [r for r in message.recipients if r.address in wanted]
        self._queue.put(replace(message, recipients=recipients, not_before=None))
        return len(pending)

    def _deliver(
        self, raw: bytes, message: OutboundMessage, pending: list[OutboundRecipient]
    ) -> list[RecipientResult]:
        """One result per pending recipient, in `pending`'s order (transports go domain by domain).

        A suppressed address (suppression.py) fails at once, without a transport call.
        """
        by_domain: dict[str, list[tuple[int, Recipient]]] = {}
        results: list[RecipientResult | None] = [None] * len(pending)
        for index, r in enumerate(pending):
            suppressed = self._suppressions.get(r.address) if self._suppressions else None
            if suppressed is not None:
                results[index] = RecipientResult(r.address, suppressed.status)
                continue
            recipient = Recipient(r.address, tuple(r.notify) if r.notify else None, _decoded(r.orcpt))
            by_domain.setdefault(recipient.domain.lower(), []).append((index, recipient))
        options = replace(
            self._config.options, dsn=smtp_client.DsnParams(message.dsn_ret, _decoded(message.dsn_envid))
        )
        for domain, indexed in by_domain.items():
            recipients = [recipient for _index, recipient in indexed]
            route = self._config.transports.lookup(domain)
            if route.transport == "ses":
                from mailpipe.outbound import ses

                sent = ses.deliver_ses(
                    raw,
                    message.mail_from,
                    recipients,
                    client=self._config.ses_client,
                    configuration_set=self._config.ses_configuration_set,
                    tags={ses.ENVELOPE_TAG: message.envelope_id},
                )
            elif route.transport == "capture":
                from mailpipe.outbound.capture import deliver_capture

                sent = deliver_capture(
                    raw, message.mail_from, recipients, Path(str(route.nexthop)), message.envelope_id
                )
            else:
                sent = smtp_client.deliver(
                    raw,
                    message.mail_from,
                    recipients,
                    route,
                    resolver=self._config.resolver,
                    helo=self._config.hostname,
                    options=options,
                    mta_sts=self._config.mta_sts,
                )
            for (index, _recipient), result in zip(indexed, sent, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _record(
        self,
        message: OutboundMessage,
        raw: bytes,
        pending: list[OutboundRecipient],
        results: list[RecipientResult],
        entries: dict[str, QueueEntry],
        now: datetime,
    ) -> None:
        schedule = self._config.schedule
        notify = {r.address: ",".join(r.notify) if r.notify else None for r in pending}
        reports: dict[str, list[Any]] = {"failure": [], "delay": [], "success": []}
        retry: list[OutboundRecipient] = []
        next_times: list[datetime] = []
        for recipient, result in zip(pending, results, strict=True):
            entry = entries[recipient.address]
            entry.attempts += 1
            entry.last_reply = result.diagnostic
            first = datetime.fromisoformat(entry.first_attempt)
            later = None if not result.temporary else schedule.next_attempt(first, entry.attempts, now)
            if result.delivered:
                entry.status = DELIVERED
                if not result.remote_dsn and notify_allows(notify[recipient.address], "success"):
                    reports["success"].append(
                        result.dsn_status(original_recipient=_decoded(recipient.orcpt), action="relayed")
                    )
            elif later is None:
                entry.status = FAILED
                if notify_allows(notify[recipient.address], "failure"):
                    reports["failure"].append(
                        result.dsn_status(
                            original_recipient=_decoded(recipient.orcpt), action="failed", last_attempt=now
                        )
                    )
            else:
                entry.status, entry.next_attempt = DEFERRED, iso(later)
                retry.append(recipient)
                next_times.append(later)
                if schedule.should_warn(first, now, warned=entry.warned) and notify_allows(
                    notify[recipient.address], "delay"
                ):
                    entry.warned = True
                    reports["delay"].append(
                        result.dsn_status(
                            original_recipient=_decoded(recipient.orcpt),
                            action="delayed",
                            last_attempt=now,
                            will_retry_until=schedule.give_up_at(first),
                        )
                    )
            self._state.save(entry)
            # One line per attempt and recipient, as Postfix's smtp(8) logs them.
            log.info(
                "outbound %s id=%s rcpt=%s relay=%s attempt=%d reply=%s",
                _OUTCOMES[entry.status],
                message.envelope_id,
                recipient.address,
                result.remote_mta or "-",
                entry.attempts,
                json.dumps(result.status.reply, ensure_ascii=False),
            )
        for kind, statuses in reports.items():
            if statuses:
                self._reports.report(message, raw, kind, statuses, now)
        if retry:
            due = min(next_times)
            follow_up = replace(message, recipients=retry, not_before=iso(due))
            self._queue.put(follow_up, sqs_delay_until(due, now).delay_seconds)
        elif all(entry.final for entry in entries.values()):
            # Every recipient delivered or bounced (the bounces carry their copy): the spool
            # object has done its job. The inbound function stored local copies before it
            # handed the message over, so nothing else reads it.
            self._spool.discard(_spooled(message))


def _spooled(message: OutboundMessage) -> Envelope:
    return Envelope(
        id=message.envelope_id,
        mail_from=message.mail_from,
        recipients=(),
        s3_key=message.s3_key,
        size=message.size,
        received_at=message.received_at,
    )


def _decoded(xtext: str | None) -> str | None:
    """ENVID and ORCPT travel as the client sent them, in xtext; DSNs and the next hop want them decoded."""
    return xtext_decode(xtext) if xtext else None
