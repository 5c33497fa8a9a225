"""A message's bytes as JMAP shows them (RFC 8621 4.1): header fields in the parsed forms
(header:NAME:asText, :asAddresses, ...), the body structure, textBody/htmlBody/attachments by the
RFC's algorithm (4.1.4), and body values. Parsing is Python's `email` package; part ids are IMAP
section numbers, so a part's blob id names the same part IMAP's BODY[1.2] does."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import functools
import quopri
import re
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

FORMS = ("asRaw", "asText", "asAddresses", "asGroupedAddresses", "asMessageIds", "asDate", "asURLs")
_ANGLE = re.compile(r"<([^>]*)>")
_WHITESPACE = re.compile(r"\s+")


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """(name, raw value) of each field of a header block, in order; the value is as it was in the
    message after the colon (folding kept, as asRaw wants)."""
    text = block.decode("utf-8", "surrogateescape")
    fields: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", text):
        if not line:
            continue
        if line[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value))
    return fields


def _unfolded(raw: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", raw)


def as_text(raw: str) -> str:
    value = email.policy.default.header_factory(
        "X-Text", _unfolded(raw).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    )
    return _WHITESPACE.sub(" ", str(value)).strip()


def as_grouped_addresses(raw: str) -> list[dict[str, Any]]:
    text = _unfolded(raw).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    groups = _address_groups(text) if len(text) <= MAX_KEPT_ADDRESS_HEADER else _parsed_groups(text)
    return [
        {"name": name, "addresses": [{"name": n, "email": e} for n, e in addresses]}
        for name, addresses in groups
    ]


_Groups = tuple[tuple[str | None, tuple[tuple[str | None, str], ...]], ...]
# The email package's header parser takes ~1 ms an address: a list view of 50 messages from the
# same few senders parses each sender once per warm process. Longer headers are parsed each time.
KEPT_ADDRESS_HEADERS = 4096
MAX_KEPT_ADDRESS_HEADER = 1000


def _parsed_groups(text: str) -> _Groups:
    try:
        header = email.policy.default.header_factory("To", text)
        groups = header.groups  # type: ignore[attr-defined]
    except Exception:  # the parser is lenient, but a header is input: never let it crash a call
        return ()
    return tuple(
        (
            group.display_name,
            tuple((a.display_name or None, a.addr_spec) for a in group.addresses if a.addr_spec),
        )
        for group in groups
    )


_address_groups = functools.lru_cache(maxsize=KEPT_ADDRESS_HEADERS)(_parsed_groups)


def as_addresses(raw: str) -> list[dict[str, Any]]:
    return [a for group in as_grouped_addresses(raw) for a in group["addresses"]]


def as_message_ids(raw: str) -> list[str] | None:
    found = [m.strip() for m in _ANGLE.findall(_unfolded(raw))]
    return found or None


def as_date(raw: str) -> str | None:
    try:
        parsed = email.utils.parsedate_to_datetime(_unfolded(raw).strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return utc_date(parsed)


def utc_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_urls(raw: str) -> list[str] | None:
    found = [u.strip() for u in _ANGLE.findall(_unfolded(raw))]
    return found or None


def header_form(fields: list[tuple[str, str]], name: str, form: str, all_: bool) -> Any:
    values = [raw for field, raw in fields if field.lower() == name.lower()]
    convert = {
        "asRaw": lambda raw: raw,
        "asText": as_text,
        "asAddresses": as_addresses,
        "asGroupedAddresses": as_grouped_addresses,
        "asMessageIds": as_message_ids,
        "asDate": as_date,
        "asURLs": as_urls,
    }[form]
    if all_:
        return [convert(v) for v in values]
    return convert(values[-1]) if values else None


def parse_header_property(prop: str) -> tuple[str, str, bool] | None:
    """header:NAME[:asFORM][:all] -> (name, form, all), or None if malformed."""
    parts = prop.split(":")
    if len(parts) < 2 or parts[0] != "header" or not parts[1]:
        return None
    name, rest = parts[1], parts[2:]
    all_ = bool(rest) and rest[-1] == "all"
    if all_:
        rest = rest[:-1]
    if len(rest) > 1:
        return None
    form = rest[0] if rest else "asRaw"
    return (name, form, all_) if form in FORMS else None


# The convenience properties (RFC 8621 4.1.2.3): name -> (header, form).
HEADER_PROPERTIES = {
    "messageId": ("Message-ID", "asMessageIds"),
    "inReplyTo": ("In-Reply-To", "asMessageIds"),
    "references": ("References", "asMessageIds"),
    "sender": ("Sender", "asAddresses"),
    "from": ("From", "asAddresses"),
    "to": ("To", "asAddresses"),
    "cc": ("Cc", "asAddresses"),
    "bcc": ("Bcc", "asAddresses"),
    "replyTo": ("Reply-To", "asAddresses"),
    "subject": ("Subject", "asText"),
    "sentAt": ("Date", "asDate"),
}


def header_property(fields: list[tuple[str, str]], prop: str) -> Any:
    """A convenience property; null when the message has no such header field."""
    name, form = HEADER_PROPERTIES[prop]
    if not any(field.lower() == name.lower() for field, _ in fields):
        return None
    return header_form(fields, name, form, False)


# -- bodies --------------------------------------------------------------------------------------


def parse_message(raw: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)  # type: ignore[return-value]


class Part:
    """One node of the body structure, with its part id (IMAP section number) for leaves."""

    def __init__(self, message: Message, part_id: str | None, raw_headers: list[tuple[str, str]]) -> None:
        self.message = message
        self.part_id = part_id
        self.headers = raw_headers
        self.type = message.get_content_type()
        self.sub_parts: list[Part] = []

    @property
    def is_multipart(self) -> bool:
        return self.type.startswith("multipart/")

    @property
    def name(self) -> str | None:
        try:
            return self.message.get_filename()
        except Exception:
            return None

    @property
    def disposition(self) -> str | None:
        return self.message.get_content_disposition()

    def content(self) -> bytes:
        """The decoded content (transfer encoding undone)."""
        if self.is_multipart:
            return b""
        if self.type == "message/rfc822" or self.message.is_multipart():
            payload = self.message.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else payload
            if isinstance(inner, Message):
                encoding = str(self.message.get("Content-Transfer-Encoding", ""))
                return _undo_encoding(inner.as_bytes(), encoding)
        try:
            return self.message.get_payload(decode=True) or b""
        except Exception:
            return b""

    def text(self) -> tuple[str, bool]:
        """The content as text, and whether decoding it met a problem (RFC 8621 isEncodingProblem)."""
        charset = self.message.get_content_charset() or "us-ascii"
        data = self.content()
        try:
            return data.decode(charset), False
        except (LookupError, UnicodeDecodeError):
            return data.decode("utf-8", "replace"), True


def _undo_encoding(data: bytes, encoding: str) -> bytes:
    """A message/rfc822 part sent base64- or QP-encoded (RFC 2046 forbids it; senders do it)."""
    encoding = encoding.strip().lower()
    try:
        if encoding == "base64":
            return base64.b64decode(b"".join(data.split()))
        if encoding == "quoted-printable":
            return quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return data
    return data


class SummaryPart:
    """A node of the stored summary's BODYSTRUCTURE with what body_lists and has_attachment read,
    so hasAttachment is answered from the index, as the parsed body would answer it."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.type = f"{node.get('type') or 'text'}/{node.get('subtype') or 'plain'}".lower()
        self.sub_parts = [SummaryPart(p) for p in node.get("parts") or []] if self.is_multipart else []
        disposition = node.get("disposition")
        self.disposition = str(disposition[0]).lower() if disposition else None
        params = dict((str(k).lower(), v) for k, v in (node.get("params") or []))
        disposition_params = (
            dict((str(k).lower(), v) for k, v in (disposition[1] or [])) if disposition else {}
        )
        self.name = disposition_params.get("filename") or params.get("name")

    @property
    def is_multipart(self) -> bool:
        return self.type.startswith("multipart/")


