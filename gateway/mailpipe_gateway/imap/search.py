"""SEARCH (RFC 9051 6.4.4, RFC 7162 MODSEQ, RFC 5182 ``$``): which messages match the criteria.

Most keys are answered from the stored item and its summary, without S3: flags, sets, dates,
sizes, MODSEQ, and FROM/TO/CC/BCC/SUBJECT/SENT* from the summary's ENVELOPE. HEADER, BODY and
TEXT need the message bytes; ``load_body`` is called at most once per message and only when a
key that needs them is reached (cheap keys are tried first, so ``SEEN BODY x`` reads only the
seen messages).

Text keys compare ``str.casefold()`` of both sides, after decoding: RFC 2047 words in headers
(8-bit header bytes as UTF-8, else Latin-1), Content-Transfer-Encoding and charset in bodies.
Like Dovecot (without full-text search), a text key is a plain substring test, and an empty
string matches every message that has the field. Address keys match ``name <mailbox@host>`` of
each address, as Dovecot writes them; they use the envelope, so only the last From (To, ...)
header of a message counts, which is the one its ENVELOPE shows. BODY looks into the text/*
parts and the headers of attached messages, not into other attachments.

RECENT, NEW and OLD test \\Recent, which the session adds to the messages it claimed as recent
(MailboxView.shown); an IMAP4rev2 session claims none (RFC 9051 dropped \\Recent).
"""

from __future__ import annotations

import binascii
import contextlib
import datetime
import email.utils
import re
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any

from mailpipe.mime import headers
from mailpipe.mime.offsets import scan_header
from mailpipe.store import StoredMessage
from mailpipe_gateway.imap.commands import (
    And,
    Contains,
    DateKey,
    HasFlag,
    HeaderContains,
    InSet,
    ModSeqKey,
    Not,
    ObjectIdKey,
    Or,
    SearchKey,
    SizeKey,
)
from mailpipe_gateway.imap.fetch import UnknownCTE, decode_transfer_encoding, message_summary
from mailpipe_gateway.imap.loading import BodyGone
from mailpipe_gateway.imap.object_items import object_id
from mailpipe_gateway.imap.ranges import contains, merged

CHARSETS = ("UTF-8", "US-ASCII")  # what BADCHARSET lists
BodyLoader = Callable[[StoredMessage], bytes]  # the raw message of a stored one (an S3 GET)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bB]|[qQ])\?([^?\s]*)\?=")
_FILLERS = (None, "", headers.MISSING_MAILBOX, headers.MISSING_DOMAIN, headers.SYNTAX_ERROR)
_ADDRESS_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc"}
# Labels mail software uses for the superset their senders really meant.
_CHARSET_SUPERSETS = {
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "iso-2022-jp": "iso2022_jp_2",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}


class BadCharset(Exception):
    """SEARCH CHARSET we do not support: ``NO [BADCHARSET (UTF-8 US-ASCII)]`` (RFC 9051 6.4.4)."""

    def __init__(self, charset: str) -> None:
        super().__init__(f"unsupported search charset: {charset}")
        self.charset = charset


def needs_body(criteria: SearchKey) -> bool:
    """Whether some message may need its bytes: HEADER, BODY or TEXT (a message whose stored
    summary is ``too_large`` needs them for the envelope keys too, which ``search`` handles)."""
    return _cost(criteria) == 2


def search(
    criteria: SearchKey,
    charset: str | None,
    messages: list[tuple[int, StoredMessage]],
    load_body: BodyLoader,
    *,
    largest_number: int,
    largest_uid: int,
    saved: list[int] | None = None,
) -> list[tuple[int, StoredMessage]]:
    """The ``(number, message)`` pairs of ``messages`` that match ``criteria``, in their order.

    ``charset`` is SEARCH's CHARSET (None: none given); search strings are UTF-8 for all three
    accepted values, US-ASCII being a subset. ``largest_number`` and ``largest_uid`` stand for
    ``*``; ``saved`` holds the UIDs of the saved result that ``$`` refers to (none: ``$`` is
    empty, RFC 5182 2.1). Raises ``BadCharset``. A message whose bytes ``load_body`` finds gone
    (``BodyGone``: expunged meanwhile) matches nothing, ``NOT`` included (imap/matching.py).
    """
    if charset is not None and charset.upper() not in CHARSETS:
        raise BadCharset(charset)
    context = _Context(largest_number, largest_uid, frozenset(saved or ()))
    return [
        (number, message)
        for number, message in messages
        if _matches(context, criteria, _Candidate(number, message, load_body))
    ]


