"""Header fields of one part, and the values IMAP needs from them: addresses and MIME parameters.

Header bytes are decoded as latin-1: each byte becomes the character with the same number, so
every value is valid Unicode (safe for JSON and DynamoDB) and ``value.encode("latin-1")`` gives
the original bytes back, whatever 8-bit or broken charset the sender used. UTF-8 headers
(RFC 6532) therefore come out as latin-1 mojibake of their bytes; that is the price of a uniform,
lossless rule. Nothing is RFC 2047-decoded: IMAP sends the raw values.

The parsing follows Dovecot's (lib-mail's rfc822-parser, message-address, rfc2231-parser) where
that is reasonable, and never raises: malformed input gives the best reading it can.
"""

from __future__ import annotations

import re
import string
from typing import Any

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LINE_END = re.compile(r"\r?\n")

# RFC 5322 specials and whitespace end an atom; 8-bit characters are atom text, as in Dovecot.
_ATOM = re.compile(r'[^()<>\[\]:;@\\,."\s]+', re.ASCII)
# RFC 2045 token: no controls, space or tspecials.
_MIME_TOKEN = re.compile(r'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+')
# An unquoted parameter value: laxer than a token, so that boundary=----=_Part_1 keeps its "=".
_UNQUOTED_VALUE = re.compile(r'[^;"(\s]*', re.ASCII)

MISSING_MAILBOX = "MISSING_MAILBOX"  # Dovecot's fillers: a NIL host would mean group syntax in IMAP
MISSING_DOMAIN = "MISSING_DOMAIN"
SYNTAX_ERROR = "SYNTAX_ERROR"  # Dovecot's host for an angle-addr that is not local-part@domain
_LOCAL_WORDS = ("atom", "quoted")  # RFC 5322 local-part: words (atoms or quoted strings) and dots
_DOMAIN_WORDS = ("atom", "literal", "quoted")

Token = tuple[str, str, bool]  # (kind, text, whitespace before it); kind is a special's own character
Address = dict[str, str | None]


def lower(text: str) -> str:
    """ASCII lower case, leaving the 8-bit characters (bytes) alone."""
    return text.translate(_ASCII_LOWER)


def header_fields(raw: bytes, start: int, end: int) -> list[tuple[str, str]]:
    """``(lower-cased name, value)`` of each header field in ``raw[start:end]``, in order.

    Values are unfolded (the line breaks of folded lines removed, their whitespace kept) and
    stripped of leading whitespace. A line without a colon is not a field and is skipped with
    its continuation lines.
    """
    fields: list[list[Any]] = []
    for line in _LINE_END.split(raw[start:end].decode("latin-1")):
        if line[:1] in (" ", "\t"):
            if fields and fields[-1][1] is not None:
                fields[-1][1] += line
        elif line:
            name, colon, value = line.partition(":")
            fields.append([lower(name.rstrip(" \t")), value if colon else None])
    return [(name, value.lstrip(" \t")) for name, value in fields if value is not None]


# --- RFC 5322 addresses -------------------------------------------------------------------------


def parse_addresses(value: str | None) -> list[Address] | None:
    """An address-list header value as IMAP ENVELOPE addresses, or None when it holds none.

    Groups become a start entry (mailbox = group name, host None), the members, and an end entry
    (mailbox and host None). Names are phrases with quotes and comments removed, not
    2047-decoded; a bare addr-spec takes its trailing comment as name. An obsolete source route
    (``<@a.test,@b.test:user@host>``) is the adl, ``"@a.test,@b.test"``; otherwise adl is None.
    A local part is dot-separated words (atoms or quoted strings: RFC 5322 3.4.1, 4.4); as Dovecot,
    words before an "@" that are not one (``Big Bug bb@bug.com``) are read as a name without an
    address, and an angle-addr whose local part is followed by anything but "@" gets the host
    SYNTAX_ERROR. A mailbox or host that cannot be found is filled in as MISSING_MAILBOX /
    MISSING_DOMAIN, as Dovecot does.
    """
    if value is None:
        return None
    tokens = _tokens(value)
    out: list[Address] = []
    i = 0
    while i < len(tokens):
        if tokens[i][0] in (",", ";"):
            i += 1
            continue
        colon = _group_colon(tokens, i)
        if colon is None:
            end = _mailbox_end(tokens, i)
            _add_mailbox(out, tokens[i:end])
            i = end
            continue
        out.append(_address(None, None, _phrase(tokens[i:colon]), None))
        i = colon + 1
        while i < len(tokens) and tokens[i][0] != ";":
            end = _mailbox_end(tokens, i)
            _add_mailbox(out, tokens[i:end])
            i = end + 1 if end < len(tokens) and tokens[end][0] == "," else end
        out.append(_address(None, None, None, None))
        i += 1
    return out or None


def _address(name: str | None, adl: str | None, mailbox: str | None, host: str | None) -> Address:
    return {"name": name, "adl": adl, "mailbox": mailbox, "host": host}


def _group_colon(tokens: list[Token], i: int) -> int | None:
    """Index of the ":" if a group ("display-name:") starts at ``i``."""
    words = 0
    for j in range(i, len(tokens)):
        kind = tokens[j][0]
        if kind == ":":
            return j if words else None
        if kind in ("atom", "quoted"):
            words += 1
        elif kind not in (".", "comment"):
            return None
    return None


def _mailbox_end(tokens: list[Token], i: int) -> int:
    """Index of the "," or ";" ending the mailbox that starts at ``i`` (not inside <...>)."""
    angle = False
    for j in range(i, len(tokens)):
        kind = tokens[j][0]
        if kind == "<":
            angle = True
        elif kind == ">":
            angle = False
        elif kind in (",", ";") and not angle:
            return j
    return len(tokens)


def _add_mailbox(out: list[Address], tokens: list[Token]) -> None:
    words = [token for token in tokens if token[0] != "comment"]
    if not words:
        return
    kinds = [token[0] for token in words]
    adl = None
    if "<" in kinds:  # name-addr: [display-name] "<" [route ":"] local-part "@" domain ">"
        opening = kinds.index("<")
        name = _phrase(words[:opening])
        inner = words[opening + 1 :]
        if ">" in kinds[opening:]:
            inner = inner[: kinds[opening:].index(">") - 1]
        adl, inner = _route(inner)
        mailbox, end = _dotted(inner, 0, _LOCAL_WORDS)
        if end == len(inner):
            host = ""
        elif inner[end][0] == "@":
            host = _dotted(inner, end + 1, _DOMAIN_WORDS)[0]
        else:  # "<Undisclosed-Recipient:@host;>": not an addr-spec
            host = SYNTAX_ERROR
    else:  # addr-spec, or a name alone
        at = kinds.index("@") if "@" in kinds else len(words)
        mailbox, end = _dotted(words, 0, _LOCAL_WORDS)
        comments = [token[1] for token in tokens if token[0] == "comment"]
        name = comments[-1] if comments else None
        host = _dotted(words, at + 1, _DOMAIN_WORDS)[0] if at < len(words) else ""
        if end < at:  # "Big Bug bb@bug.com": words that are no local part are a name, as in Dovecot
            before = next((j for j, token in enumerate(tokens) if token[0] == "@"), len(tokens))
            name, mailbox, host = _phrase(tokens[:before]), "", ""
        elif at == len(words) and (len(words) > 1 or words[0][0] == "quoted"):
            name, mailbox = _phrase(words), ""  # "John Doe" alone: a name without an address
    out.append(_address(name or None, adl, mailbox or MISSING_MAILBOX, host or MISSING_DOMAIN))


def _route(words: list[Token]) -> tuple[str | None, list[Token]]:
    """The obsolete source route (RFC 5322 obs-route) at the start of an angle-addr's ``words``,
    as IMAP's adl (``"@a.test,@b.test"``, as Dovecot writes it), and the words after its ":".

    Without a route the adl is None; a malformed one (no ":" where the domain list ends) is
    skipped up to its first ":", if any, and also gives None.
    """
    if not words or words[0][0] != "@":
        return None, words
    domains: list[str] = []
    i = 0
    while i < len(words) and words[i][0] == "@":
        domain, i = _dotted(words, i + 1, _DOMAIN_WORDS)
        domains.append("@" + domain)
        while i < len(words) and words[i][0] == ",":
            i += 1
    if i < len(words) and words[i][0] == ":":
        return ",".join(domains), words[i + 1 :]
    kinds = [token[0] for token in words]
    return None, words[kinds.index(":") + 1 :] if ":" in kinds else words


def _dotted(words: list[Token], i: int, word_kinds: tuple[str, ...]) -> tuple[str, int]:
    """The dot-separated words of ``word_kinds`` from ``words[i]`` on (a local part or a domain),
    as text, and the index of the first token after them.

    Dots may lead, trail or repeat (``a..b``), as Dovecot allows; two words in a row end it.
    """
    out: list[str] = []
    want_word = True
    while i < len(words):
        kind, text, _space = words[i]
        if kind == ".":
            want_word = True
        elif want_word and kind in word_kinds:
            want_word = False
        else:
            break
        out.append(text)
        i += 1
    return "".join(out), i


def _phrase(tokens: list[Token]) -> str:
    """The text of a display name: words joined by one space where the header had space or comments."""
    out: list[str] = []
    gap = False
    for kind, text, space in tokens:
        if kind == "comment":
            gap = True
            continue
        if out and (space or gap):
            out.append(" ")
        out.append(text)
        gap = False
    return "".join(out)


def _tokens(value: str) -> list[Token]:
    """RFC 5322 lexical tokens: atoms, quoted strings (unquoted), domain literals, comments, specials."""
    tokens: list[Token] = []
    i, size = 0, len(value)
    space = False
    while i < size:
        char = value[i]
        if char in " \t\r\n":
            space = True
            i += 1
            continue
        if char == '"':
            text, i = _quoted(value, i)
            tokens.append(("quoted", text, space))
        elif char == "(":
            text, i = _comment(value, i)
            tokens.append(("comment", text, space))
        elif char == "[":
            close = value.find("]", i)
            close = size - 1 if close < 0 else close
            tokens.append(("literal", value[i : close + 1], space))
            i = close + 1
        elif (match := _ATOM.match(value, i)) is not None:
            tokens.append(("atom", match.group(), space))
            i = match.end()
        else:  # a special, or a stray "\\", "]" or ")"
            tokens.append((char, char, space))
            i += 1
        space = False
    return tokens


