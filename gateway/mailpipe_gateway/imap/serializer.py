"""The response side of the grammar: strings, lists, status responses, ENVELOPE and BODYSTRUCTURE.

Strings are bytes here: what the client receives. A string goes out quoted when it can (7-bit,
no CR, LF or NUL, not long) and as a literal otherwise; ``astring`` also uses a bare atom when
the string is one. ENVELOPE and BODYSTRUCTURE are rendered from the summary stored at delivery
(``mailpipe.mime.summary``), whose strings are the latin-1 decoding of the raw header bytes:
they are sent back as those bytes, 8-bit ones in literals, as Dovecot does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from mailpipe_gateway.imap import mutf7
from mailpipe_gateway.imap.ranges import ordered_set

QUOTED_MAX = 1024  # longer strings go out as literals: easier on clients than huge quoted lines

_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # 1*ASTRING-CHAR
_NOT_QUOTABLE = re.compile(rb"[\x00\r\n\x80-\xff]")
_NOT_QUOTABLE_UTF8 = re.compile(rb"[\x00\r\n]")
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f]")  # CR and LF would end the response line


class Atom(str):
    """A string written as it is: keywords, flags, FETCH item names. The caller vouches for it."""

    __slots__ = ()


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """``{n}`` CRLF data, or ``~{n}`` CRLF data (literal8, for BINARY) when ``binary``."""
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data


def string(data: bytes, *, utf8: bool = False) -> bytes:
    """A quoted string, or a literal when the octets cannot be quoted.

    ``utf8``: the client enabled UTF8=ACCEPT or IMAP4rev2, so valid UTF-8 may be quoted. NUL,
    which no literal may carry (only literal8), is sent as 0x80, as Dovecot does in headers.
    """
    quotable = len(data) <= QUOTED_MAX and not (_NOT_QUOTABLE_UTF8 if utf8 else _NOT_QUOTABLE).search(data)
    if quotable and utf8:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            quotable = False
    if quotable:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data.replace(b"\x00", b"\x80"))


def nstring(data: bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if data is None else string(data, utf8=utf8)


def astring(data: bytes, *, utf8: bool = False) -> bytes:
    """A bare atom when ``data`` is one (but never NIL, which a client could read as nil), else a string."""
    if _ASTRING_ATOM.fullmatch(data) and data.upper() != b"NIL":
        return data
    return string(data, utf8=utf8)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name: modified UTF-7 for IMAP4rev1 clients, UTF-8 once they enabled it."""
    return astring(name.encode("utf-8") if utf8 else mutf7.encode(name).encode("ascii"), utf8=utf8)


def serialize(value: Any) -> bytes:
    """A value in the response grammar: None is NIL, int a number, ``Atom`` as is, bytes a string
    (str too, as UTF-8 in a literal when not ASCII), and a list or tuple a parenthesized list."""
    if value is None:
        return b"NIL"
    if isinstance(value, Atom):
        return value.encode("ascii")
    if isinstance(value, bool):
        raise TypeError("IMAP has no booleans")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, bytes):
        return string(value)
    if isinstance(value, str):
        return string(value.encode("utf-8"))
    if isinstance(value, list | tuple):
        return b"(" + b" ".join(serialize(item) for item in value) + b")"
    raise TypeError(f"cannot serialize {type(value).__name__}")


# --- responses -----------------------------------------------------------------------------------


SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def flag_list(keywords: Iterable[str]) -> bytes:
    """The FLAGS response's list: the system flags, then the mailbox's keywords."""
    return serialize([Atom(f) for f in (*SYSTEM_FLAGS, *sorted(keywords))])


def permanent_flags(keywords: Iterable[str], *, read_only: bool) -> bytes:
    """PERMANENTFLAGS: every flag, and \\* (new keywords may be made), unless read-only."""
    return flag_list(keywords)[:-1] + b" \\*)" if not read_only else b"()"


def flags_changed(keywords: Iterable[str], *, read_only: bool) -> bytes:
    """FLAGS and PERMANENTFLAGS again, for a client whose mailbox just got a new keyword."""
    keywords = list(keywords)
    return (
        b"* FLAGS " + flag_list(keywords) + b"\r\n"
        b"* OK [PERMANENTFLAGS " + permanent_flags(keywords, read_only=read_only) + b"] Flags permitted\r\n"
    )


def _text(text: str) -> bytes:
    """Human-readable response text: control characters (which could end the line) become spaces."""
    return _NOT_TEXT.sub(" ", text).encode("utf-8")