def _matches(context: _Context, criteria: SearchKey, candidate: _Candidate) -> bool:
    try:
        return context.match(criteria, candidate)
    except BodyGone:
        return False


def _cost(key: SearchKey) -> int:
    """0: answered from the item; 1: from the summary; 2: needs the message bytes."""
    if isinstance(key, And):
        return max((_cost(k) for k in key.keys), default=0)
    if isinstance(key, Or):
        return max(_cost(key.left), _cost(key.right))
    if isinstance(key, Not):
        return _cost(key.key)
    if isinstance(key, HeaderContains) or (isinstance(key, Contains) and key.field in ("BODY", "TEXT")):
        return 2
    if isinstance(key, Contains | ObjectIdKey) or (isinstance(key, DateKey) and key.sent):
        return 1
    return 0


class _Candidate:
    """One message being tested; what it takes to answer a key is computed once, when first needed."""

    def __init__(self, number: int, message: StoredMessage, load_body: BodyLoader) -> None:
        self.number = number
        self.message = message
        self._load_body = load_body

    @cached_property
    def flags(self) -> frozenset[str]:
        return frozenset(flag.casefold() for flag in self.message.flags)

    @cached_property
    def body(self) -> bytes:
        return self._load_body(self.message)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return message_summary(self.message, None if "bodystructure" in self.message.summary else self.body)

    @cached_property
    def header_fields(self) -> list[tuple[str, str]]:
        """The top-level header's fields: lower-cased names, unfolded and decoded values."""
        return _decoded_fields(self.body, 0, scan_header(self.body, 0, [])[0])

    @cached_property
    def header_text(self) -> str:
        return "\n".join(f"{name}: {value}" for name, value in self.header_fields).casefold()

    @cached_property
    def part_header_text(self) -> str:
        """Every MIME part's own header fields (Content-Type, Content-Disposition, ...), case-folded:
        TEXT searches them too (RFC 9051 6.4.4: "the header (including MIME header fields)")."""
        fields: list[str] = []
        _collect_part_headers(self.body, self.summary["bodystructure"], fields, top=True)
        return "\n".join(fields).casefold()

    @cached_property
    def body_texts(self) -> list[str]:
        """The decoded text of each text part and attached message header, case-folded."""
        texts: list[str] = []
        _collect_texts(self.body, self.summary["bodystructure"], texts)
        return [text.casefold() for text in texts]