def _quoted(value: str, i: int) -> tuple[str, int]:
    """The content of the quoted string at ``value[i] == '"'`` and the index after it."""
    out: list[str] = []
    i += 1
    while i < len(value):
        char = value[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(value):
            i += 1
            char = value[i]
        out.append(char)
        i += 1
    return "".join(out), i


def _comment(value: str, i: int) -> tuple[str, int]:
    """The content of the (nested) comment at ``value[i] == "("`` and the index after it."""
    out: list[str] = []
    depth = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            i += 1
            char = value[i]
        elif char == "(":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i


# --- MIME fields (RFC 2045, 2183, 2231, 3282) -----------------------------------------------------


def content_type(value: str) -> tuple[str, str, list[list[str]]] | None:
    """``(type, subtype, params)`` of a Content-Type value, lower-cased; None if it is not type/subtype."""
    i = _skip_cfws(value, 0)
    main = _MIME_TOKEN.match(value, i)
    if main is None:
        return None
    i = _skip_cfws(value, main.end())
    if value[i : i + 1] != "/":
        return None
    sub = _MIME_TOKEN.match(value, _skip_cfws(value, i + 1))
    if sub is None:
        return None
    return lower(main.group()), lower(sub.group()), mime_params(value, sub.end())


def disposition(value: str) -> list[Any] | None:
    """``[disposition type, params]`` of a Content-Disposition value, or None if it has no type."""
    token = _MIME_TOKEN.match(value, _skip_cfws(value, 0))
    if token is None:
        return None
    return [lower(token.group()), mime_params(value, token.end())]


def transfer_encoding(value: str) -> str | None:
    """The lower-cased Content-Transfer-Encoding token, or None unless the value is just one token."""
    token = _MIME_TOKEN.match(value, _skip_cfws(value, 0))
    if token is None or _skip_cfws(value, token.end()) < len(value):
        return None
    return lower(token.group())


def languages(value: str) -> list[str] | None:
    """The language tags of a Content-Language value, or None if there are none."""
    tags = [token[1] for token in _tokens(value) if token[0] == "atom"]
    return tags or None


def mime_params(value: str, i: int) -> list[list[str]]:
    """The ``[name, value]`` pairs of ``;``-separated parameters from ``value[i:]``.

    Names are lower-cased; quoted values are unquoted. Junk up to the next ";" is skipped.
    RFC 2231 continuations are merged as Dovecot does: ``name*0``, ``name*1`` become ``name``,
    and if any piece is extended the result is ``name*`` with the still-encoded
    ``charset'language'value``.
    """
    params: list[tuple[str, str]] = []
    size = len(value)
    while True:
        i = _skip_cfws(value, i)
        if i >= size:
            break
        if value[i] != ";":
            semicolon = value.find(";", i)
            i = size if semicolon < 0 else semicolon
            continue
        i = _skip_cfws(value, i + 1)
        name = _MIME_TOKEN.match(value, i)
        if name is None:
            continue
        i = _skip_cfws(value, name.end())
        if value[i : i + 1] != "=":
            continue
        i = _skip_cfws(value, i + 1)
        if value[i : i + 1] == '"':
            text, i = _quoted(value, i)
        else:
            unquoted = _UNQUOTED_VALUE.match(value, i)
            assert unquoted is not None  # the pattern matches the empty string
            text, i = unquoted.group(), unquoted.end()
        params.append((lower(name.group()), text))
    return _merge_rfc2231(params)


def _merge_rfc2231(params: list[tuple[str, str]]) -> list[list[str]]:
    plain: list[list[str]] = []
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for name, text in params:
        base, star, rest = name.partition("*")
        digits = rest[: len(rest) - len(rest.lstrip(string.digits))]
        tail = rest[len(digits) :]
        if not star or tail not in ("", "*"):
            plain.append([name, text])
            continue
        extended = tail == "*" or not rest
        sections.setdefault(base, []).append((int(digits or 0), extended, text))
    for base in sorted(sections):
        pieces = sorted(sections[base], key=lambda piece: piece[0])
        if [index for index, _, _ in pieces] != list(range(len(pieces))):
            plain += [[f"{base}*{index}{'*' if ext else ''}", text] for index, ext, text in pieces]
            continue
        if not any(ext for _, ext, _ in pieces):
            plain.append([base, "".join(text for _, _, text in pieces)])
            continue
        merged = "" if pieces[0][1] else "''"
        merged += "".join(text if ext else text.replace("%", "%25") for _, ext, text in pieces)
        plain.append([base + "*", merged])
    return plain


def _skip_cfws(value: str, i: int) -> int:
    """Index of the first character from ``i`` that is not whitespace or inside a comment."""
    while i < len(value):
        if value[i] in " \t\r\n":
            i += 1
        elif value[i] == "(":
            i = _comment(value, i)[1]
        else:
            break
    return i