def status_response(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``tag OK [code] text`` (``tag`` "*" for an untagged OK, NO, BAD, PREAUTH or BYE)."""
    head = f"{tag} {status} ".encode("ascii", "replace")
    if code:
        head += b"[" + _text(code) + b"] "
    return head + _text(text or status) + b"\r\n"


def untagged(*parts: bytes | str) -> bytes:
    """``* part part ...`` CRLF, the parts already rendered (str parts are atoms or numbers)."""
    return (
        b"* " + b" ".join(part.encode("ascii") if isinstance(part, str) else part for part in parts) + b"\r\n"
    )


def continuation(text: str = "") -> bytes:
    """A command continuation request: ``+ text``."""
    return b"+ " + _text(text) + b"\r\n"


def fetch_response(number: int, items: Iterable[tuple[str, bytes]]) -> bytes:
    """``* number FETCH (name value ...)`` from item names (``FetchItem.label()``) and rendered values."""
    return (
        b"* %d FETCH (" % number
        + b" ".join(name.encode("ascii") + b" " + value for name, value in items)
        + b")\r\n"
    )


# --- ENVELOPE and BODYSTRUCTURE from the stored summary -----------------------------------------


def _header(value: str | None) -> bytes:
    """A summary string (latin-1 decoded header bytes) as an nstring of the original bytes."""
    return b"NIL" if value is None else string(value.encode("latin-1"))


def _addresses(addresses: Sequence[dict[str, str | None]] | None) -> bytes:
    if not addresses:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(" + b" ".join(_header(address.get(key)) for key in ("name", "adl", "mailbox", "host")) + b")"
            for address in addresses
        )
        + b")"
    )


def envelope(summary: dict[str, Any]) -> bytes:
    """The ENVELOPE of a summary's ``"envelope"`` (RFC 9051 7.5.2)."""
    return (
        b"("
        + b" ".join(
            (
                _header(summary.get("date")),
                _header(summary.get("subject")),
                *(_addresses(summary.get(key)) for key in ("from", "sender", "reply_to", "to", "cc", "bcc")),
                _header(summary.get("in_reply_to")),
                _header(summary.get("message_id")),
            )
        )
        + b")"
    )


def _params(params: Sequence[Sequence[str]] | None) -> bytes:
    """body-fld-param: ("name" "value" ...) or NIL."""
    if not params:
        return b"NIL"
    return b"(" + b" ".join(_header(name) + b" " + _header(value) for name, value in params) + b")"


def _extension(part: dict[str, Any]) -> list[bytes]:
    """body-fld-dsp, body-fld-lang and body-fld-loc, which end both kinds of extension data."""
    disposition = part.get("disposition")
    language = part.get("language")
    return [
        b"NIL" if not disposition else b"(" + _header(disposition[0]) + b" " + _params(disposition[1]) + b")",
        b"NIL" if not language else b"(" + b" ".join(_header(tag) for tag in language) + b")",
        _header(part.get("location")),
    ]


def body_structure(part: dict[str, Any], *, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (``extensible``, with extension data as Dovecot sends it) or BODY of a
    summary's ``"bodystructure"`` part."""
    if part["type"] == "multipart":
        children = b"".join(body_structure(child, extensible=extensible) for child in part["parts"])
        fields = [_header(part["subtype"])]
        if extensible:
            fields += [_params(part.get("params")), *_extension(part)]
        return b"(" + children + b" " + b" ".join(fields) + b")"
    fields = [
        _header(part["type"]),
        _header(part["subtype"]),
        _params(part.get("params")),
        _header(part.get("id")),
        _header(part.get("description")),
        _header(part.get("encoding") or "7bit"),
        b"%d" % part["size"],
    ]
    if "envelope" in part and "bodystructure" in part:  # message/rfc822: the embedded message
        fields += [
            envelope(part["envelope"]),
            body_structure(part["bodystructure"], extensible=extensible),
            b"%d" % (part.get("lines") or 0),
        ]
    elif part["type"] == "text":
        fields.append(b"%d" % (part.get("lines") or 0))
    if extensible:
        fields += [_header(part.get("md5")), *_extension(part)]
    return b"(" + b" ".join(fields) + b")"


def esearch(
    tag: str,
    uid: bool,
    options: tuple[str, ...],
    values: list[int],
    partial: tuple[int, int] | None,
    modseq: int | None,
) -> bytes:
    """The ESEARCH response (RFC 4731; to a SORT, RFC 5267 3.2): only the parts asked for, nothing for
    an empty result but COUNT. ``values`` are in result order (ascending for SEARCH, sort order for
    SORT), so MIN and MAX are the first and the last, and ALL keeps the order (ranges only for
    ascending runs)."""
    parts = [f'(TAG "{tag}")']
    if uid:
        parts.append("UID")
    if values:
        if "MIN" in options:
            parts.append(f"MIN {values[0]}")
        if "MAX" in options:
            parts.append(f"MAX {values[-1]}")
        if "ALL" in options:
            parts.append(f"ALL {ordered_set(values)}")
    if "COUNT" in options:
        parts.append(f"COUNT {len(values)}")
    if partial is not None:
        low, high = partial
        chosen = values[low - 1 : high]
        parts.append(f"PARTIAL ({low}:{high} {ordered_set(chosen) if chosen else 'NIL'})")
    if modseq is not None and values:
        parts.append(f"MODSEQ {modseq}")
    return ("* ESEARCH " + " ".join(parts) + "\r\n").encode()