def summary_has_attachment(summary: dict[str, Any]) -> bool | None:
    """hasAttachment from a stored summary; None if the summary has no structure to tell."""
    node = summary.get("bodystructure")
    if not isinstance(node, dict):
        return None
    try:
        return has_attachment(body_lists(SummaryPart(node))[2])  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None


def structure(message: Message, part_id: str = "") -> Part:
    """The tree; the top-level part of a single-part message is "1", as in IMAP."""
    headers = [(k, str(v)) for k, v in message.raw_items()] if hasattr(message, "raw_items") else []
    if message.get_content_type().startswith("multipart/") and message.is_multipart():
        node = Part(message, None, headers)
        for index, child in enumerate(message.get_payload(), start=1):  # type: ignore[union-attr]
            node.sub_parts.append(structure(child, f"{part_id}.{index}" if part_id else str(index)))
        return node
    return Part(message, part_id or "1", headers)


def find_part(root: Part, part_id: str) -> Part | None:
    if root.part_id == part_id:
        return root
    for child in root.sub_parts:
        found = find_part(child, part_id)
        if found is not None:
            return found
    return None


def _inline_media(content_type: str) -> bool:
    return content_type.startswith(("image/", "audio/", "video/"))


def body_lists(root: Part) -> tuple[list[Part], list[Part], list[Part]]:
    """textBody, htmlBody, attachments by RFC 8621 4.1.4's parseStructure."""
    text: list[Part] = []
    html: list[Part] = []
    attachments: list[Part] = []
    parts = root.sub_parts if root.is_multipart else [root]
    kind = root.type.split("/")[1] if root.is_multipart else "mixed"
    _parse_structure(parts, kind, kind == "alternative", html, text, attachments)
    return text, html, attachments


