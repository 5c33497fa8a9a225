"""Checks on command arguments that aiosmtpd lets through or crashes on."""

from __future__ import annotations


def balanced_path(arg: str | None) -> bool:
    """aiosmtpd takes `<a@b` as `a@b`; a path with an opening bracket must close it (RFC 5321 4.1.2)."""
    if not arg:
        return True
    opened, closed = arg.find("<"), arg.find(">")
    if opened == -1 and closed == -1:
        return True
    return arg.count("<") == arg.count(">") == 1 and opened < closed


def has_control_characters(text: str) -> bool:
    """True for NUL and the other C0 controls or DEL: RFC 5321's command syntax allows none, and
    an address carrying them would reach headers, logs and the directory as it is."""
    return any(ord(char) < 0x20 or char == "\x7f" for char in text)


def is_utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (aiosmtpd keeps them as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bad_numeric_parameter(arg: str) -> str | None:
    """The name of a numeric ESMTP parameter whose value is not ASCII digits (`SIZE=²`), if any.

    str.isdigit() accepts superscripts and other scripts' digits, which int() then rejects or
    reads as numbers; RFC 5321 parameters are ASCII.
    """
    for token in arg.split()[1:]:
        name, _, value = token.partition("=")
        if name.upper() == "SIZE" and not (value.isascii() and value.isdigit()):
            return "SIZE"
    return None


def printable(reply: str) -> str:
    """`reply` with control characters and undecodable bytes (kept as surrogates) replaced by "?".

    Some replies quote what the client sent; this keeps them one line of valid UTF-8.
    """
    if reply.isprintable():
        return reply
    return "".join(char if char.isprintable() else "?" for char in reply)
