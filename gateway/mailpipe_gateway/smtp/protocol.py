"""aiosmtpd's SMTP engine with the two things it lacks for us: enhanced codes and long lines."""

from __future__ import annotations

from typing import AnyStr

from aiosmtpd.smtp import SMTP

from mailpipe_gateway.smtp.status import with_enhanced_code

# RFC 5321 caps lines at 1000 octets, but real mail (machine-made HTML, bare-LF
# messages that arrive as one "line") exceeds it; a mail system must store such
# messages as they are rather than refuse them. Memory stays bounded by this and
# by the SIZE limit.
MAX_LINE_LENGTH = 1024 * 1024


class MailpipeSMTP(SMTP):
    line_length_limit = MAX_LINE_LENGTH

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._greeting_reply = False

    async def smtp_HELO(self, hostname: str) -> None:
        await self._as_greeting_reply(super().smtp_HELO(hostname))

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._as_greeting_reply(super().smtp_EHLO(hostname))

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not _balanced_path(arg):
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not _balanced_path(arg):
            await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
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
