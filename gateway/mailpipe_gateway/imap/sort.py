"""SORT (RFC 5256 3) and DISPLAYFROM/DISPLAYTO (RFC 5957): the order of a set of messages.

Every key comes from the stored item and its summary (ENVELOPE), so sorting reads no S3 except
for a message whose summary is ``too_large``. Keys are computed once per message (and kept per
process for CACHED_KEYS summaries: unpacking them is most of the work, bench/sort_thread.py) and
each key is one sort pass: O(n log n), bounded by the number of messages in the mailbox, and run
off the event loop by the caller as SEARCH is.

The keys, as RFC 5256 and RFC 5957 define them, compared with i;ascii-casemap (ASCII letters
upper-cased, then octet by octet, over the UTF-8 of the text):

- ARRIVAL: INTERNALDATE. SIZE: RFC822.SIZE.
- DATE: the Date header as a UTC instant; without a Date that parses, INTERNALDATE.
- FROM, TO, CC: the local part (addr-mailbox) of the first address of the header; "" without one.
  For a group that is the group's name (its start entry in ENVELOPE), as Dovecot sorts.
- DISPLAYFROM, DISPLAYTO: the first address's display name, RFC 2047-decoded, else its addr-spec.
- Fields come from ENVELOPE, which shows the last of repeated header fields (a malformed
  message); Dovecot's SORT reads the first.
- SUBJECT: the base subject (``base_subject``, RFC 5256 2.1).

REVERSE reverses the key after it. Messages equal under every key stay in message-number order
(RFC 5256 3: the final tie-breaker), which REVERSE does not turn around. A message whose key needs
its bytes and finds them gone (loading.BodyGone: expunged meanwhile) is left out, as SEARCH
leaves it out (imap/matching.py).
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from mailpipe.mime import headers
from mailpipe.store import StoredMessage
from mailpipe.store.model import unpack_summary
from mailpipe_gateway.imap.loading import BodyGone
from mailpipe_gateway.imap.search import decode_header_value

# Sort values kept per process, by stored summary: about 400 bytes each, so some 20 MB.
CACHED_KEYS = 50_000
MAX_SUBJECT = 64 * 1024  # characters of a Subject looked at: beyond, no two subjects differ usefully

SummaryOf = Callable[[StoredMessage], dict[str, Any]]
_FILLERS = (None, "", headers.MISSING_MAILBOX, headers.MISSING_DOMAIN, headers.SYNTAX_ERROR)

# RFC 5256 5, the base subject grammar. A blob is "[...]" without nested brackets.
_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD = re.compile(rf"(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.IGNORECASE)
_BLOBS = re.compile(rf"(?:{_BLOB})*")
_ONE_BLOB = re.compile(_BLOB)
_COMMENT = re.compile(r"\([^()]*\)")  # innermost comments; nested ones are not worth more work
_SPACED_COLON = re.compile(r"\s*:\s*")
MAX_DATE = 256  # characters of a Date value looked at: real ones are under 50
_WSP_RUN = re.compile(r"[ \t]+")
_LINE_BREAKS = re.compile(r"\r?\n")


def sort_messages(
    criteria: Sequence[tuple[str, bool]],
    messages: list[tuple[int, StoredMessage]],
    summary_of: SummaryOf,
) -> list[tuple[int, StoredMessage]]:
    """``messages`` (number, message) in the order of ``criteria``, ``(key, reverse)`` pairs.

    ``summary_of`` gives a message's complete summary (computing one from the body when the
    stored one is incomplete). Each key is a stable sort pass, last key first, which makes the
    first key the most significant and keeps equal messages in message-number order."""
    ordered = sorted(messages, key=lambda pair: pair[0])
    found: dict[int, tuple[Any, ...]] = {}

    def keys_of(message: StoredMessage) -> tuple[Any, ...]:
        keys = found.get(message.uid)
        if keys is None:
            keys = _stored_keys(message.packed_summary) if message.packed_summary else None
            if keys is None:  # no complete stored summary: from the one made of the body
                keys = envelope_keys(summary_of(message).get("envelope") or {})
            found[message.uid] = keys
        return keys

    for name, reverse in reversed(criteria):
        keyed: list[tuple[Any, tuple[int, StoredMessage]]] = []
        for number, message in ordered:
            try:
                keyed.append((sort_key(name, message, keys_of), (number, message)))
            except BodyGone:
                continue  # out of this pass, so out of the result
        keyed.sort(key=lambda entry: entry[0], reverse=reverse)
        ordered = [pair for _, pair in keyed]
    return ordered


def sort_key(name: str, message: StoredMessage, keys_of: Callable[[StoredMessage], tuple[Any, ...]]) -> Any:
    """The value ``message`` is sorted by under key ``name``; ``keys_of`` gives its envelope_keys."""
    if name == "ARRIVAL":
        return message.internaldate
    if name == "SIZE":
        return message.crlf_size or message.size
    if name == "DATE":
        sent = keys_of(message)[0]
        return message.internaldate if sent is None else sent
    return keys_of(message)[_ENVELOPE_KEYS.index(name)]


_ENVELOPE_KEYS = ("DATE", "SUBJECT", "FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO")


def envelope_keys(envelope: dict[str, Any]) -> tuple[Any, ...]:
    """The sort values an ENVELOPE gives, in _ENVELOPE_KEYS order (DATE: None without one)."""

    def mailbox_of(field: str) -> bytes:
        first = first_address(envelope.get(field))
        mailbox = first.get("mailbox") if first else None
        # MISSING_MAILBOX, where the header has no address, sorts as itself: as in Dovecot.
        return casemap(decode_header_value(mailbox) if mailbox else "")

    return (
        sent_time(envelope.get("date")),
        casemap(base_subject(envelope.get("subject") or "")[0]),
        mailbox_of("from"),
        mailbox_of("to"),
        mailbox_of("cc"),
        casemap(display_name(first_address(envelope.get("from")))),
        casemap(display_name(first_address(envelope.get("to")))),
    )


@functools.lru_cache(maxsize=CACHED_KEYS)
def _stored_keys(packed: bytes) -> tuple[Any, ...] | None:
    """envelope_keys of a stored summary, kept per process: unpacking summaries is most of a
    SORT's work, and a client sorts the same mailbox again and again (CONTEXT=SORT after every
    change). None for an incomplete (too_large) summary."""
    summary = unpack_summary(packed)
    return envelope_keys(summary.get("envelope") or {}) if "bodystructure" in summary else None


def casemap(text: str) -> bytes:
    """i;ascii-casemap (RFC 4790 9.2): the UTF-8 octets with a-z as A-Z, compared as octets."""
    return text.encode("utf-8", "surrogatepass").upper()


def sent_time(value: str | None) -> int | None:
    """A Date header value as seconds since the epoch (UTC), or None when it does not parse or
    names no real time (hour 59). Comments and the obsolete spaces around ":" (RFC 5322 4.3)
    are allowed, as Dovecot allows them."""
    if not value:
        return None
    text = _COMMENT.sub(" ", value[:MAX_DATE])
    text = _SPACED_COLON.sub(":", text)
    try:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None or not (0 <= parsed[3] < 24 and 0 <= parsed[4] < 60 and 0 <= parsed[5] <= 60):
            return None
        return int(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def first_address(addresses: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The first entry of an ENVELOPE address list, as Dovecot sorts: for a group, its start
    entry, whose mailbox is the group's name."""
    return addresses[0] if addresses else None