class _Context:
    """One search: evaluates the criteria tree against each candidate in turn."""

    def __init__(self, largest_number: int, largest_uid: int, saved: frozenset[int]) -> None:
        self.largest_number = largest_number
        self.largest_uid = largest_uid
        self.saved = saved
        # Per key of the criteria tree (by id: the tree lives as long as the search), worked out
        # for the first message and reused for the others.
        self._ranges: dict[int, list[tuple[int, int]]] = {}
        self._order: dict[int, list[SearchKey]] = {}
        self._needles: dict[bytes, str] = {}

    def match(self, key: SearchKey, m: _Candidate) -> bool:
        if isinstance(key, And):
            return all(self.match(k, m) for k in self._cheap_first(key, key.keys))
        if isinstance(key, Or):
            return any(self.match(k, m) for k in self._cheap_first(key, (key.left, key.right)))
        if isinstance(key, Not):
            return not self.match(key.key, m)
        if isinstance(key, InSet):
            return self._in_set(key, m)
        if isinstance(key, HasFlag):
            return (key.flag.casefold() in m.flags) == key.present
        if isinstance(key, SizeKey):
            size = m.message.crlf_size or m.message.size  # RFC822.SIZE
            return size > key.size if key.larger else size < key.size
        if isinstance(key, ModSeqKey):  # one MODSEQ per message: entry names make no difference
            return m.message.modseq >= key.mod_seq
        if isinstance(key, DateKey):
            day = _sent_date(m.summary["envelope"].get("date")) if key.sent else _utc_date(m.message)
            return day is not None and _compare(key.relation, day, key.date)
        if isinstance(key, HeaderContains):
            name, needle = headers.lower(key.name), self._needle(key.value)
            return any(field == name and needle in value.casefold() for field, value in m.header_fields)
        if isinstance(key, Contains):
            return self._contains(key.field, self._needle(key.value), m)
        if isinstance(key, ObjectIdKey):  # a THREADID not in the summary is read from the bytes
            return object_id(key.kind, m.message, lambda: m.body) == key.object_id
        raise TypeError(f"unknown search key {key!r}")

    def _cheap_first(self, key: SearchKey, keys: Iterable[SearchKey]) -> list[SearchKey]:
        """``keys`` with those that need no message bytes first (sorting is stable)."""
        order = self._order.get(id(key))
        if order is None:
            order = self._order[id(key)] = sorted(keys, key=_cost)
        return order

    def _in_set(self, key: InSet, m: _Candidate) -> bool:
        if key.sequence_set.saved:
            return m.message.uid in self.saved
        ranges = self._ranges.get(id(key))
        if ranges is None:
            ranges = merged(key.sequence_set.resolve(self.largest_uid if key.uid else self.largest_number))
            self._ranges[id(key)] = ranges
        return contains(ranges, m.message.uid if key.uid else m.number)

    def _needle(self, value: bytes) -> str:
        needle = self._needles.get(value)
        if needle is None:
            needle = self._needles[value] = value.decode("utf-8", "replace").casefold()
        return needle

    def _contains(self, field: str, needle: str, m: _Candidate) -> bool:
        if field == "BODY":
            return any(needle in text for text in m.body_texts)
        if field == "TEXT":
            return (
                needle in m.header_text
                or any(needle in text for text in m.body_texts)
                or needle in m.part_header_text
            )
        envelope = m.summary["envelope"]
        if field == "SUBJECT":
            subject = envelope.get("subject")
            return subject is not None and needle in decode_header_value(subject).casefold()
        if field in _ADDRESS_KEYS:
            addresses = envelope.get(_ADDRESS_KEYS[field])
            return addresses is not None and needle in _address_text(addresses).casefold()
        return False


def _compare(relation: str, day: datetime.date, date: datetime.date) -> bool:
    if relation == "BEFORE":
        return day < date
    if relation == "ON":
        return day == date
    return day >= date  # SINCE


def _utc_date(message: StoredMessage) -> datetime.date:
    """The day of INTERNALDATE in UTC, the zone FETCH INTERNALDATE shows it in."""
    return datetime.datetime.fromtimestamp(message.internaldate, datetime.UTC).date()


def _sent_date(value: str | None) -> datetime.date | None:
    """The day a Date header value names, in the sender's zone (the RFC ignores zones here, as
    Dovecot does by adding the offset back); None without a parseable date, which then matches
    no SENT* key (Dovecot: only NOT SENT* matches such a message)."""
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        return datetime.date(parsed[0], parsed[1], parsed[2]) if parsed else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _address_text(addresses: Iterable[dict[str, str | None]]) -> str:
    """An address list as Dovecot searches it: ``name <mailbox@host>``, comma-separated, with RFC
    2047 names decoded, 8-bit addresses (RFC 6532) read as UTF-8, and the summary's MISSING_*
    fillers left out."""
    out: list[str] = []
    for address in addresses:
        name, mailbox, host = address.get("name"), address.get("mailbox"), address.get("host")
        if host is None:  # group syntax: its start (mailbox is the group's name) or its end
            if mailbox:
                out.append(decode_header_value(mailbox) + ":")
            continue
        spec = _decode_raw("@".join(part for part in (mailbox, host) if part not in _FILLERS))
        text = decode_header_value(name) if name else ""
        if spec:
            text = f"{text} <{spec}>" if text else spec
        if text:
            out.append(text)
    return ", ".join(out)


# --- decoding ------------------------------------------------------------------------------------


