"""One log line per SMTP session, what an operator greps for (as Postfix's smtpd summary lines):

    smtp session client=203.0.113.9 helo=mx.remote.test tls=yes auth=- mail_from=<a@remote.test>
        rcpts=bob@example.test queued=1 rejected=0 result="250 2.0.0 Ok: queued as 01ABC"

`mail_from` and `rcpts` are those of the session's last transaction (accepted recipients only),
`queued` how many messages it queued, `rejected` how many commands got a 4xx/5xx, and `result`
the last answer that decided something: the reply to DATA, or the last refusal after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

QUEUED = "250 2.0.0 Ok: queued as"


@dataclass
class SessionLog:
    mail_from: str | None = None
    rcpts: list[str] = field(default_factory=list)
    queued: int = 0
    rejected: int = 0
    result: str = "-"

    def transaction(self, mail_from: str | None, rcpts: list[str]) -> None:
        """A transaction reached the end of DATA with this envelope."""
        self.mail_from, self.rcpts = mail_from, list(rcpts)

    def reply(self, text: str, *, to_data: bool = False) -> None:
        if to_data or text[:1] in ("4", "5"):
            self.result = text
        if text.startswith(QUEUED):
            self.queued += 1
        elif text[:1] in ("4", "5"):
            self.rejected += 1

    def emit(self, client: str, helo: str | None, tls: bool, auth: str | None) -> None:
        mail_from = "-" if self.mail_from is None else f"<{_word(self.mail_from, empty='')}>"
        log.info(
            "smtp session client=%s helo=%s tls=%s auth=%s mail_from=%s rcpts=%s queued=%d rejected=%d "
            "result=%s",
            client,
            _word(helo),
            "yes" if tls else "no",
            _word(auth),
            mail_from,
            ",".join(_word(rcpt) for rcpt in self.rcpts) or "-",
            self.queued,
            self.rejected,
            f'"{self.result}"' if self.result != "-" else "-",
        )


def _word(value: str | None, empty: str = "-") -> str:
    """A client-chosen value as one token: no spaces, no control characters, bounded."""
    if not value:
        return empty
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in value)[:255]