def _parse_structure(
    parts: list[Part],
    multipart_type: str,
    in_alternative: bool,
    html_body: list[Part] | None,
    text_body: list[Part] | None,
    attachments: list[Part],
) -> None:
    text_length = len(text_body) if text_body is not None else -1
    html_length = len(html_body) if html_body is not None else -1
    for i, part in enumerate(parts):
        is_inline = (
            part.disposition != "attachment"
            and (part.type in ("text/plain", "text/html") or _inline_media(part.type))
            and (i == 0 or (multipart_type != "related" and (_inline_media(part.type) or not part.name)))
        )
        if part.is_multipart:
            sub_type = part.type.split("/")[1]
            _parse_structure(
                part.sub_parts,
                sub_type,
                in_alternative or sub_type == "alternative",
                html_body,
                text_body,
                attachments,
            )
        elif is_inline:
            if multipart_type == "alternative":
                if part.type == "text/plain" and text_body is not None:
                    text_body.append(part)
                elif part.type == "text/html" and html_body is not None:
                    html_body.append(part)
                else:
                    attachments.append(part)
                continue
            html_here, text_here = html_body, text_body
            if in_alternative:
                if part.type == "text/plain":
                    html_here = None
                if part.type == "text/html":
                    text_here = None
            if text_here is not None:
                text_here.append(part)
            if html_here is not None:
                html_here.append(part)
            if (text_here is None or html_here is None) and _inline_media(part.type):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_length == len(text_body) and html_length != len(html_body):
            text_body.extend(html_body[html_length:])
        if html_length == len(html_body) and text_length != len(text_body):
            html_body.extend(text_body[text_length:])


BODY_PART_PROPERTIES = (
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
)
DEFAULT_BODY_PART_PROPERTIES = (
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
)


def body_part(part: Part, blob_id: Any, wanted: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """An EmailBodyPart; `blob_id` maps a part id to its blob id."""
    message = part.message
    cid = message.get("Content-ID")
    language = message.get("Content-Language")
    charset = message.get_content_charset() if message.get_content_maintype() == "text" else None
    if message.get_content_maintype() == "text" and charset is None:
        charset = "us-ascii"
    values: dict[str, Any] = {
        "partId": part.part_id,
        "blobId": blob_id(part.part_id) if part.part_id else None,
        "size": len(part.content()) if not part.is_multipart else 0,
        "headers": [{"name": k, "value": v} for k, v in part.headers],
        "name": part.name,
        "type": part.type,
        "charset": charset,
        "disposition": part.disposition,
        "cid": (as_message_ids(str(cid)) or [None])[0] if cid else None,
        "language": [t.strip() for t in str(language).split(",")] if language else None,
        "location": str(message.get("Content-Location")) if message.get("Content-Location") else None,
    }
    if "subParts" in wanted:
        values["subParts"] = (
            [body_part(p, blob_id, wanted) for p in part.sub_parts] if part.is_multipart else None
        )
    for prop in wanted:
        spec = parse_header_property(prop) if prop.startswith("header:") else None
        if spec is not None:
            values[prop] = header_form(part.headers, *spec)
    return {name: values[name] for name in wanted if name in values}


def body_value(part: Part, max_bytes: int) -> dict[str, Any]:
    text, problem = part.text()
    truncated = False
    if max_bytes and len(text.encode()) > max_bytes:
        text = text.encode()[:max_bytes].decode("utf-8", "ignore")
        truncated = True
    return {"value": text, "isEncodingProblem": problem, "isTruncated": truncated}


def has_attachment(attachments: list[Part]) -> bool:
    return any(
        p.disposition == "attachment" or not p.type.startswith(("text/", "image/")) or p.name
        for p in attachments
    )


def received_at(internaldate: int) -> str:
    return utc_date(datetime.fromtimestamp(internaldate, UTC))
