"""aiosmtpd's SMTP engine with what it lacks for us: enhanced codes, bounded reads, strict paths,
an error limit, and a 421 on timeout."""

from __future__ import annotations

import asyncio
import logging
from base64 import b64encode
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, _Missing

from mailpipe_gateway.auth.sasl import CANCEL, decode_response
from mailpipe_gateway.connection_limits import ConnectionLimiter
from mailpipe_gateway.smtp.budget import MemoryBudget
from mailpipe_gateway.smtp.dsn_params import (
    DsnSyntaxError,
    MailDsn,
    RcptDsn,
    mail_dsn,
    rcpt_dsn,
    split_params,
)
from mailpipe_gateway.smtp.envelope import MailpipeEnvelope
from mailpipe_gateway.smtp.reading import read_data, read_line
from mailpipe_gateway.smtp.session_log import SessionLog
from mailpipe_gateway.smtp.status import with_enhanced_code
from mailpipe_gateway.smtp.syntax import (
    bad_numeric_parameter,
    balanced_path,
    has_control_characters,
    is_utf8,
    printable,
)

log = logging.getLogger(__name__)

REPLY_TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"

# RFC 5321 caps lines at 1000 octets, but real mail (machine-made HTML, bare-LF
# messages that arrive as one "line") exceeds it; a mail system must store such
# messages as they are rather than refuse them. Memory stays bounded by this and
# by the SIZE limit (see reading.py).
MAX_LINE_LENGTH = 1024 * 1024
# How much the stream reader buffers before it hands over a piece of a line without a line
# end: command lines are far shorter, longer DATA lines are joined in reading.read_data.
READ_LIMIT = 32 * 1024
# asyncio's socket transport reads up to 256 KiB from every ready socket in a turn of the loop
# before any session runs: 1,000 connections sending at once made that 256 MB of buffers.
READ_CHUNK = 64 * 1024
# RFC 4954 4: an AUTH command line and the responses to challenges are at most 12288 octets.
MAX_AUTH_LINE = 12288 + 2
# Postfix's smtpd_hard_error_limit: a client making this many errors without delivering a
# message is a harvester or a broken robot.
DEFAULT_MAX_ERRORS = 20
# Replies that count against no one: closing notices, and our own failures (directory or spool
# unreachable, data budget spent) that a well-behaved client retries.
NOT_THE_CLIENTS_ERRORS = ("421", "451", "452 4.3.1")


