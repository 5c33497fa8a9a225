"""Messages as line-based protocols (POP3, IMAP's RFC822.SIZE) see them: lines ending in CRLF."""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r?\n")


def crlf_size(raw: bytes) -> int:
    """The size of `raw` once every bare LF is a CRLF."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def crlf_lines(raw: bytes) -> list[bytes]:
    """The message's lines without their endings (a bare LF ends a line too)."""
    lines = _LINE_END.split(raw)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines
