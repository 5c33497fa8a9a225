"""mailpipe_gateway.imap.mutf7: modified UTF-7 mailbox names (RFC 3501 5.1.3), canonical forms only."""

from __future__ import annotations

import random

import pytest

from mailpipe_gateway.imap.mutf7 import MUTF7Error, decode, encode

EXAMPLES = [
    ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),  # RFC 3501 5.1.3
    ("&Jjo-!", "☺!"),  # RFC 3501 5.1.3
    ("Hi Mom -&Jjo--!", "Hi Mom -☺-!"),  # RFC 2152's example, in the modified form
    ("&-", "&"),
    ("Tom &- Jerry", "Tom & Jerry"),
    ("&AOk-t&AOk-", "été"),
    ("Entw&APw-rfe", "Entwürfe"),
    ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
    ("&2D3eAA-", "\U0001f600"),  # astral: one UTF-16 surrogate pair
    ("&2D3eANg93gE-", "\U0001f600\U0001f601"),
    ("&AAA-", "\x00"),
    ("&AAkACg-", "\t\n"),  # controls are encoded too
    ("&AH8-", "\x7f"),
    ("&U,BTFw-&-", "台北&"),  # a shift sequence followed by an ampersand
    ("", ""),
    ("INBOX", "INBOX"),
    (" ~!", " ~!"),
]


@pytest.mark.parametrize(("encoded", "name"), EXAMPLES)
def test_examples(encoded: str, name: str) -> None:
    assert decode(encoded) == name
    assert encode(name) == encoded


REJECTED = {
    "&": "unterminated",
    "&U,BTFw": "unterminated",
    "abc&Jjo": "unterminated",
    "&Jjo!-": "character outside base64",
    "&Jj o-": "space inside a shift sequence",
    "&Jjo=-": "padding",
    "&U/BTFw-": "'/' instead of ','",
    "&U,BTFx-": "non-zero padding bits",
    "&Jjp-": "non-zero padding bits",
    "&J-": "a lone base64 character",
    "&Jjo-&Jjo-": "two adjacent shift sequences",
    "&U,BTFw-&ZeVnLIqe-": "two adjacent shift sequences",
    "&AGE-": "encoded printable ASCII 'a'",
    "&ACY-": "encoded '&' (must be &-)",
    "&ACA-": "encoded space",
    "&AH4-": "encoded '~'",
    "&Jjo-&AGEAYg-": "adjacent, and printable",
    "&AOkAYQ-": "printable ASCII inside a sequence with others",
    "&2D0-": "lone high surrogate",
    "&3gA-": "lone low surrogate",
    "&3gDYPQ-": "reversed surrogate pair",
    "&2D0AYQ-": "high surrogate followed by a non-surrogate",
    "&AA-": "one octet only: half a UTF-16 unit",
    "&AOkA-": "odd number of octets",
    "caf\u00e9": "raw 8-bit character",
    "a\tb": "raw control character",
    "a\x7fb": "raw DEL",
    "\u65e5\u672c": "raw non-ASCII",
}


@pytest.mark.parametrize("text", list(REJECTED), ids=list(REJECTED.values()))
def test_rejects_non_canonical_or_broken(text: str) -> None:
    with pytest.raises(MUTF7Error):
        decode(text)


def test_error_is_a_value_error() -> None:
    assert issubclass(MUTF7Error, ValueError)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(MUTF7Error):
        encode("a\ud800b")
    with pytest.raises(MUTF7Error):
        encode("\udc00")


def random_name(rng: random.Random) -> str:
    """A mix of ASCII (with & and -), Latin, CJK, controls and astral characters."""
    pools = [
        lambda: chr(rng.randint(0x20, 0x7E)),
        lambda: rng.choice("&-&-,+/"),
        lambda: chr(rng.randint(0x00, 0x1F)),
        lambda: chr(rng.randint(0x80, 0x7FF)),
        lambda: chr(rng.randint(0x3000, 0x9FFF)),
        lambda: chr(rng.randint(0xE000, 0xFFFF)),
        lambda: chr(rng.randint(0x10000, 0x10FFFF)),
    ]
    return "".join(rng.choice(pools)() for _ in range(rng.randint(0, 24)))


def test_random_round_trips() -> None:
    rng = random.Random(3501)
    for _ in range(5000):
        name = random_name(rng)
        encoded = encode(name)
        assert encoded.isascii() and all(" " <= char <= "~" for char in encoded)
        assert decode(encoded) == name
        assert encode(decode(encoded)) == encoded  # the canonical form is a fixed point


def test_random_garbage_only_raises_mutf7_error() -> None:
    """Random strings, random bytes read as latin-1 and mutations of valid names: a name or MUTF7Error."""
    rng = random.Random(9051)
    alphabet = "&-,+/=AZaz09 ~!\x00\x7f\u00e9\u65e5"
    for i in range(20000):
        kind = i % 3
        if kind == 0:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        elif kind == 1:
            text = rng.randbytes(rng.randint(0, 16)).decode("latin-1")
        else:
            chars = list(encode(random_name(rng)))
            for _ in range(rng.randint(1, 3)):
                position = rng.randint(0, len(chars))
                action = rng.randrange(3)
                if action == 0:
                    chars.insert(position, rng.choice(alphabet))
                elif chars:
                    del chars[min(position, len(chars) - 1)]
                    if action == 2:
                        chars.insert(min(position, len(chars)), rng.choice(alphabet))
            text = "".join(chars)
        try:
            name = decode(text)
        except MUTF7Error:
            continue
        assert encode(name) == text  # whatever is accepted is the canonical form of its name