class MailpipeSMTP(SMTP):
    # aiosmtpd gives this to its StreamReader as the buffer limit; our DATA reader enforces
    # MAX_LINE_LENGTH itself.
    line_length_limit = READ_LIMIT

    def __init__(
        self,
        *args: Any,
        limiter: ConnectionLimiter | None = None,
        max_errors: int = DEFAULT_MAX_ERRORS,
        data_budget: MemoryBudget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._greeting_reply = False
        self._limiter = limiter
        self._slot: str | None = None
        self._refused = False
        self._max_errors = max_errors
        self._errors = 0
        self._data_budget = data_budget or MemoryBudget()
        self.mail_dsn = MailDsn()
        self.rcpt_dsn = RcptDsn()
        self.session_log = SessionLog()
        self._session_logged = False
        self._data_reply = False

    def _create_envelope(self) -> MailpipeEnvelope:
        return MailpipeEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again after STARTTLS; only the first call opens a session.
        if self._limiter is not None and self._slot is None and self._original_transport is None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "unknown"
            if not self._limiter.acquire(ip):
                log.warning("refused connection from %s: too many connections", ip)
                self._refused = True
                transport.write(REPLY_TOO_MANY_CONNECTIONS)  # type: ignore[attr-defined]
                transport.close()
                return
            self._slot = ip
        if self._original_transport is None and hasattr(transport, "max_size"):
            transport.max_size = READ_CHUNK  # type: ignore[attr-defined]
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._emit_session_log()
        if self._limiter is not None and self._slot is not None:
            self._limiter.release(self._slot)
            self._slot = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        # RFC 5321 4.2.2 / 3.8: a server closing a session says so with a 421 first.
        self.close_session(f"421 4.4.2 {self.hostname} Error: timeout exceeded")
        super()._timeout_cb()

    def close_session(self, reply: str) -> None:
        """Answer `reply` and end the session, dropping whatever the client pipelined after it."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(f"{reply}\r\n".encode())  # type: ignore[attr-defined]
        # What is already buffered must not run as commands (a harvester pipelines its RCPTs).
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        transport.close()

    async def smtp_HELO(self, hostname: str) -> None:
        await self._as_greeting_reply(super().smtp_HELO(hostname))

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._as_greeting_reply(super().smtp_EHLO(hostname))

    async def smtp_AUTH(self, arg: str) -> None:
        # Port 25 takes mail for our own users only, which needs no AUTH; authenticated
        # submission (and relaying) is a separate listener with its own rules.
        await self.push("502 5.5.1 Error: AUTH not available on this port")

    async def smtp_MAIL(self, arg: str | None) -> None:
        if error := self._path_error(arg, "FROM:"):
            await self.push(f"501 5.5.4 {error}: MAIL FROM:<address>")
            return
        if arg and (name := bad_numeric_parameter(arg)):
            await self.push(f"501 5.5.4 {name} takes ASCII digits only")
            return
        try:
            arg, params = split_params(arg) if arg else (arg, {})
            self.mail_dsn = mail_dsn(params)
        except DsnSyntaxError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if error := self._path_error(arg, "TO:"):
            await self.push(f"501 5.5.4 {error}: RCPT TO:<address>")
            return
        try:
            arg, params = split_params(arg) if arg else (arg, {})
            # The handler's RCPT hook reads this for the recipient it accepts.
            self.rcpt_dsn = rcpt_dsn(params)
        except DsnSyntaxError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        await super().smtp_RCPT(arg)

    async def smtp_VRFY(self, arg: str | None) -> None:
        # aiosmtpd's VRFY echoes the argument (undecodable bytes made push() fail with a 451) and
        # lets parser crashes through; nothing here looks the address up anyway.
        if await self.check_auth_needed("VRFY"):
            return
        if not arg or not is_utf8(arg) or self._path_error(arg, ""):
            await self.push("501 5.5.4 Syntax: VRFY <address>")
            return
        await self.push("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery")

    def _path_error(self, arg: str | None, keyword: str) -> str | None:
        """Why the command's path is not one, or None (MAIL and RCPT without arguments are left to
        aiosmtpd, which answers them)."""
        if not arg:
            return None
        if has_control_characters(arg):
            return "Control characters are not allowed"
        if not balanced_path(arg):
            return "Syntax"
        path = self._strip_command_keyword(keyword, arg) if keyword else arg
        if path is None or not path:
            return None
        head = path[: path.find(">") + 1] if path.lstrip().startswith("<") else path.split()[0]
        if head != "<>" and self._getaddr(head)[0] is None:
            return "Syntax"
        return None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        try:
            return super()._getaddr(arg)
        except Exception:  # the email parser raises IndexError and others on `"`, `<`, `a@`
            return None, None

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's own DATA keeps a line without CRLF in memory however long it grows.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await read_data(
            self._reader, max_size=self.data_size_limit, max_line=MAX_LINE_LENGTH, budget=self._data_budget
        )
        if isinstance(content, str):
            self._set_post_data_state()
            await self.push(content)
            return
        self.envelope.content = self.envelope.original_content = content
        self.session_log.transaction(self.envelope.mail_from, self.envelope.rcpt_tos)
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self._set_post_data_state()
            self._data_budget.give_back(len(content))
        if isinstance(status, str) and status.startswith("250"):
            self._errors = 0  # like Postfix: the error limit is on errors without delivering mail
        self._data_reply = True
        try:
            await self.push("250 OK" if status is MISSING else status)
        finally:
            self._data_reply = False

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> _Missing | bytes:
        # aiosmtpd's reads the response with readline(): a line over the reader's limit raised
        # ValueError (a 451 and a logged traceback) and the rest of it was read as commands.
        raw = challenge.encode() if isinstance(challenge, str) else challenge
        await self.push(b"334 " + (b64encode(raw) if encode_to_b64 else raw))
        line = await read_line(self._reader, MAX_AUTH_LINE)
        if line is None:
            await self.push("500 5.5.6 Authentication exchange line is too long")
            return MISSING
        if line.strip() == CANCEL:
            await self.push("501 5.7.0 Auth aborted")
            return MISSING
        response = decode_response(line)
        if response is None:
            await self.push("501 5.5.2 Can't decode base64")
            return MISSING
        return response

    async def _as_greeting_reply(self, command) -> None:
        self._greeting_reply = True
        try:
            await command
        finally:
            self._greeting_reply = False

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if not (self._greeting_reply and text.startswith("250")):
            text = with_enhanced_code(text)
        await super().push(printable(text))
        self.session_log.reply(text, to_data=self._data_reply)
        if text[:1] in ("4", "5") and not text.startswith(NOT_THE_CLIENTS_ERRORS):
            self._count_error()

    def _emit_session_log(self) -> None:
        if self._session_logged or self.session is None:
            return
        self._session_logged = True
        session = self.session
        if self.session_log.mail_from is None and self.envelope is not None and self.envelope.mail_from:
            self.session_log.transaction(self.envelope.mail_from, self.envelope.rcpt_tos)
        peer = session.peer
        client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "unknown")
        tls = session.ssl is not None or bool(getattr(self, "implicit_tls", False))
        auth = session.auth_data if isinstance(session.auth_data, str) else None
        self.session_log.emit(client, session.host_name, tls, auth)

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= self._max_errors:
            peer = self.session.peer if self.session is not None else None
            log.warning("closing session from %s after %d errors", peer, self._errors)
            self.close_session(f"421 4.7.0 {self.hostname} Error: too many errors")
