"""An Email object (RFC 8621 4.1) from what the store has: the index (flags, size, dates, summary),
the header block kept in the index, and, only for body properties, the body from S3."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailpipe.jmap import ids, parsed
from mailpipe.jmap.errors import invalid_arguments
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.keywords import keywords_of
from mailpipe.mime.preview import preview
from mailpipe.store import StoredMessage

METADATA = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt")
HEADER_PROPS = tuple(parsed.HEADER_PROPERTIES)
BODY_PROPS = (
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
    "hasAttachment",
    "preview",
)
PROPERTIES = (*METADATA, "headers", *HEADER_PROPS, *BODY_PROPS)
DEFAULT = (
    *METADATA,
    *HEADER_PROPS,
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
)
PARSE_DEFAULT = (
    *HEADER_PROPS,
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
)


@dataclass(frozen=True)
class BodyOptions:
    body_properties: list[str]
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_bytes: int

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any], cap: int) -> BodyOptions:
        wanted = arguments.get("bodyProperties")
        if wanted is None:
            wanted = list(parsed.DEFAULT_BODY_PART_PROPERTIES)
        if not isinstance(wanted, list) or any(
            not isinstance(p, str) or (p not in parsed.BODY_PART_PROPERTIES and not p.startswith("header:"))
            for p in wanted
        ):
            raise invalid_arguments("bodyProperties: " + ", ".join(parsed.BODY_PART_PROPERTIES))
        for flag in ("fetchTextBodyValues", "fetchHTMLBodyValues", "fetchAllBodyValues"):
            if not isinstance(arguments.get(flag, False), bool):
                raise invalid_arguments(f"{flag} is a boolean")
        max_bytes = arguments.get("maxBodyValueBytes", 0)
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise invalid_arguments("maxBodyValueBytes is a non-negative integer")
        return cls(
            wanted,
            bool(arguments.get("fetchTextBodyValues")),
            bool(arguments.get("fetchHTMLBodyValues")),
            bool(arguments.get("fetchAllBodyValues")),
            min(max_bytes, cap) if max_bytes else cap,
        )


def needs_headers(wanted: list[str]) -> bool:
    return any(p in HEADER_PROPS or p == "headers" or p.startswith("header:") for p in wanted)


def needs_body(wanted: list[str]) -> bool:
    return any(p in BODY_PROPS for p in wanted)


def check_properties(wanted: list[str]) -> None:
    bad = [p for p in wanted if p.startswith("header:") and parsed.parse_header_property(p) is None]
    if bad:
        raise invalid_arguments(f"malformed header properties: {', '.join(bad)}")


def metadata(ref: MessageRef, message: StoredMessage) -> dict[str, Any]:
    return {
        "id": ref.email_id(),
        "blobId": ref.blob_id(),
        "threadId": thread_of(ref, message),
        "mailboxIds": {ids.mailbox_jmap_id(ref.mailbox_id): True},
        "keywords": keywords_of(message.flags),
        "size": message.size,
        "receivedAt": parsed.received_at(message.internaldate),
    }


def thread_of(ref: MessageRef, message: StoredMessage) -> str:
    """mime/threading.py's thread id, kept in the summary since delivery; a message stored before
    that is a thread of its own (an id naming it)."""
    stored = message.summary.get("thread_id") if message.packed_summary else None
    return str(stored) if stored else ref.thread_id()


def header_values(fields: list[tuple[str, str]], wanted: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for prop in wanted:
        if prop in parsed.HEADER_PROPERTIES:
            values[prop] = parsed.header_property(fields, prop)
        elif prop == "headers":
            values[prop] = [{"name": name, "value": raw} for name, raw in fields]
        elif prop.startswith("header:"):
            name, form, all_ = parsed.parse_header_property(prop)  # type: ignore[misc]
            values[prop] = parsed.header_form(fields, name, form, all_)
    return values


def body_values(
    raw: bytes,
    wanted: list[str],
    options: BodyOptions,
    blob_id: Callable[[str], str],
    stored_preview: str | None,
) -> dict[str, Any]:
    root = parsed.structure(parsed.parse_message(raw))
    text, html, attachments = parsed.body_lists(root)
    values: dict[str, Any] = {}
    props = options.body_properties
    if "bodyStructure" in wanted:
        values["bodyStructure"] = parsed.body_part(root, blob_id, [*props, "subParts"])
    if "textBody" in wanted:
        values["textBody"] = [parsed.body_part(p, blob_id, props) for p in text]
    if "htmlBody" in wanted:
        values["htmlBody"] = [parsed.body_part(p, blob_id, props) for p in html]
    if "attachments" in wanted:
        values["attachments"] = [parsed.body_part(p, blob_id, props) for p in attachments]
    if "hasAttachment" in wanted:
        values["hasAttachment"] = parsed.has_attachment(attachments)
    if "preview" in wanted:
        # mime/preview.py's, kept in the summary since delivery; made now for older messages.
        values["preview"] = stored_preview if stored_preview is not None else preview(raw)
    if "bodyValues" in wanted:
        chosen: list[parsed.Part] = []
        if options.fetch_all:
            chosen = [p for p in _leaves(root) if p.type.startswith("text/")]
        else:
            if options.fetch_text:
                chosen += text
            if options.fetch_html:
                chosen += html
        values["bodyValues"] = {
            p.part_id: parsed.body_value(p, options.max_bytes)
            for p in chosen
            if p.part_id and p.type.startswith("text/")
        }
    return values


def _leaves(part: parsed.Part) -> list[parsed.Part]:
    if not part.is_multipart:
        return [part]
    return [leaf for child in part.sub_parts for leaf in _leaves(child)]


def header_block(raw: bytes) -> bytes:
    """The top-level header block, up to and including its empty line."""
    ends = [raw.find(s) + len(s) for s in (b"\r\n\r\n", b"\n\n") if raw.find(s) >= 0]
    return raw[: min(ends)] if ends else raw
