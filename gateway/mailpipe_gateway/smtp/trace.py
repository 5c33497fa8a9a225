"""Trace headers: the Received: line we prepend, and counting hops for loop detection."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

MAX_RECEIVED_HEADERS = 100  # RFC 5321 6.3: a loop is assumed beyond this many hops

_UNSAFE = re.compile(r"[^A-Za-z0-9.\-:\[\]_]")
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE)


def _clean(text: str) -> str:
    # A HELO name is whatever the client said: keep it from breaking the header.
    return _UNSAFE.sub("?", text)[:255] or "unknown"


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    queue_id: str,
    protocol: str,
    recipients: list[str],
    when: datetime,
) -> bytes:
    lines = [
        f"Received: from {_clean(helo)} ([{_clean(client_ip)}])",
        f"\tby {_clean(hostname)} (mailpipe) with {protocol} id {queue_id}",
    ]
    stamp = format_datetime(when)
    if len(recipients) == 1:
        lines.append(f"\tfor <{recipients[0]}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def protocol_name(*, esmtp: bool, tls: bool, smtputf8: bool, authenticated: bool = False) -> str:
    """The `with` keyword of RFC 3848 / RFC 6531 (ESMTPS, ESMTPSA, UTF8SMTPS, ...)."""
    if not esmtp:
        return "SMTP"
    name = "UTF8SMTP" if smtputf8 else "ESMTP"
    return name + ("S" if tls else "") + ("A" if authenticated else "")


def count_received(message: bytes) -> int:
    """How many Received: header fields the message's header block holds."""
    count = 0
    for line in message.split(b"\n"):
        if line in (b"", b"\r"):
            break
        if _RECEIVED.match(line):
            count += 1
    return count