def decode_header_value(value: str) -> str:
    """A header value (the latin-1 decoding of its raw bytes, as the summary keeps them) as text.

    RFC 2047 encoded words are decoded, leniently as mail needs (also inside words or quotes);
    whitespace between two encoded words goes, and adjacent words in one charset are decoded
    together, so a multibyte character split across them survives. Other 8-bit bytes are read
    as UTF-8 (RFC 6532), else as Latin-1; raw ISO-2022-JP as such.
    """
    out: list[str] = []
    pending_charset, pending = "", bytearray()
    pos = 0
    for word in _ENCODED_WORD.finditer(value):
        between = value[pos : word.start()]
        if not (pending and between.strip(" \t\r\n") == ""):
            if pending:
                out.append(_decode_text(bytes(pending), pending_charset))
                pending.clear()
            out.append(_decode_raw(between))
        charset = word.group(1).split("*", 1)[0].lower()  # RFC 2231 adds *language
        text = word.group(3).encode("latin-1")
        data = _b_decode(text) if word.group(2) in "bB" else _q_decode(text)
        if pending and charset != pending_charset:
            out.append(_decode_text(bytes(pending), pending_charset))
            pending.clear()
        pending_charset = charset
        pending += data
        pos = word.end()
    if pending:
        out.append(_decode_text(bytes(pending), pending_charset))
    out.append(_decode_raw(value[pos:]))
    return "".join(out)


def _b_decode(text: bytes) -> bytes:
    return decode_transfer_encoding(text, "base64")


def _q_decode(text: bytes) -> bytes:
    return binascii.a2b_qp(text, header=True)


def _decode_raw(text: str) -> str:
    data = text.encode("latin-1")
    if data.isascii() and b"\x1b" not in data:
        return text
    return _decode_text(data, "iso-2022-jp" if b"\x1b" in data else "utf-8")


def _decode_text(data: bytes, charset: str | None) -> str:
    """``data`` in ``charset``, else UTF-8, else Latin-1 (which never fails): a search must read
    mislabelled and unlabelled mail too."""
    for name in (charset, "utf-8"):
        if not name:
            continue
        name = name.strip().lower()
        try:  # bytes.decode refuses codecs that are no charsets (base64, rot13) with LookupError
            return data.decode(_CHARSET_SUPERSETS.get(name, name))
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("latin-1")


def _decoded_fields(raw: bytes, start: int, end: int) -> list[tuple[str, str]]:
    return [(name, decode_header_value(value)) for name, value in headers.header_fields(raw, start, end)]


def _collect_part_headers(raw: bytes, node: dict[str, Any], fields: list[str], *, top: bool = False) -> None:
    """The header fields of each MIME part below the top level (the top header is searched apart)."""
    if not top and node.get("header_start") is not None and node["body_start"] > node["header_start"]:
        fields += [
            f"{name}: {value}"
            for name, value in _decoded_fields(raw, node["header_start"], node["body_start"])
        ]
    for part in node.get("parts", ()):
        _collect_part_headers(raw, part, fields)
    if "bodystructure" in node:
        _collect_part_headers(raw, node["bodystructure"], fields)


def _collect_texts(raw: bytes, node: dict[str, Any], texts: list[str]) -> None:
    """Append the searchable text under summary ``node``: text/* parts decoded (transfer
    encoding, then charset) and the header of each attached message."""
    if node["type"] == "multipart":
        for part in node["parts"]:
            _collect_texts(raw, part, texts)
    elif "bodystructure" in node:  # message/rfc822: its header, then its parts
        inner = node["bodystructure"]
        fields = _decoded_fields(raw, inner["header_start"], inner["body_start"])
        texts.append("\n".join(f"{name}: {value}" for name, value in fields))
        _collect_texts(raw, inner, texts)
    elif node["type"] == "text":
        data = raw[node["body_start"] : node["end"]]
        with contextlib.suppress(UnknownCTE):  # an unknown encoding is searched as it is
            data = decode_transfer_encoding(data, node.get("encoding") or "7bit")
        charset = next((value for name, value in node.get("params") or () if name == "charset"), None)
        texts.append(_decode_text(data, charset))