def display_name(address: dict[str, Any] | None) -> str:
    """RFC 5957: the display name, decoded, when there is one; else the addr-spec; else ""."""
    if address is None:
        return ""
    name = address.get("name")
    if name:
        decoded = decode_header_value(name).strip()
        if decoded:
            return decoded
    mailbox, host = address.get("mailbox"), address.get("host")
    spec = "@".join(part for part in (mailbox, host) if part not in _FILLERS)
    return decode_header_value(spec)


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 2.1's base subject of a Subject value, and whether extracting it removed a reply
    or forward marker ("Re:", "Fwd:", "(fwd)", "[Fwd: ...]"), which THREAD uses.

    Works on positions into the text, never on repeated copies of it, so a Subject of thousands
    of "Re:" costs linear time.
    """
    # (1) decode encoded words, unfold, collapse whitespace runs to one space
    text = _WSP_RUN.sub(" ", _LINE_BREAKS.sub("", decode_header_value(subject[:MAX_SUBJECT])))
    start, end = 0, len(text)
    marked = False
    while True:
        # (2) trailing "(fwd)" and whitespace
        while True:
            while end > start and text[end - 1] in " \t":
                end -= 1
            if end - start >= 5 and text[end - 5 : end].lower() == "(fwd)":
                end -= 5
                marked = True
                continue
            break
        # (3)-(5) leaders ("[blob] Re:", whitespace) and one leading blob at a time
        while True:
            before = start
            while True:
                if start < end and text[start] in " \t":
                    start += 1
                    continue
                blobs = _BLOBS.match(text, start, end)
                refwd = _REFWD.match(text, blobs.end() if blobs else start, end)
                if refwd is None:
                    break
                start = refwd.end()
                marked = True
            blob = _ONE_BLOB.match(text, start, end)
            if blob is not None and blob.end() < end:  # not when that would leave nothing
                start = blob.end()
            if start == before:
                break
        # (6) "[Fwd: ...]" around the rest: a forward, then start again inside it
        if end - start >= 6 and text[start : start + 5].lower() == "[fwd:" and text[end - 1] == "]":
            start, end = start + 5, end - 1
            marked = True
            continue
        return text[start:end], marked
