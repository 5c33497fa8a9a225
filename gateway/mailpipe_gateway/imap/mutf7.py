"""Modified UTF-7 mailbox names (RFC 3501 5.1.3, kept by RFC 9051 for IMAP4rev1 clients).

Printable US-ASCII (0x20-0x7e) stands for itself, except "&", written "&-". Every other
character goes into a shift sequence: "&", the UTF-16BE code units in base64 with "," for "/"
and no "=" padding, then "-". ``encode`` writes the one canonical form; ``decode`` accepts only
that form, because two spellings of one name would let a client create look-alike mailboxes
and defeat name comparisons. Any problem raises ``MUTF7Error``, and nothing else.
"""

from __future__ import annotations

import base64
import binascii

_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class MUTF7Error(ValueError):
    """A name that is not canonical modified UTF-7, or a string that cannot be encoded."""


def _direct(char: str) -> bool:
    """Whether the character is written as itself (``&`` is, but doubled as ``&-``)."""
    return " " <= char <= "~"


def encode(name: str) -> str:
    """The modified UTF-7 form of a mailbox name."""
    out: list[str] = []
    i = 0
    while i < len(name):
        char = name[i]
        if _direct(char):
            out.append("&-" if char == "&" else char)
            i += 1
            continue
        # One shift sequence for the whole run: two adjacent ones would not be canonical.
        end = i
        while end < len(name) and not _direct(name[end]):
            end += 1
        try:
            units = name[i:end].encode("utf-16-be")
        except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-16 form
            raise MUTF7Error(f"cannot encode {name[i:end]!r}: {exc.reason}") from None
        text = base64.b64encode(units).decode("ascii").rstrip("=").replace("/", ",")
        out.append(f"&{text}-")
        i = end
    return "".join(out)


def decode(text: str) -> str:
    """The mailbox name that the modified UTF-7 ``text`` stands for."""
    out: list[str] = []
    i = 0
    after_shift = False  # the previous token was a base64 shift sequence
    while i < len(text):
        char = text[i]
        if char != "&":
            if not _direct(char):
                raise MUTF7Error(f"character {char!r} at offset {i} must be base64-encoded")
            out.append(char)
            i += 1
            after_shift = False
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise MUTF7Error(f"unterminated shift sequence at offset {i}")
        if end == i + 1:
            out.append("&")
            after_shift = False
        else:
            if after_shift:
                raise MUTF7Error(f"shift sequence at offset {i} directly follows another one")
            out.append(_decode_shift(text[i + 1 : end], i))
            after_shift = True
        i = end + 1
    return "".join(out)


def _decode_shift(chars: str, offset: int) -> str:
    """The characters of one shift sequence's base64 text (between "&" and "-")."""
    if not all(char in _BASE64_CHARS for char in chars):
        raise MUTF7Error(f"shift sequence at offset {offset} holds a character outside modified base64")
    standard = chars.replace(",", "/")
    try:
        units = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):  # one base64 character left over: not even one octet
        raise MUTF7Error(f"shift sequence at offset {offset} has a bad length") from None
    # Re-encoding gives the text back only if the unused bits at the end were zero and no
    # character was superfluous: the canonical form.
    if base64.b64encode(units).decode("ascii").rstrip("=") != standard:
        raise MUTF7Error(f"shift sequence at offset {offset} has non-zero padding bits")
    if len(units) % 2:
        raise MUTF7Error(f"shift sequence at offset {offset} ends inside a UTF-16 code unit")
    try:
        decoded = units.decode("utf-16-be")  # strict: rejects lone and reversed surrogates
    except UnicodeDecodeError:
        raise MUTF7Error(f"shift sequence at offset {offset} is not valid UTF-16") from None
    if any(_direct(char) for char in decoded):
        raise MUTF7Error(f"shift sequence at offset {offset} encodes printable US-ASCII")
    return decoded
