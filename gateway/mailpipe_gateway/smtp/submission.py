"""Submission (RFC 6409): users send mail, on 587 with STARTTLS and 465 with implicit TLS.

Differences from port 25: AUTH is required before MAIL (and offered only over TLS,
loopback in dev excepted); a user may only send as an address they own, in MAIL FROM
and in From:, Sender:, Resent-From: and Resent-Sender: (display names included, see
mailpipe/sender_fields.py, the rule JMAP shares); recipients anywhere are accepted (the
outbound queue delivers them); missing Date and Message-ID headers are added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from mailpipe.directory import Verdict
from mailpipe.message_ids import new_message_id
from mailpipe.mime.headers import header_fields
from mailpipe.mime.offsets import scan_header
from mailpipe.sender_fields import Unreadable, claimed_senders, may_send_as
from mailpipe.spool import now_utc
from mailpipe_gateway.auth.login import Logins, Throttled
from mailpipe_gateway.auth.sasl import Credentials, decode_response, plain_credentials
from mailpipe_gateway.smtp.handler import InboundHandler, rcpt_reply
from mailpipe_gateway.smtp.protocol import MailpipeSMTP

log = logging.getLogger(__name__)

# address -> every address that user may send as
OwnedAddresses = Callable[[str], Awaitable[set[str]]]

REPLY_NOT_OWNED = "553 5.7.1 Sender address is not owned by the authenticated user"
REPLY_THROTTLED = "454 4.7.0 Too many failed authentication attempts, try again later"
LOOPBACK = ("127.0.0.1", "::1")


class _Session(Session):
    """aiosmtpd 1.4's Session without its deprecated ``login_data`` property.

    aiosmtpd's own smtp_AUTH assigns ``login_data`` after every AUTH, and the property logs
    "Session.login_data is deprecated" each time (a log record, not a Python warning, so no
    warnings filter hides it). Nothing here reads it: the authenticated user is ``auth_data``,
    from our AuthResult. A plain attribute takes the assignment silently; aiosmtpd 2.0 drops
    both the property and the assignment, and then this class changes nothing.
    """

    login_data: Any = None


class SubmissionSMTP(MailpipeSMTP):
    def __init__(
        self,
        *args: Any,
        logins: Logins,
        plaintext_loopback: bool = False,
        implicit_tls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, auth_required=True, auth_require_tls=True, **kwargs)
        self._logins = logins
        self._plaintext_loopback = plaintext_loopback
        self.implicit_tls = implicit_tls

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.session is None:
            return
        peer = self.session.peer[0] if isinstance(self.session.peer, tuple) else ""
        if self.implicit_tls or (self._plaintext_loopback and peer in LOOPBACK):
            # 465 is TLS from the first byte; aiosmtpd only counts STARTTLS as TLS.
            self._auth_require_tls = False

    async def smtp_AUTH(self, arg: str) -> None:
        await SMTP.smtp_AUTH(self, arg)  # port 25 refuses AUTH; submission is where it belongs

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        # aiosmtpd's challenge_auth reads and decodes the response (and answers `*` itself).
        if len(args) == 1:
            response = await self.challenge_auth("")
            if not isinstance(response, bytes):
                return AuthResult(success=False, handled=True)
        else:
            response = decode_response(args[1])
        credentials = plain_credentials(response) if response is not None else None
        if credentials is None:
            await self.push("501 5.5.2 Malformed AUTH PLAIN response")
            return AuthResult(success=False, handled=True)
        return await self._verify(credentials)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        login = (
            decode_response(args[1])
            if len(args) > 1
            else await self.challenge_auth(self.AuthLoginUsernameChallenge)
        )
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._verify(Credentials.from_bytes(login, password))

    async def _verify(self, credentials: Credentials) -> AuthResult:
        assert self.session is not None
        peer = self.session.peer[0] if isinstance(self.session.peer, tuple) else "unknown"
        try:
            user = await self._logins.check(credentials, str(peer), "submission")
        except Throttled:
            return AuthResult(success=False, handled=False, message=REPLY_THROTTLED)
        if user is None:
            return AuthResult(
                success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
            )
        return AuthResult(success=True, auth_data=user.address)


class SubmissionHandler(InboundHandler):
    offers_auth = True

    def __init__(self, *args: Any, owned_addresses: OwnedAddresses, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owned_addresses = owned_addresses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SMTPEnvelope, address: str, mail_options: list[str]
    ) -> str:
        if not await self._owns(session, address):
            log.warning("%s may not send as <%s>", session.auth_data, address)
            return REPLY_NOT_OWNED
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    def rcpt_decision(self, verdict: Verdict, address: str) -> str:
        if verdict is Verdict.NOT_LOCAL:
            return "250 2.1.5 OK"  # relayed for an authenticated user: the outbound queue delivers it
        return rcpt_reply(verdict, address)

    async def prepare(self, body: bytes, session: Session, envelope: SMTPEnvelope) -> bytes | str:
        fields = _header_fields(body)
        if refusal := await self._sender_refusal(session, fields):
            return refusal
        added = b""
        if not fields.get("date"):
            added += b"Date: " + format_datetime(now_utc()).encode() + b"\r\n"
        if not fields.get("message-id"):
            domain = str(session.auth_data).rpartition("@")[2] or self._hostname
            added += b"Message-ID: " + new_message_id(domain).encode() + b"\r\n"
        return added + body

    async def _sender_refusal(self, session: Session, fields: dict[str, list[str]]) -> str | None:
        """Why the message may not go out with these sender fields, or None if it may."""
        try:
            claimed = claimed_senders(fields)
        except Unreadable as exc:
            return f"553 5.7.1 {exc}"
        for name, address in claimed:
            if not await self._owns(session, address):
                log.warning("%s may not send with %s: %s", session.auth_data, name, address)
                return (
                    f"553 5.7.1 {_title(name)}: shows <{address}>,"
                    " an address the authenticated user does not own"
                )
        return None

    async def _owns(self, session: Session, address: str) -> bool:
        user = session.auth_data
        if not isinstance(user, str) or not address:
            return False
        # Looked up once per session: MAIL FROM and From: of every message ask the same question.
        owned = getattr(session, "owned_addresses", None)
        if owned is None or session.auth_data != getattr(session, "owned_by", None):
            owned = await self._owned_addresses(user)
            session.owned_addresses, session.owned_by = owned, user
        return may_send_as(owned, address)


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _header_fields(message: bytes) -> dict[str, list[str]]:
    """The top-level header's fields by lower-cased name, read as the mail store reads them."""
    fields: dict[str, list[str]] = {}
    for name, value in header_fields(message, 0, scan_header(message, 0, [])[0]):
        # header_fields decodes latin-1 (lossless); an SMTPUTF8 From: is UTF-8.
        fields.setdefault(name, []).append(value.encode("latin-1").decode("utf-8", "replace"))
    return fields
