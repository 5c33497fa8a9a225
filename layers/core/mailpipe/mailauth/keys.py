"""DKIM and ARC public keys, fetched before verification so that dkimpy never waits on DNS.

dkimpy (the DKIM/ARC implementation: maintained, RFC 6376, 8463 and 8617 all in one) verifies
synchronously and asks a `dnsfunc` for each key. Its asyncio mode needs aiodns, which would bypass
mailpipe's resolver, cache and time bound. So the names it will ask for are read from the message
first, fetched here concurrently on the shared asyncio resolver, and dkimpy then runs in an executor
(the body hash of a 40 MB message must not hold the event loop) with a dnsfunc that only reads
this table.
"""

from __future__ import annotations

import asyncio
import logging

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from mailpipe.mailauth.dns import Lookup, TempError

log = logging.getLogger(__name__)

MAX_KEYS = 16  # distinct key records fetched for one message: bounds the work a message can cause
SIGNATURE_FIELDS = (b"dkim-signature", b"arc-message-signature", b"arc-seal")


class KeyTable:
    """Key records by name: bytes, None (no record), or a TempError message (DNS failed for now)."""

    def __init__(self, records: dict[str, bytes | TempError | None]) -> None:
        self.records = records

    def temperror(self, name: str) -> str | None:
        found = self.records.get(normalise(name))
        return str(found) if isinstance(found, TempError) else None

    def dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        found = self.records.get(normalise(name))
        if isinstance(found, TempError):
            raise dkim.DnsTimeoutError(str(found))
        return found


def normalise(name: bytes | str) -> str:
    text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    return text.strip().rstrip(".").lower()


def key_name(tags: dict[bytes, bytes]) -> str | None:
    selector, domain = tags.get(b"s"), tags.get(b"d")
    if not selector or not domain:
        return None
    return normalise(selector.strip() + b"._domainkey." + domain.strip())


def key_names(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The key records the message's DKIM-Signature and ARC fields point at, in order, deduplicated."""
    names: list[str] = []
    for field, value in headers:
        if field.lower() not in SIGNATURE_FIELDS:
            continue
        try:
            name = key_name(parse_tag_value(value))
        except InvalidTagValueList:
            continue  # the verifier reports the broken signature
        if name and name not in names:
            names.append(name)
    return names


async def fetch(lookup: Lookup, names: list[str]) -> KeyTable:
    if len(names) > MAX_KEYS:
        log.info("message names %d DKIM/ARC keys; only the first %d are fetched", len(names), MAX_KEYS)
    wanted = names[:MAX_KEYS]

    async def one(name: str) -> bytes | TempError | None:
        try:
            texts = await lookup.txt(name)
        except TempError as exc:
            return exc
        # RFC 6376 3.6.2.2: several TXT records for a selector give undefined results; take the first.
        return texts[0] if texts else None

    found = await asyncio.gather(*(one(name) for name in wanted))
    return KeyTable(dict(zip(wanted, found, strict=True)))
