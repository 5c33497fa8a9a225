"""FETCH for one message: the untagged ``* n FETCH (...)`` response (RFC 9051 6.4.5 and 7.5.2,
RFC 3516 BINARY, RFC 7162 MODSEQ).

The session decides which messages, whether UID and MODSEQ go along, and whether \\Seen gets
set; this module only renders. FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE,
BODY and MODSEQ come from the stored item and its summary; every section needs the message
bytes, which the caller loads only when ``needs_body`` says so.

Message data goes out as IMAP transmits a message: every bare LF as CRLF, as Dovecot does, so
that BODY[] is exactly RFC822.SIZE (the store's ``crlf_size``) octets long and partial offsets
count those octets. NUL, which a literal may not carry, is sent as 0x80 (Dovecot too); BINARY
sends decoded bytes unchanged, in a literal8 when they hold a NUL. Sections are always literals,
including empty ones, which no client misreads.

Sections follow RFC 9051 6.4.5 and Dovecot's reading of it (``find_part``): a section that does
not exist, or HEADER/TEXT of a part that is not message/rfc822, is an empty string. \\Recent is
in FLAGS when the session shows the message so (MailboxView.shown, store/recent.py).
"""

from __future__ import annotations

import binascii
import datetime
import functools
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from mailpipe.mime.offsets import scan_header
from mailpipe.mime.summary import summarize
from mailpipe.store import StoredMessage
from mailpipe.store.model import unpack_summary
from mailpipe_gateway.imap import object_items, serializer
from mailpipe_gateway.imap.commands import FetchAttr, FetchBinarySize, FetchItem, FetchSection, Section

