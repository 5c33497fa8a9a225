"""Byte offsets inside a message: where a header block ends and where boundary delimiters are.

The email package parses a message but does not say where each part starts and ends, and an
IMAP server needs exactly that to answer BODY[1.2] with a ranged GET. These scanners follow
RFC 2046 the way Dovecot's message parser does:

- a header block ends after its first empty line ("\\r\\n" or "\\n"); without one it runs to the
  end. A line that is not a header field does not end it.
- a delimiter line is "--" + boundary at the start of a line. Only the beginning of the line has
  to match (transport padding and trailing junk are allowed); when the boundaries of several
  enclosing multiparts match, the longest wins, and the innermost on a tie.
- "--" right after the boundary makes it a close delimiter.
- the line break before a delimiter line belongs to the delimiter, not to the part before it,
  except on the first line of a region (a body or an epilogue), where that line break is the
  header's empty line or the end of the previous delimiter line.
- a delimiter line of an enclosing multipart also ends a header block that has no empty line yet;
  the part's body is then empty.

Both CRLF and bare LF line ends are accepted, mixed as they come.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delimiter:
    """A boundary delimiter line found in the message."""

    level: int  # index, in the list of boundaries searched, of the multipart it belongs to
    start: int  # where the part before it ends: its leading line break, or the line itself
    next_line: int | None  # start of the line after it; None if it is the last line, without a line break
    close: bool  # a close delimiter ("--boundary--")


def find_delimiter(raw: bytes, pos: int, boundaries: list[bytes]) -> Delimiter | None:
    """The first delimiter line of any of ``boundaries`` at or after ``pos``, a line start."""
    if not boundaries:
        return None
    line = pos
    while True:
        if raw.startswith(b"--", line):
            found = _delimiter_at(raw, line, pos, boundaries)
            if found is not None:
                return found
        lf = raw.find(b"\n--", line)
        if lf < 0:
            return None
        line = lf + 1


def scan_header(raw: bytes, start: int, boundaries: list[bytes]) -> tuple[int, int, Delimiter | None]:
    """Where the header block beginning at ``start`` ends: ``(fields_end, body_start, delimiter)``.

    The header fields are ``raw[start:fields_end]``, the empty line follows, and the body starts at
    ``body_start``. When a delimiter line of one of ``boundaries`` comes first, the header stops
    before it: ``fields_end == body_start == delimiter.start`` (an empty body) and the delimiter is
    returned. With neither, the header runs to the end of ``raw``.
    """
    size = len(raw)
    line = start
    while line < size:
        if boundaries and raw.startswith(b"--", line):
            found = _delimiter_at(raw, line, start, boundaries)
            if found is not None:
                return found.start, found.start, found
        lf = raw.find(b"\n", line)
        if lf < 0:
            break
        if lf == line or (lf == line + 1 and raw[line] == 0x0D):
            return line, lf + 1, None
        line = lf + 1
    return size, size, None


def _delimiter_at(raw: bytes, line: int, region_start: int, boundaries: list[bytes]) -> Delimiter | None:
    """The delimiter on the line at ``line`` (which starts with "--"), if it is one."""
    lf = raw.find(b"\n", line)
    text = raw[line + 2 : lf if lf >= 0 else len(raw)]
    if text.endswith(b"\r"):
        text = text[:-1]
    key = text[:-2] if len(text) > 2 and text.endswith(b"--") else text
    best = -1
    for level in range(len(boundaries) - 1, -1, -1):
        boundary = boundaries[level]
        if key.startswith(boundary) and (best < 0 or len(boundary) > len(boundaries[best])):
            best = level
    if best < 0:
        return None
    start = line
    if line > region_start:  # the line break before the delimiter line is the delimiter's
        start -= 1
        if start > region_start and raw[start - 1] == 0x0D:
            start -= 1
    length = len(boundaries[best])
    return Delimiter(
        level=best,
        start=start,
        next_line=lf + 1 if lf >= 0 else None,
        close=text[length : length + 2] == b"--",
    )
