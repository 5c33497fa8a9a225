"""CATENATE (RFC 4469): an APPENDed message built from literal text and parts of stored messages.

A URL part names a message, or a section of one, by an IMAP URL (RFC 5092). Only URLs that
come back to the session's own user on this server are followed:

- ``imap://[user[;AUTH=x]@]host[:port]/mailbox;UIDVALIDITY=v/;UID=n[/;SECTION=s][/;PARTIAL=o.l]``,
  where ``user`` (if given) is the logged-in user and ``host`` this server's name or address;
- ``/mailbox;UIDVALIDITY=v/;UID=n...``, relative to this server and user;
- ``;UID=n...`` (or ``/;UID=n...``), relative to the selected mailbox.

The mailbox is looked up among the session user's own mailboxes, whatever the URL says: no URL
reaches another user's mail. URLAUTH (RFC 4467) is not supported: such URLs are BADURL, as is
anything unknown, a UIDVALIDITY that does not match, or a message that is not there.

Memory stays bounded: the message being built may not exceed APPENDLIMIT, nor all the messages of
one command what the reader lets one command hold (``NO [TOOBIG]``); a referenced message is read
only when it is within APPENDLIMIT, and when it is wanted whole, only when it fits what is left.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailpipe_gateway.imap import fetch as fetching
from mailpipe_gateway.imap.commands import CatenatePart, Fetch, FetchSection, Section
from mailpipe_gateway.imap.parser import ParseError, parse_bytes

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

_PARTIAL = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,10}))?")


class BadURL(Exception):
    """A URL part that does not name a message of the user's own here: ``NO [BADURL url]``."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(why)
        self.url = url
        self.why = why


class TooBig(Exception):
    """The message being built would exceed APPENDLIMIT: ``NO [TOOBIG]``."""


@dataclass(frozen=True)
class MessageURL:
    """What an IMAP URL names: a mailbox (None: the selected one), a UID, a section, a partial."""

    mailbox: str | None
    uidvalidity: int | None
    uid: int
    section: Section | None
    partial: tuple[int, int | None] | None


def parse_url(url: str, *, user: str, hosts: set[str]) -> MessageURL:
    """The message `url` names, if it refers to `user`'s own mail on this server (`hosts`)."""
    rest = url
    if rest[:7].lower() == "imap://":
        authority, slash, rest = rest[7:].partition("/")
        if not slash:
            raise BadURL(url, "no mailbox in the URL")
        userinfo, _, hostport = authority.rpartition("@")
        name = urllib.parse.unquote(userinfo.split(";", 1)[0])
        if name and name.lower() != user.lower():  # ";AUTH=..." alone says how, not who: us
            raise BadURL(url, "the URL names another user")
        host = hostport.rsplit(":", 1)[0] if not hostport.endswith("]") else hostport
        if host.strip("[]").lower() not in hosts:
            raise BadURL(url, "the URL names another server")
        rest = "/" + rest
    elif rest.startswith(";"):
        rest = "/" + rest
    if not rest.startswith("/"):
        raise BadURL(url, "not an IMAP URL")
    mailbox_part, _, params = rest[1:].partition(";")
    mailbox: str | None = None
    if mailbox_part.rstrip("/"):  # "/;UID=..." is relative to the selected mailbox
        try:
            mailbox = urllib.parse.unquote(mailbox_part.rstrip("/"), errors="strict")
        except UnicodeDecodeError:
            raise BadURL(url, "the mailbox name is not UTF-8") from None
        if mailbox.upper() == "INBOX":
            mailbox = "INBOX"
    found: dict[str, str] = {}
    for segment in params.split(";") if params else ():
        name, equals, value = segment.removesuffix("/").partition("=")
        if not equals or not name.isalpha() or "/" in value or name.upper() in found:
            raise BadURL(url, "malformed URL parameters")
        found[name.upper()] = urllib.parse.unquote(value)
    if set(found) - {"UIDVALIDITY", "UID", "SECTION", "PARTIAL"}:
        raise BadURL(url, "unsupported URL parameters (URLAUTH, EXPIRE, ...)")
    try:
        uid = int(found["UID"])
        uidvalidity = int(found["UIDVALIDITY"]) if "UIDVALIDITY" in found else None
    except (KeyError, ValueError):
        raise BadURL(url, "the URL names no message (;UID=)") from None
    if not 0 < uid < 2**32:
        raise BadURL(url, "invalid UID")
    section = _section(url, found["SECTION"]) if "SECTION" in found else None
    partial = None
    if "PARTIAL" in found:
        match = _PARTIAL.fullmatch(found["PARTIAL"])
        if match is None:
            raise BadURL(url, "malformed PARTIAL")
        partial = (int(match.group(1)), int(match.group(2)) if match.group(2) else None)
    return MessageURL(mailbox, uidvalidity, uid, section, partial)


def _section(url: str, text: str) -> Section:
    """A URL's SECTION, read with FETCH's grammar for BODY[section]."""
    try:
        command = parse_bytes(b"x FETCH 1 BODY[" + text.encode("utf-8") + b"]")
    except ParseError:
        raise BadURL(url, "malformed SECTION") from None
    assert isinstance(command, Fetch)
    [item] = command.items
    assert isinstance(item, FetchSection)
    return item.section


async def build(session: IMAPSession, parts: tuple[CatenatePart, ...], limit: int) -> bytes:
    """The message `parts` make, at most `limit` octets. Raises BadURL or TooBig."""
    out = bytearray()
    for part in parts:
        if part.text is not None:
            data = part.text
        else:
            assert part.url is not None
            data = await _resolve(session, part.url, limit - len(out))
        if len(out) + len(data) > limit:
            raise TooBig
        out += data
    return bytes(out)


async def _resolve(session: IMAPSession, url: str, room: int) -> bytes:
    """The bytes `url` names, read from the user's own store."""
    assert session.st.user is not None
    parsed = parse_url(url, user=session.st.user, hosts=_hosts(session))
    store = session.ctx.store
    view = session.st.view
    if parsed.mailbox is None:
        if view is None:
            raise BadURL(url, "a relative URL needs a selected mailbox")
        mailbox = view.mailbox
    else:
        found = await session.call(store.get_mailbox, session.st.user, parsed.mailbox)
        if found is None:
            raise BadURL(url, "no such mailbox")
        mailbox = found
    if parsed.uidvalidity is not None and parsed.uidvalidity != mailbox.uidvalidity:
        raise BadURL(url, "UIDVALIDITY does not match")
    messages = await session.call(store.messages_by_uid, mailbox, [parsed.uid])
    if not messages:
        raise BadURL(url, "no such message")
    [message] = messages
    if max(message.size, message.crlf_size or 0) > session.ctx.append_limit:
        raise TooBig
    if parsed.section is None and parsed.partial is None and (message.crlf_size or message.size) > room:
        raise TooBig
    body = await session.call(store.read_body, message)
    summary = message.summary

    def summary_of() -> dict:
        return fetching.message_summary(message, body) if "bodystructure" not in summary else summary

    data = fetching.body_section(body, summary_of, parsed.section or Section())
    if parsed.partial is not None:
        offset, length = parsed.partial
        data = data[offset : None if length is None else offset + length]
    return data


def _hosts(session: IMAPSession) -> set[str]:
    """The names a URL may give this server by: its hostname and the address the client reached."""
    hosts = {session.ctx.hostname.lower()}
    if session.local_address:
        hosts.add(session.local_address.lower())
    return hosts
