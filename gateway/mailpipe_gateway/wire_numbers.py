"""Numbers in protocol commands: ASCII digits only.

`str.isdigit()` and `int()` accept every Unicode digit: ARABIC-INDIC DIGIT ONE (U+0661)
is 1 to `int()`, and SUPERSCRIPT TWO (U+00B2) passes `isdigit()` but makes `int()` raise.
A command argument is ASCII by every protocol's grammar (POP3's `1*DIGIT`, IMAP's `number`),
so anything else is a syntax error, not a number.
"""

from __future__ import annotations

ASCII_DIGITS = frozenset("0123456789")
# Longer than any count a mailbox or a message can have; also keeps int() far from Python's
# 4,300-digit conversion limit.
MAX_DIGITS = 20


def ascii_number(text: str) -> int | None:
    """`text` as a non-negative number if it is 1 to MAX_DIGITS ASCII digits; else None."""
    if not text or len(text) > MAX_DIGITS or not ASCII_DIGITS.issuperset(text):
        return None
    return int(text)
