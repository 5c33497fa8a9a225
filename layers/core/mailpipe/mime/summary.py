"""A message's IMAP summary, computed once at delivery and stored beside it.

``summarize(raw)`` parses the bytes once and returns what an IMAP server needs to answer
FETCH ENVELOPE, BODYSTRUCTURE, RFC822.SIZE and BODY[section] (RFC 3501 / RFC 9051 7.5.2) without
reading the message again, except for the section bytes themselves, which the byte offsets
locate for a ranged GET::

    {"size": len(raw),
     "envelope": {"date", "subject", "from", "sender", "reply_to", "to", "cc", "bcc",
                  "in_reply_to", "message_id"},
     "bodystructure": <part>,
     "header_start": 0, "body_start": ..., "end": len(raw),
     "email_id": "M...", "thread_id": "T...", "preview": "..."}   # see object_fields

A non-multipart part::

    {"type", "subtype", "params": [[name, value], ...], "id", "description", "encoding",
     "size", "lines", "md5": None, "disposition": [type, params] | None, "language": [...] | None,
     "location", "header_start", "body_start", "end"}

plus, for message/rfc822, ``"envelope"`` and ``"bodystructure"`` of the embedded message (whose
``header_start`` is the part's ``body_start``; section N.1 is its first part, or its body when it
is not multipart). ``lines`` is set for text/* and message/rfc822 and None otherwise. A multipart::

    {"type": "multipart", "subtype", "parts": [<part>, ...], "params", "disposition",
     "language", "location", "header_start", "body_start", "end"}

Conventions:

- Every string is the latin-1 decoding of the raw bytes (``s.encode("latin-1")`` gives them
  back exactly, see ``headers``); nothing is RFC 2047- or 2231-decoded.
- type, subtype, encoding, disposition type and parameter names are lower-cased (IMAP compares
  them without case); parameter values and all other strings keep their case.
- Envelope strings are the unfolded raw values, None when the header is absent; when a header
  occurs twice the last one counts, as in Dovecot. Sender and Reply-To default to From.
- Offsets index ``raw``: ``raw[header_start:body_start]`` is the part's header including the empty
  line (BODY[n.MIME], or BODY[HEADER] at the top), ``raw[body_start:end]`` its body (BODY[n],
  BODY[TEXT]). A part's ``size`` (BODYSTRUCTURE's body-fld-octets) is that of its body as IMAP
  sends it, with every bare LF as CRLF: ``end - body_start`` plus the body's bare LFs, as
  Dovecot counts and as RFC822.SIZE is. ``lines`` counts the body's LFs. The top-level ``size``
  is ``len(raw)``, the stored size.

MIME structure follows Dovecot's message parser (see ``offsets``): a missing Content-Type means
text/plain (message/rfc822 inside multipart/digest); Content-* headers count only in MIME
parts (a MIME-Version or Content-Type header, or inside a multipart); the first of each
Content-* header wins; text parts without a charset get ``charset=us-ascii``; a Content-Type
that is not type/subtype counts as missing (RFC 2045 5.2). A multipart without parts (no
boundary parameter, or its boundary never appears) gets one empty text/plain part, as Dovecot
reports it. Parts nested more than ``MAX_DEPTH`` deep, or beyond ``MAX_PARTS`` in all, are not
opened: such a multipart or message/rfc822 is described as application/octet-stream, and
further body parts of a multipart are left out (their bytes stay inside the parent's range).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailpipe.mime import headers
from mailpipe.mime.offsets import Delimiter, find_delimiter, scan_header
from mailpipe.mime.text_preview import preview_of
from mailpipe.mime.threading import id_of_root, root_of_fields

MAX_DEPTH = 50
MAX_PARTS = 500  # a part is about 300 bytes of JSON; DynamoDB items stop at 400 KB

ENVELOPE_FIELDS = {
    "date": "date",
    "subject": "subject",
    "from": "from",
    "sender": "sender",
    "reply-to": "reply_to",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "in-reply-to": "in_reply_to",
    "message-id": "message_id",
}
_ADDRESS_FIELDS = ("from", "sender", "reply_to", "to", "cc", "bcc")


def summarize(raw: bytes) -> dict[str, Any]:
    """JSON-serialisable summary of one RFC 5322 message's bytes."""
    try:
        raw = bytes(raw)
        root, fields, _ = _part(_Walk(raw), 0, 0, [], None)
        return _message(raw, root, envelope(fields), fields)
    except Exception:  # never fail a delivery over a summary: fall back to one text part
        return _fallback(raw if isinstance(raw, bytes) else b"")


