"""The header block of a raw message, read and edited without touching a byte we do not mean to.

Messages are stored byte for byte; the only edits allowed are prepending our own header and dropping
Authentication-Results fields that claim to be ours (RFC 8601 5: forged ones must not survive).
"""

from __future__ import annotations

import re
from email.utils import getaddresses

_FIELD_START = re.compile(rb"([!-9;-~]+)[ \t]*:")  # used with match() at a line start
_COMMENT = re.compile(r"\([^()]*\)")


def header_fields(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """[(name, raw field including its folded lines and line ends)], and the rest (blank line, body)."""
    # Fields as (name, start, end) offsets: joining folded lines one by one would be quadratic in
    # a field of 100,000 lines.
    spans: list[list[object]] = []
    position = 0
    while position < len(message):
        end = message.find(b"\n", position)
        end = len(message) if end < 0 else end + 1
        first = message[position : position + 1]
        if first in (b"\r", b"\n") and message[position:end].strip(b"\r\n") == b"":
            break
        if first in (b" ", b"\t") and spans:
            spans[-1][2] = end
        else:
            match = _FIELD_START.match(message, position, end)
            if not match:
                break  # not a header line: the header block is over (RFC 5322 2.1 has no place for it)
            spans.append([match.group(1), position, end])
        position = end
    fields = [(name, message[start:stop]) for name, start, stop in spans]  # type: ignore[misc]
    return fields, message[position:]


def field_value(raw: bytes) -> str:
    """A field's unfolded value as text (undecodable bytes replaced)."""
    _, _, value = raw.partition(b":")
    return re.sub(r"\r?\n(?=[ \t])", "", value.decode("utf-8", "replace")).strip()


def from_domains(fields: list[tuple[bytes, bytes]]) -> list[str]:
    """The domain of each address in each From: field (RFC 7489 6.6.1 wants exactly one)."""
    domains = []
    for name, raw in fields:
        if name.lower() != b"from":
            continue
        for _, address in getaddresses([field_value(raw)]):
            domains.append(address.rpartition("@")[2].strip().rstrip(".>").lower())
    return domains


def authserv_id(raw: bytes) -> str:
    """The authserv-id of an Authentication-Results field: the first token, comments dropped."""
    value = field_value(raw)
    previous = None
    while previous != value:  # nested comments, innermost first
        previous, value = value, _COMMENT.sub(" ", value)
    return value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""


def without_our_results(message: bytes, our_id: str) -> tuple[bytes, int]:
    """The message minus Authentication-Results fields that claim `our_id`, and how many went."""
    fields, rest = header_fields(message)
    kept = [
        raw
        for name, raw in fields
        if not (name.lower() == b"authentication-results" and authserv_id(raw) == our_id.lower())
    ]
    removed = len(fields) - len(kept)
    if not removed:
        return message, 0
    return b"".join(kept) + rest, removed
