"""Keywords (RFC 8621 4.1.1) and IMAP flags are one thing: `$seen` is `\\Seen`, and so on; any other
keyword is the IMAP keyword of the same name. JMAP keywords are case-insensitive (lower-cased here).
`\\Deleted` and `\\Recent` have no keyword: an Email is destroyed, not marked for it."""

from __future__ import annotations

import re

SYSTEM = {"$seen": "\\Seen", "$flagged": "\\Flagged", "$answered": "\\Answered", "$draft": "\\Draft"}
KEYWORD_OF_FLAG = {flag.lower(): keyword for keyword, flag in SYSTEM.items()}
HIDDEN = {"\\deleted", "\\recent"}
# RFC 8621 4.1.1: IMAP atom characters, no ( ) { ] % * " \ and at most 255.
VALID = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,255}")


def keyword_of(flag: str) -> str | None:
    lowered = flag.lower()
    if lowered in KEYWORD_OF_FLAG:
        return KEYWORD_OF_FLAG[lowered]
    if lowered in HIDDEN or flag.startswith("\\"):
        return None
    return lowered


def keywords_of(flags: tuple[str, ...] | list[str]) -> dict[str, bool]:
    return {k: True for k in (keyword_of(f) for f in flags) if k is not None}


def flag_of(keyword: str) -> str:
    """The IMAP flag of a valid keyword (valid(keyword) first)."""
    lowered = keyword.lower()
    return SYSTEM.get(lowered, lowered)


def valid(keyword: object) -> bool:
    return isinstance(keyword, str) and VALID.fullmatch(keyword) is not None