def envelope(fields: list[tuple[str, str]]) -> dict[str, Any]:
    """The IMAP ENVELOPE of a message with these header fields."""
    values: dict[str, Any] = dict.fromkeys(ENVELOPE_FIELDS.values())
    for name, value in fields:
        key = ENVELOPE_FIELDS.get(name)
        if key is not None:
            values[key] = value
    for key in _ADDRESS_FIELDS:
        values[key] = headers.parse_addresses(values[key])
    for key in ("sender", "reply_to"):
        if values[key] is None and values["from"] is not None:
            values[key] = [dict(address) for address in values["from"]]
    return values


@dataclass
class _Walk:
    raw: bytes
    parts: int = 0


def _part(
    walk: _Walk, start: int, depth: int, boundaries: list[bytes], parent: str | None
) -> tuple[dict[str, Any], list[tuple[str, str]], Delimiter | None]:
    """The part whose header starts at ``start``, its header fields, and the delimiter ending it.

    ``parent`` is the parent multipart's subtype, or None for a message (the top level or the
    body of a message/rfc822 part).
    """
    raw = walk.raw
    walk.parts += 1
    fields_end, body_start, delimiter = scan_header(raw, start, boundaries)
    fields = headers.header_fields(raw, start, fields_end)
    mime = parent is not None or any(name in ("mime-version", "content-type") for name, _ in fields)
    content: dict[str, str] = {}
    for name, value in fields if mime else ():
        if name.startswith("content-"):
            content.setdefault(name, value)

    default = ("message", "rfc822", []) if parent == "digest" else ("text", "plain", [])
    main, sub, params = _parsed(content, "content-type", headers.content_type) or default
    container = main == "multipart" or (main, sub) == ("message", "rfc822")
    if container and (depth >= MAX_DEPTH or walk.parts >= MAX_PARTS):
        main, sub, container = "application", "octet-stream", False
    extension = {
        "disposition": _parsed(content, "content-disposition", headers.disposition),
        "language": _parsed(content, "content-language", headers.languages),
        "location": content.get("content-location"),
    }

    if main == "multipart":
        boundary = next((value for name, value in params if name == "boundary"), "")
        parts: list[dict[str, Any]] = []
        if delimiter is None and boundary:
            parts, end, delimiter = _multipart_body(walk, body_start, depth, boundaries, boundary, sub)
        else:  # nothing to look for: the body runs to the enclosing delimiter
            end, delimiter = _body_end(raw, body_start, boundaries, delimiter)
        node = {"type": main, "subtype": sub, "parts": parts or [_empty_part(body_start)], "params": params}
        return _at({**node, **extension}, start, body_start, end), fields, delimiter

    embedded: dict[str, Any] = {}
    if container:  # message/rfc822: the body is a message
        if delimiter is None:
            inner, inner_fields, delimiter = _part(walk, body_start, depth + 1, boundaries, None)
        else:
            inner, inner_fields = _empty_part(body_start), []
        embedded = {"envelope": envelope(inner_fields), "bodystructure": inner}
        end = inner["end"]
    else:
        end, delimiter = _body_end(raw, body_start, boundaries, delimiter)
    if main == "text" and not any(name == "charset" for name, _ in params):
        params = [*params, ["charset", "us-ascii"]]
    node = {
        "type": main,
        "subtype": sub,
        "params": params,
        "id": content.get("content-id"),
        "description": content.get("content-description"),
        "encoding": _parsed(content, "content-transfer-encoding", headers.transfer_encoding) or "7bit",
        "size": _crlf_size(raw, body_start, end),
        "lines": raw.count(b"\n", body_start, end) if main == "text" or container else None,
        **embedded,
        "md5": None,
        **extension,
    }
    return _at(node, start, body_start, end), fields, delimiter


