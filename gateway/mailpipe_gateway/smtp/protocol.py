"""aiosmtpd's SMTP engine with the two things it lacks for us: enhanced codes and long lines."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from mailpipe_gateway.connection_limits import ConnectionLimiter
from mailpipe_gateway.smtp.dsn_params import (
    DsnSyntaxError,
    MailDsn,
    RcptDsn,
    mail_dsn,
    rcpt_dsn,
    split_params,
)
from mailpipe_gateway.smtp.status import with_enhanced_code

log = logging.getLogger(__name__)

REPLY_TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"

# RFC 5321 caps lines at 1000 octets, but real mail (machine-made HTML, bare-LF
# messages that arrive as one "line") exceeds it; a mail system must store such
# messages as they are rather than refuse them. Memory stays bounded by this and
# by the SIZE limit.
MAX_LINE_LENGTH = 1024 * 1024


class MailpipeSMTP(SMTP):
    line_length_limit = MAX_LINE_LENGTH

    def __init__(self, *args: Any, limiter: ConnectionLimiter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._greeting_reply = False
        self._limiter = limiter
        self._slot: str | None = None
        self._refused = False
        self.mail_dsn = MailDsn()
        self.rcpt_dsn = RcptDsn()

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
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._limiter is not None and self._slot is not None:
            self._limiter.release(self._slot)
            self._slot = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    async def smtp_HELO(self, hostname: str) -> None:
        await self._as_greeting_reply(super().smtp_HELO(hostname))

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._as_greeting_reply(super().smtp_EHLO(hostname))

    async def smtp_AUTH(self, arg: str) -> None:
        # Port 25 takes mail for our own users only, which needs no AUTH; authenticated
        # submission (and relaying) is a separate listener with its own rules.
        await self.push("502 5.5.1 Error: AUTH not available on this port")

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not _balanced_path(arg):
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        try:
            arg, params = split_params(arg) if arg else (arg, {})
            self.mail_dsn = mail_dsn(params)
        except DsnSyntaxError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not _balanced_path(arg):
            await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        try:
            arg, params = split_params(arg) if arg else (arg, {})
            # The handler's RCPT hook reads this for the recipient it accepts.
            self.rcpt_dsn = rcpt_dsn(params)
        except DsnSyntaxError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        await super().smtp_RCPT(arg)

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
        await super().push(text)


def _balanced_path(arg: str | None) -> bool:
    """aiosmtpd takes `<a@b` as `a@b`; a path with an opening bracket must close it (RFC 5321 4.1.2)."""
    if not arg:
        return True
    opened, closed = arg.find("<"), arg.find(">")
    if opened == -1 and closed == -1:
        return True
    return arg.count("<") == arg.count(">") == 1 and opened < closed