_BODY_ATTRS = frozenset(("RFC822", "RFC822.HEADER", "RFC822.TEXT"))
_SUMMARY_ATTRS = frozenset(("ENVELOPE", "BODYSTRUCTURE", "BODY"))
_SEEN_ATTRS = frozenset(("RFC822", "RFC822.TEXT"))
_RFC822_SECTIONS = {  # the IMAP2 names of BODY[], BODY.PEEK[HEADER] and BODY[TEXT]
    "RFC822": Section(),
    "RFC822.HEADER": Section(text="HEADER"),
    "RFC822.TEXT": Section(text="TEXT"),
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_LINE = re.compile(rb"[^\n]*\n|[^\n]+")

SummaryOf = Callable[[], dict[str, Any]]  # the message's summary, computed when first asked for


class UnknownCTE(Exception):
    """BINARY of a part whose Content-Transfer-Encoding we cannot decode: the session answers
    ``NO [UNKNOWN-CTE]`` (RFC 3516 4.3)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unknown Content-Transfer-Encoding: {encoding}")
        self.encoding = encoding


def needs_body(items: tuple[FetchItem, ...], message: StoredMessage | None = None) -> bool:
    """Whether rendering ``items`` needs the message bytes (an S3 GET).

    Sections, BINARY and RFC822[.HEADER|.TEXT] always do. Give ``message`` too and this also says
    yes when ENVELOPE, BODYSTRUCTURE or BODY is asked of a message whose stored summary is
    incomplete (``too_large``): then the summary is computed from the bytes.
    """
    for item in items:
        if isinstance(item, FetchSection | FetchBinarySize) or item.name in _BODY_ATTRS:
            return True
    if message is not None and object_items.bytes_needed(items, message) is not None:
        return True  # EMAILID, THREADID or PREVIEW of a message stored before the summary had them
    return (
        message is not None
        and not has_summary(message)
        and any(isinstance(item, FetchAttr) and item.name in _SUMMARY_ATTRS for item in items)
    )


_HEADER_SECTIONS = frozenset(("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"))


def header_suffices(items: tuple[FetchItem, ...], message: StoredMessage) -> bool:
    """Whether the top-level header block is all of the message's bytes that rendering `items` needs.

    Message lists fetch BODY.PEEK[HEADER.FIELDS (...)] for every message: the header block kept
    in the index (MailStore.read_headers) then serves them instead of the body (issue 14). Only
    the top-level header: BODY[n.HEADER] of a message/rfc822 part is another message's header.
    The summary is looked at only when ENVELOPE, BODYSTRUCTURE or BODY is asked for (an incomplete
    one needs the whole body): unpacking it for every message of a folder would cost more than
    the rest of a header fetch.
    """
    for item in items:
        if isinstance(item, FetchSection):
            if item.binary or item.section.part or item.section.text not in _HEADER_SECTIONS:
                return False
        elif isinstance(item, FetchBinarySize) or (
            isinstance(item, FetchAttr) and item.name in _BODY_ATTRS - {"RFC822.HEADER"}
        ):
            return False
    if object_items.bytes_needed(items, message) == "body":
        return False
    needs_summary = any(isinstance(item, FetchAttr) and item.name in _SUMMARY_ATTRS for item in items)
    return not needs_summary or has_summary(message)


def bytes_needed(items: tuple[FetchItem, ...]) -> Callable[[StoredMessage], Literal["header", "body"] | None]:
    """What of a message's bytes rendering `items` needs, as a function of the message: its
    header block ("header", served from the index), its whole body ("body"), or nothing (None).

    The same answer as `needs_body` then `header_suffices` give for each message, with what
    depends on the items alone worked out once: a FETCH of a folder's envelopes asks it of every
    message, on the event loop."""
    if any(isinstance(item, FetchSection | FetchBinarySize) or item.name in _BODY_ATTRS for item in items):
        return lambda message: "header" if header_suffices(items, message) else "body"
    objects = any(isinstance(item, FetchAttr) and item.name in object_items.OBJECT_ATTRS for item in items)
    summaries = any(isinstance(item, FetchAttr) and item.name in _SUMMARY_ATTRS for item in items)

    def needed(message: StoredMessage) -> Literal["header", "body"] | None:
        from_objects = object_items.bytes_needed(items, message) if objects else None
        summarized = has_summary(message) if summaries else True
        if from_objects is None and summarized:
            return None
        return "header" if from_objects != "body" and summarized else "body"

    return needed


def sets_seen(items: tuple[FetchItem, ...]) -> bool:
    """Whether fetching ``items`` sets \\Seen (RFC 9051 6.4.5): BODY[...] and BINARY[...] without
    .PEEK, RFC822 and RFC822.TEXT. The session stores the flag and should then add FLAGS to the
    items so that the client learns of it in the same response."""
    return any(
        (isinstance(item, FetchSection) and not item.peek)
        or (isinstance(item, FetchAttr) and item.name in _SEEN_ATTRS)
        for item in items
    )


def has_summary(message: StoredMessage) -> bool:
    """Whether the stored summary is complete (not the ``too_large`` stand-in, not missing)."""
    return "bodystructure" in message.summary


def message_summary(message: StoredMessage, body: bytes | None) -> dict[str, Any]:
    """The stored summary, or one computed from ``body`` when the stored one is incomplete."""
    if has_summary(message):
        return message.summary
    if body is None:
        raise ValueError(f"UID {message.uid}: the summary is incomplete and the body was not given")
    return summarize(body)


def render_fetch(
    number: int,
    message: StoredMessage,
    items: tuple[FetchItem, ...],
    body: bytes | None,
    *,
    add_uid: bool,
    add_modseq: bool,
    utf8: bool = False,
) -> bytes:
    """The complete ``* number FETCH (...)`` CRLF response for ``items``, in the order asked.

    ``add_uid`` puts UID first (UID FETCH, RFC 9051 6.4.9); ``add_modseq`` adds MODSEQ at the end
    (CONDSTORE, RFC 7162 3.2.4). An item asked twice (BODY[1] and BODY.PEEK[1] too) is sent once.
    ``body`` is the raw message, needed when ``needs_body(items, message)``. ``utf8`` (the client
    enabled UTF8=ACCEPT or IMAP4rev2) changes nothing yet: 8-bit header values go out as literals
    in either mode, which both allow. Raises ``UnknownCTE`` for BINARY of an undecodable part.
    """
    out: list[tuple[str, bytes]] = []
    done: set[FetchItem] = set()
    cache: dict[str, Any] = {}

    def summary() -> dict[str, Any]:
        if "summary" not in cache:
            cache["summary"] = message_summary(message, body)
        return cache["summary"]

    def need_body() -> bytes:
        if body is None:
            raise ValueError(f"UID {message.uid}: the body is needed for this FETCH")
        return body

    if add_uid:
        out.append(("UID", b"%d" % message.uid))
        done.add(FetchAttr("UID"))
    for item in items:
        key = replace(item, peek=False) if isinstance(item, FetchSection) else item
        if key in done:
            continue
        done.add(key)
        if isinstance(item, FetchSection):
            if item.binary:
                data = _partial(binary_section(need_body(), summary, item.section.part), item.partial)
                out.append((item.label(), serializer.literal(data, binary=b"\x00" in data)))
            else:
                data = _partial(body_section(need_body(), summary, item.section), item.partial)
                out.append((item.label(), _literal(data)))
        elif isinstance(item, FetchBinarySize):
            out.append((item.label(), b"%d" % len(binary_section(need_body(), summary, item.part))))
        elif item.name in object_items.OBJECT_ATTRS:
            out.append((item.label(), object_items.render(item.name, message, summary, body)))
        else:
            out.append((item.label(), _attribute(item.name, message, summary, need_body)))
    if add_modseq and FetchAttr("MODSEQ") not in done:
        out.append(("MODSEQ", b"(%d)" % message.modseq))
    return serializer.fetch_response(number, out)


def _attribute(name: str, message: StoredMessage, summary: SummaryOf, body: Callable[[], bytes]) -> bytes:
    """The value of a fetch attribute without arguments."""
    if name == "FLAGS":
        # \Recent is never stored (APPEND and STORE drop it): the session adds it (view.shown).
        return b"(" + " ".join(message.flags).encode("utf-8") + b")"
    if name == "UID":
        return b"%d" % message.uid
    if name == "MODSEQ":
        return b"(%d)" % message.modseq
    if name == "INTERNALDATE":
        return internal_date(message.internaldate)
    if name == "RFC822.SIZE":
        # As BODY[] sends the message: with CRLF line ends (``crlf_size``), not the stored size.
        return b"%d" % (message.crlf_size or message.size)
    if name in _SUMMARY_ATTRS:
        if message.packed_summary and has_summary(message):
            return _from_stored_summary(name, message.packed_summary)
        return _from_summary(name, summary())
    if name in _RFC822_SECTIONS:
        return _literal(body_section(body(), summary, _RFC822_SECTIONS[name]))
    raise ValueError(f"unknown FETCH attribute {name}")


def _from_summary(name: str, summary: dict[str, Any]) -> bytes:
    if name == "ENVELOPE":
        return serializer.envelope(summary["envelope"])
    return serializer.body_structure(summary["bodystructure"], extensible=name == "BODYSTRUCTURE")


# ENVELOPE, BODYSTRUCTURE and BODY rendered from stored summaries, by the packed summary: a folder's
# envelopes are fetched again and again (every client that opens it, every session's resync), and
# rendering one costs ~15 us of Python (most of a FETCH of envelopes); ~0.5-2 KB each.
RENDERED_SUMMARIES = 4096


@functools.lru_cache(maxsize=RENDERED_SUMMARIES)
def _from_stored_summary(name: str, packed: bytes) -> bytes:
    return _from_summary(name, unpack_summary(packed))


def internal_date(epoch: int) -> bytes:
    """INTERNALDATE as RFC 9051 date-time, in UTC: ``"17-Jul-1996 09:44:25 +0000"`` (English month
    names whatever the locale, hence no strftime)."""
    t = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return f'"{t.day:02d}-{_MONTHS[t.month - 1]}-{t.year:04d} {t:%H:%M:%S} +0000"'.encode("ascii")


# --- sections ------------------------------------------------------------------------------------


def find_part(root: dict[str, Any], part: tuple[int, ...]) -> dict[str, Any] | None:
    """The summary node of section-part ``part`` (RFC 9051 6.4.5) under ``root`` (a summary's
    ``"bodystructure"``), or None when there is no such part.

    A number picks a part of a multipart. In a message that is not multipart (the top level, or
    the message inside a message/rfc822 part) the only number is 1, the message's body. After a
    message/rfc822 part the numbers continue inside the message it holds, so 2.1 is that
    message's first part. A leaf part has no subparts: 1.1 of a text part does not exist (Dovecot
    would serve part 1 itself).
    """
    node: dict[str, Any] | None = None
    scope: dict[str, Any] | None = root  # what the next number picks from
    for number in part:
        if scope is None:
            return None
        if scope["type"] == "multipart":
            parts = scope["parts"]
            node = parts[number - 1] if 1 <= number <= len(parts) else None
        else:
            node = scope if number == 1 else None
        if node is None:
            return None
        if "bodystructure" in node:
            scope = node["bodystructure"]
        else:
            scope = node if node["type"] == "multipart" else None
    return node


def body_section(body: bytes, summary: SummaryOf, section: Section) -> bytes:
    """The bytes of BODY[section], as sent (CRLF line ends), before any partial.

    ``summary`` is a callable giving the message's summary; it is called only for part numbers,
    since the top-level header is found by scanning, which spares recomputing a ``too_large``
    summary for BODY[HEADER].
    """
    if not section.part:
        start, body_start, end = 0, scan_header(body, 0, [])[1], len(body)
    else:
        node = find_part(summary()["bodystructure"], section.part)
        if node is None:
            return b""
        if section.text is None:
            return _crlf(body[node["body_start"] : node["end"]])
        if section.text == "MIME":
            return _crlf(body[node["header_start"] : node["body_start"]])
        if "bodystructure" not in node:  # HEADER and TEXT only exist for message/rfc822 parts
            return b""
        inner = node["bodystructure"]
        start, body_start, end = inner["header_start"], inner["body_start"], inner["end"]
    if section.text is None:
        return _crlf(body[start:end])
    if section.text == "TEXT":
        return _crlf(body[body_start:end])
    header = body[start:body_start]
    if section.text == "HEADER":
        return _crlf(header)
    return _crlf(filter_header(header, section.fields, keep=section.text == "HEADER.FIELDS"))


def filter_header(header: bytes, names: tuple[str, ...], *, keep: bool) -> bytes:
    """HEADER.FIELDS (``keep``) or HEADER.FIELDS.NOT of a header block: the fields named (or all
    others) in message order, each with its continuation lines, then the empty line, as Dovecot
    sends them. Names match without regard to case; a line that is not a field goes with .NOT."""
    wanted = {name.encode("latin-1", "replace").strip().lower() for name in names}
    out: list[bytes] = []
    include = False
    for line in _LINE.findall(header):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] not in (b" ", b"\t"):
            name = line.split(b":", 1)[0].rstrip(b" \t").lower() if b":" in line else None
            include = (name in wanted) == keep
        if include:
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    return b"".join(out) + b"\r\n"


def binary_section(body: bytes, summary: SummaryOf, part: tuple[int, ...]) -> bytes:
    """The bytes of BINARY[part]: the part's body with its Content-Transfer-Encoding undone.

    BINARY[] is the whole message as BODY[] sends it: a message has no transfer encoding of its
    own (Dovecot instead decodes every part and rewrites their headers). Multiparts and
    message/rfc822 parts are 7bit/8bit/binary by definition and come unchanged.
    """
    if not part:
        return _crlf(body)
    node = find_part(summary()["bodystructure"], part)
    if node is None:
        return b""
    return decode_transfer_encoding(body[node["body_start"] : node["end"]], node.get("encoding") or "7bit")


def decode_transfer_encoding(data: bytes, encoding: str) -> bytes:
    """``data`` with Content-Transfer-Encoding ``encoding`` (lower case) undone.

    Decoding is lenient, as mail needs: base64 ignores characters outside its alphabet and stops
    at padding; quoted-printable keeps malformed escapes. 7bit and 8bit text gets CRLF line ends
    like every other section; "binary" is left exactly as stored. Raises ``UnknownCTE``.
    """
    if encoding == "base64":
        return _base64(data)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(_crlf(data))
    if encoding in ("7bit", "8bit"):
        return _crlf(data)
    if encoding == "binary":
        return data
    raise UnknownCTE(encoding)


def _base64(data: bytes) -> bytes:
    data = _NOT_BASE64.sub(b"", data.split(b"=", 1)[0])
    if len(data) % 4 == 1:  # a lone sextet carries no whole octet
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _crlf(data: bytes) -> bytes:
    """Every bare LF as CRLF (IMAP's line ends); untouched when there is none, the common case."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    """``<origin.length>``: at most length octets from origin; empty when origin is past the end."""
    if partial is None:
        return data
    origin, length = partial
    return data[origin : origin + length]


def _literal(data: bytes) -> bytes:
    """Section data as a literal, NUL (which no literal may carry) as 0x80, keeping the length."""
    return serializer.literal(data.replace(b"\x00", b"\x80"))
