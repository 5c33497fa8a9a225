"""Messages whose threads exercise every step of RFC 5256's REFERENCES and ORDEREDSUBJECT: a
reply chain, a parent no message has (one child, and two), a reply found by subject alone, a
duplicate Message-ID, a References loop, no Message-ID, equal subjects without "Re:", and
INTERNALDATEs in the opposite order of the Date fields (threads sort by Date)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_FIELDS = [
    ("<a@x>", "", "Plan"),
    ("<b@x>", "In-Reply-To: <a@x>\r\nReferences: <a@x>\r\n", "Re: Plan"),
    ("<c@x>", "References: <a@x>\r\n <b@x>\r\n", "Re: Plan"),
    ("<d@x>", "References: <missing@x>\r\n", "Lost parent"),
    ("<e@x>", "References: <missing2@x>\r\n", "Siblings"),
    ("<f@x>", "In-Reply-To: <missing2@x>\r\n", "Re: Siblings"),
    ("<g@x>", "", "Re: Plan"),
    ("<a@x>", "", "Duplicate id"),
    ("<i@x>", "References: <j@x>\r\n", "Loop"),
    ("<j@x>", "References: <i@x>\r\n", "Re: Loop"),
    (None, "", "Solo"),
    ("<l@x>", "", "Topic"),
    ("<m@x>", "", "[list] Topic"),
    ("<n@x>", "References: <c@x>\r\n", "Re: [Fwd: Plan]"),
    ("<o@x>", "References: <a@x> <b@x>\r\n", "Re: Plan (fwd)"),
]


def messages() -> list[tuple[int, bytes]]:
    """(INTERNALDATE, bytes) of each message, in the order to APPEND them."""
    out = []
    for index, (msg_id, extra, subject) in enumerate(_FIELDS):
        day = index + 1
        header = f"From: p{index}@x.test\r\nSubject: {subject}\r\nDate: {day:02d} Jan 2024 12:00:00 +0000\r\n"
        if msg_id:
            header += f"Message-ID: {msg_id}\r\n"
        internaldate = 1_800_000_000 - index * 3600
        out.append((internaldate, (header + extra + "\r\nbody\r\n").encode()))
    return out


def load(client: Any, append: Callable[..., Any]) -> None:
    for internaldate, raw in messages():
        append(client, "INBOX", raw, date_time=internaldate)
