"""The SMTP gateway's application: recipient checks at RCPT, the spool at end of DATA."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from mailpipe.directory import Verdict
from mailpipe.spool import Envelope, EnvelopeRecipient, Spool, new_queue_id, now_utc, spool_key
from mailpipe_gateway.recipient_check import DirectoryUnavailable, RecipientChecker
from mailpipe_gateway.smtp.authentication import InboundAuthentication
from mailpipe_gateway.smtp.dnsbl import Blocklists
from mailpipe_gateway.smtp.dsn_params import RcptDsn
from mailpipe_gateway.smtp.envelope import MailpipeEnvelope
from mailpipe_gateway.smtp.harvest import RejectionLimiter
from mailpipe_gateway.smtp.spam_filter import NO_FILTER, SpamCheck
from mailpipe_gateway.smtp.trace import MAX_RECEIVED_HEADERS, count_received, protocol_name, received_header

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: the minimum a server must accept

EXTRA_EHLO_KEYWORDS = ("PIPELINING", "ENHANCEDSTATUSCODES", "DSN")

REPLY_RCPT_OK = "250 2.1.5 OK"
REPLY_MAIL_OK = "250 2.1.0 OK"
REPLY_BAD_SENDER = "553 5.1.7 Bad sender address syntax"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
REPLY_LOOP = "554 5.4.6 Too many hops: mail loop detected"
REPLY_HARVEST = "450 4.7.1 Too many rejected recipients from your address, try again later"


def rcpt_reply(verdict: Verdict, address: str) -> str:
    return {
        Verdict.DELIVERABLE: REPLY_RCPT_OK,
        Verdict.UNKNOWN_USER: f"550 5.1.1 <{address}>: Recipient address rejected: User unknown",
        Verdict.DISABLED: f"550 5.2.1 <{address}>: Recipient address rejected: Mailbox disabled",
        Verdict.NOT_LOCAL: f"554 5.7.1 <{address}>: Relay access denied",
        Verdict.INVALID: f"553 5.1.3 <{address}>: Bad recipient address syntax",
        # Temporary (RFC 3463 4.2.2): the sender retries, and the user may make room meanwhile.
        Verdict.OVER_QUOTA: f"452 4.2.2 <{address}>: Mailbox full",
    }[verdict]


class InboundHandler:
    """Port 25: mail for the hosted domains, from anyone; no AUTH, no relaying."""

    offers_auth = False

    def __init__(
        self,
        spool: Spool,
        checker: RecipientChecker,
        *,
        hostname: str,
        executor: Executor | None = None,
        max_recipients: int = MAX_RECIPIENTS,
        rejections: RejectionLimiter | None = None,
        spam_filter: SpamCheck | None = None,
        blocklists: Blocklists | None = None,
        authentication: InboundAuthentication | None = None,
    ) -> None:
        self._spool = spool
        self._spam_filter = spam_filter or NO_FILTER
        self._blocklists = blocklists
        self._checker = checker
        self._hostname = hostname
        self._executor = executor
        self._max_recipients = max_recipients
        self._rejections = rejections or RejectionLimiter()
        self._authentication = authentication

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd offers AUTH after STARTTLS; port 25 takes no AUTH (see protocol.py).
        offered = [line for line in responses[:-1] if self.offers_auth or not line.startswith("250-AUTH")]
        # aiosmtpd ends the list with "250 HELP"; our keywords go before it.
        return offered + [f"250-{keyword}" for keyword in EXTRA_EHLO_KEYWORDS] + responses[-1:]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str, mail_options: list[str]
    ) -> str:
        if not _encodable(address):
            log.info("rejected MAIL FROM with undecodable bytes from %s", _peer(session))
            return REPLY_BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return REPLY_MAIL_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return REPLY_TOO_MANY_RECIPIENTS
        if not _encodable(address):
            return rcpt_reply(Verdict.INVALID, address.encode("utf-8", "replace").decode())
        if self._blocklists is not None and (listed := await self._blocklists.refusal(session)):
            return listed
        if self._rejections.blocked(_peer(session)):
            # Refused before the lookup: each guess would be a call of the validation function.
            log.warning("RCPT %s from %s: too many rejected recipients", address, _peer(session))
            return REPLY_HARVEST
        try:
            verdict = await self._checker.check(address)
        except DirectoryUnavailable as exc:
            log.warning("recipient check failed for %s from %s: %s", address, _peer(session), exc)
            return REPLY_TRY_LATER
        reply = self.rcpt_decision(verdict, address)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            dsn = getattr(server, "rcpt_dsn", None) or RcptDsn()
            _accepted(envelope).append(EnvelopeRecipient(address, dsn.notify, dsn.orcpt))
        else:
            if verdict is not Verdict.OVER_QUOTA:  # a full mailbox is no sign of address guessing
                self._rejections.rejected(_peer(session))
            log.info("rejected RCPT %s from %s: %s", address, _peer(session), verdict.value)
        return reply

    def rcpt_decision(self, verdict: Verdict, address: str) -> str:
        return rcpt_reply(verdict, address)

    async def prepare(self, body: bytes, session: Session, envelope: SMTPEnvelope) -> bytes | str:
        """The message to spool, or a reply refusing it; submission adds its own checks."""
        return body

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SMTPEnvelope) -> str:
        body: bytes = envelope.original_content or b""
        if count_received(body) > MAX_RECEIVED_HEADERS:
            log.warning(
                "mail loop from %s: more than %d Received headers", _peer(session), MAX_RECEIVED_HEADERS
            )
            return REPLY_LOOP
        prepared = await self.prepare(body, session, envelope)
        if isinstance(prepared, str):
            return prepared
        body = prepared
        queue_id = new_queue_id()
        junk = False
        # SPF/DKIM/DMARC/ARC; never for our own users' submissions (they logged in).
        if self._authentication is not None and not session.authenticated:
            decision = await self._authentication.decide(
                body,
                client_ip=_peer(session),
                helo=session.host_name or "",
                mail_from=envelope.mail_from or "",
                queue=queue_id,
            )
            if decision.reply is not None:
                return decision.reply
            body, junk = decision.message, decision.junk
        # The spam filter sees the message with our Authentication-Results, as rspamd's milter would.
        spam = await self._spam_filter.check(body, session, envelope, queue_id)
        if spam.reply:
            return spam.reply
        junk = junk or spam.junk
        when = now_utc()
        tls = session.ssl is not None or getattr(server, "implicit_tls", False)
        smtputf8 = "SMTPUTF8" in (opt.upper() for opt in envelope.mail_options)
        trace = received_header(
            helo=session.host_name or "unknown",
            client_ip=_peer(session),
            hostname=self._hostname,
            queue_id=queue_id,
            protocol=protocol_name(
                esmtp=session.extended_smtp, tls=tls, smtputf8=smtputf8, authenticated=session.authenticated
            ),
            recipients=envelope.rcpt_tos,
            when=when,
        )
        raw = b"".join((trace, spam.headers, body))  # one copy of a message of up to 40 MB, not two
        spooled = Envelope(
            id=queue_id,
            mail_from=envelope.mail_from or "",
            recipients=tuple(_accepted(envelope)),
            s3_key=spool_key(queue_id, when),
            size=len(raw),
            received_at=when.isoformat(),
            client_address=_peer(session),
            helo=session.host_name or "",
            tls=tls,
            auth_user=_auth_user(session),
            mail_options=list(envelope.mail_options),
            dsn_ret=getattr(server, "mail_dsn", None) and server.mail_dsn.ret,
            dsn_envid=getattr(server, "mail_dsn", None) and server.mail_dsn.envid,
            junk=junk,
        )
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._spool.put, spooled, raw)
        except Exception as exc:
            log.error("could not spool %s from %s: %s: %s", queue_id, _peer(session), type(exc).__name__, exc)
            return REPLY_TRY_LATER
        log.info(
            "queued %s from=<%s> rcpts=%d size=%d client=%s",
            queue_id,
            spooled.mail_from,
            len(spooled.rcpt_tos),
            spooled.size,
            spooled.client_address,
        )
        return f"250 2.0.0 Ok: queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Never show a client our internals; the log has the detail.
        log.exception("SMTP session error: %s", type(error).__name__)
        return "451 4.3.0 Internal error, please try again later"


def _encodable(address: str) -> bool:
    """False for addresses carrying bytes that were not UTF-8 (aiosmtpd keeps them as surrogates)."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _auth_user(session: Session) -> str | None:
    return session.auth_data if isinstance(session.auth_data, str) else None


def _accepted(envelope: SMTPEnvelope) -> list[EnvelopeRecipient]:
    """The recipients accepted so far, with their DSN parameters."""
    if not isinstance(envelope, MailpipeEnvelope):
        raise TypeError("the handler needs MailpipeSMTP's envelopes")
    return envelope.recipients


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")
