"""SMTP-style statuses for delivery failures, shared by every outbound step.

A failure found anywhere on the way out (a DNS lookup, a remote server's reply, the end of
the retry schedule) ends up in one of two places: a retry, or a DSN to the sender. Both need
the same three things: the basic reply code (4xx retries, 5xx bounces), the enhanced status
code (RFC 3463; the DSN's `Status:` field) and a text. Exceptions carry them so the delivery
code can catch one base class and decide, without knowing which step failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


@dataclass(frozen=True)
class SmtpStatus:
    """A reply code, an enhanced status code of the same class, and a human-readable text."""

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"not an SMTP reply code: {self.code}")
        if not _ENHANCED.match(self.enhanced):
            raise ValueError(f"not an enhanced status code: {self.enhanced!r}")
        if self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"reply code {self.code} and status {self.enhanced} disagree in class")

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def reply(self) -> str:
        """The status as an SMTP reply line: `550 5.1.2 text`."""
        return f"{self.code} {self.enhanced} {self.text}"

    def __str__(self) -> str:
        return self.reply


class DeliveryError(Exception):
    """A delivery step failed; `status` says whether to retry (4xx) or bounce (5xx) and why."""

    default_code: ClassVar[int] = 451
    default_enhanced: ClassVar[str] = "4.0.0"

    def __init__(self, text: str, *, code: int | None = None, enhanced: str | None = None) -> None:
        super().__init__(text)
        self.status = SmtpStatus(
            code if code is not None else self.default_code,
            enhanced if enhanced is not None else self.default_enhanced,
            text,
        )

    @property
    def code(self) -> int:
        return self.status.code

    @property
    def enhanced(self) -> str:
        return self.status.enhanced

    @property
    def text(self) -> str:
        return self.status.text

    @property
    def permanent(self) -> bool:
        return self.status.permanent

    def __str__(self) -> str:
        return self.status.reply


class TemporaryFailure(DeliveryError):
    """Try again later (the retry schedule decides when)."""

    default_code = 451
    default_enhanced = "4.0.0"


class PermanentFailure(DeliveryError):
    """Give up now and tell the sender (a failure DSN)."""

    default_code = 550
    default_enhanced = "5.0.0"
