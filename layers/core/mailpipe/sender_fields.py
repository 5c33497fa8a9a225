"""Who a submitted message says it is from, as its reader will see it, and the send-as rule.

Both ways of sending use this one rule: SMTP submission (mailpipe_gateway/smtp/submission.py) and
JMAP's EmailSubmission (mailpipe/jmap/submissions.py). A user may send as the addresses
`Directory.owned_addresses` gives (their own and the aliases that deliver to them).

From, Sender, Resent-From and Resent-Sender name the author and the sender; a mail client
shows their display names (RFC 2047-decoded) and comments as much as the addresses, so
`"Eve (CEO) <eve@example.test>" <bob@example.test>` reads as mail from eve. Every address
that appears anywhere in these fields is collected here, for the send-as rule to check.
"""

from __future__ import annotations

import unicodedata
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from mailpipe.addresses import AddressError, parse_address
from mailpipe.mime.headers import parse_addresses

SENDER_FIELDS = ("from", "sender", "resent-from", "resent-sender")
# Far more than any real sender field; keeps the parsing below (linear) short on the event loop.
MAX_SENDER_FIELDS = 16 * 1024
# Characters that end an address where it sits in free text (display names, comments).
_BREAKS = str.maketrans({char: " " for char in "<>()[]\",;:'\\"})


class Unreadable(ValueError):
    """The sender fields cannot be read with confidence (too long, undecodable encoded words)."""


def claimed_senders(fields: dict[str, list[str]]) -> list[tuple[str, str]]:
    """`(field name, address)` for every mailbox of the sender fields and every address written
    into their display names or comments; raises Unreadable, also for a message without a From:
    mailbox (only text that looks like one, say in a comment, is not enough)."""
    values = [(name, value) for name in SENDER_FIELDS for value in fields.get(name, [])]
    if sum(len(value) for _, value in values) > MAX_SENDER_FIELDS:
        raise Unreadable("sender header fields are too long")
    found: list[tuple[str, str]] = []
    authors = 0
    for name, value in values:
        for mailbox in parse_addresses(value) or []:
            if mailbox["host"] is not None:  # None marks a group's start and end
                found.append((name, f"{mailbox['mailbox']}@{mailbox['host']}"))
                authors += name == "from"
        found.extend((name, address) for address in addresses_in_text(_decoded(name, value)))
    if not authors:
        raise Unreadable("the message needs a From: header with the sender's address")
    return found


def may_send_as(owned: set[str], address: str) -> bool:
    """Whether an address is one of `owned` (the user's send-as addresses), subaddress or not:
    bob+lists@example.test is bob's."""
    if not address:
        return False
    try:
        wanted = parse_address(address)
    except AddressError:
        return False
    return wanted.text in owned or wanted.base.text in owned


def addresses_in_text(text: str) -> list[str]:
    """The addresses a reader would see in `text`, including `eve @ example.test` and
    look-alikes such as the full-width at sign (NFKC folds them to `@`)."""
    text = unicodedata.normalize("NFKC", text)
    text = "@".join(part.strip() for part in text.split("@"))
    found = []
    for word in text.translate(_BREAKS).split():
        if "@" not in word:
            continue
        try:
            address = parse_address(word.strip("."))
        except AddressError:
            continue
        # "Alice @ Work" is a name; what passes for an address has a dotted domain.
        if "." in address.domain:
            found.append(address.text)
    return found


def _decoded(name: str, value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError) as exc:
        # A name the client may decode some other way could hide anything.
        raise Unreadable(f"{name}: has an encoded word that cannot be decoded") from exc