def _multipart_body(
    walk: _Walk, body_start: int, depth: int, boundaries: list[bytes], boundary: str, subtype: str
) -> tuple[list[dict[str, Any]], int, Delimiter | None]:
    """The body parts of a multipart, where its body ends, and the enclosing delimiter ending it."""
    raw = walk.raw
    boundaries = [*boundaries, boundary.encode("latin-1")]
    level = len(boundaries) - 1
    parts: list[dict[str, Any]] = []
    delimiter = find_delimiter(raw, body_start, boundaries)
    while delimiter is not None and delimiter.level == level:
        if delimiter.next_line is None:  # the last line: nothing follows
            delimiter = None
        elif delimiter.close:  # the epilogue runs to an enclosing delimiter
            delimiter = find_delimiter(raw, delimiter.next_line, boundaries[:level])
        elif walk.parts >= MAX_PARTS:
            delimiter = find_delimiter(raw, delimiter.next_line, boundaries)
        else:
            part, _, delimiter = _part(walk, delimiter.next_line, depth + 1, boundaries, subtype)
            parts.append(part)
    end = delimiter.start if delimiter is not None else len(raw)
    return parts, end, delimiter


def _body_end(
    raw: bytes, body_start: int, boundaries: list[bytes], delimiter: Delimiter | None
) -> tuple[int, Delimiter | None]:
    """Where a leaf body starting at ``body_start`` ends, and the delimiter ending it."""
    if delimiter is None:
        delimiter = find_delimiter(raw, body_start, boundaries)
    return (delimiter.start if delimiter is not None else len(raw)), delimiter


def _crlf_size(raw: bytes, start: int, end: int) -> int:
    """The size of ``raw[start:end]`` as IMAP sends it: with every bare LF as CRLF."""
    return end - start + raw.count(b"\n", start, end) - raw.count(b"\r\n", start, end)


def _parsed(content: dict[str, str], name: str, parse: Callable[[str], Any]) -> Any:
    value = content.get(name)
    return None if value is None else parse(value)


def _at(node: dict[str, Any], header_start: int, body_start: int, end: int) -> dict[str, Any]:
    node.update(header_start=header_start, body_start=body_start, end=end)
    return node


def _empty_part(pos: int) -> dict[str, Any]:
    """The zero-length text/plain part Dovecot reports for a multipart without parts."""
    return _text_part(pos, pos, pos)


def _text_part(header_start: int, body_start: int, end: int, lines: int = 0, size: int = 0) -> dict[str, Any]:
    node = {
        "type": "text",
        "subtype": "plain",
        "params": [["charset", "us-ascii"]],
        "id": None,
        "description": None,
        "encoding": "7bit",
        "size": size,
        "lines": lines,
        "md5": None,
        "disposition": None,
        "language": None,
        "location": None,
    }
    return _at(node, header_start, body_start, end)


def _message(
    raw: bytes, root: dict[str, Any], envelope_: dict[str, Any], fields: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "size": len(raw),
        "envelope": envelope_,
        "bodystructure": root,
        "header_start": root["header_start"],
        "body_start": root["body_start"],
        "end": root["end"],
        **object_fields(raw, root, fields),
    }


def object_fields(raw: bytes, root: dict[str, Any], fields: list[tuple[str, str]]) -> dict[str, str]:
    """What IMAP OBJECTID/PREVIEW and JMAP serve per message, computed with the summary so that
    they are served from memory: ``email_id``, ``thread_id`` and ``preview``.

    email_id is "M" and 24 base32 characters of the SHA-256 of the bytes: stable, the same for
    every copy and every recipient of the same bytes (RFC 8474 5.1 allows that: their content is
    identical, and it never changes).
    """
    digest = hashlib.sha256(raw).digest()[:15]
    try:
        text = preview_of(raw, root)
    except Exception:  # a preview is a nicety: never fail a summary over one
        text = ""
    return {
        "email_id": "M" + base64.b32encode(digest).decode("ascii").lower(),
        "thread_id": id_of_root(root_of_fields(fields, raw[: root["body_start"]])),
        "preview": text,
    }


def _fallback(raw: bytes) -> dict[str, Any]:
    """A minimal valid summary: the whole body as one text/plain part."""
    try:
        body_start = scan_header(raw, 0, [])[1]
    except Exception:
        body_start = 0
    root = _text_part(
        0, body_start, len(raw), raw.count(b"\n", body_start), _crlf_size(raw, body_start, len(raw))
    )
    try:
        fields = headers.header_fields(raw, 0, body_start)
    except Exception:
        fields = []
    return _message(raw, root, dict.fromkeys(ENVELOPE_FIELDS.values()), fields)
