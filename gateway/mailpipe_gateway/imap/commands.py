"""IMAP commands as typed values: what ``parser.parse_command`` returns to the command handlers.

Every command is a ``Command`` with its tag and upper-cased name; a command with arguments is
one of the subclasses below. UID FETCH/STORE/COPY/MOVE/SEARCH/EXPUNGE come back as the inner
command with ``uid=True`` (and the inner command's name). Commands without arguments
(CAPABILITY, NOOP, LOGOUT, STARTTLS, NAMESPACE, IDLE, CLOSE, UNSELECT, CHECK) are plain
``Command`` values. Mailbox names are Unicode (decoded from modified UTF-7, or from UTF-8 once
the client enabled UTF8=ACCEPT / IMAP4rev2), with any case of INBOX given as "INBOX".
Strings whose bytes matter as sent (search strings, APPEND message) stay bytes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal

from mailpipe_gateway.imap.serializer import astring


@dataclass(frozen=True)
class SequenceSet:
    """A sequence-set (RFC 9051 9): ranges of message numbers or UIDs, None standing for ``*``.

    ``saved`` is ``$``, the result a previous SEARCH saved with RETURN (SAVE) (RFC 5182); its
    ``ranges`` are empty and the handler substitutes the saved set.
    """

    ranges: tuple[tuple[int | None, int | None], ...]
    saved: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """The ranges as ``(low, high)`` with ``*`` replaced by ``largest`` (the mailbox's highest
        number or UID), each ordered (``5:2`` is ``2:5``), in the order given, not merged."""
        if self.saved:
            raise ValueError("the saved search result ($) must be substituted by the handler")
        out = []
        for first, last in self.ranges:
            a = largest if first is None else first
            b = largest if last is None else last
            out.append((min(a, b), max(a, b)))
        return out

    def __str__(self) -> str:
        if self.saved:
            return "$"

        def number(value: int | None) -> str:
            return "*" if value is None else str(value)

        return ",".join(
            number(first) if first == last else f"{number(first)}:{number(last)}"
            for first, last in self.ranges
        )


class UndecodableName(str):
    """A mailbox name (or LIST pattern) that is a valid atom or string but not modified UTF-7, as
    sent. Not a syntax error: RFC 9051 6.3.9 has LIST ignore such a pattern (tagged OK), and a
    command naming such a mailbox fails with NO, since no mailbox can have that name."""


@dataclass(frozen=True, kw_only=True)
class Command:
    tag: str
    name: str

    def undecodable_name(self) -> str | None:
        """The first mailbox name this command gives that is not modified UTF-7, if any (LIST
        patterns excepted: LIST ignores those)."""
        for field_name in ("mailbox", "old", "new"):
            value = getattr(self, field_name, None)
            if isinstance(value, UndecodableName):
                return value
        return None


@dataclass(frozen=True, kw_only=True)
class Login(Command):
    user: str
    password: str


@dataclass(frozen=True, kw_only=True)
class Authenticate(Command):
    mechanism: str  # upper-cased
    initial_response: bytes | None = None  # base64-decoded (SASL-IR); "=" is b""


@dataclass(frozen=True, kw_only=True)
class Enable(Command):
    capabilities: tuple[str, ...]  # upper-cased


@dataclass(frozen=True, kw_only=True)
class Compress(Command):
    mechanism: str  # upper-cased: DEFLATE is the one there is (RFC 4978)


@dataclass(frozen=True, kw_only=True)
class Id(Command):
    params: tuple[tuple[str, str | None], ...] | None  # None for "ID NIL"; field names as sent


@dataclass(frozen=True)
class QResync:
    """SELECT's QRESYNC parameter (RFC 7162 3.2.5)."""

    uid_validity: int
    mod_seq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None  # (message numbers, their UIDs)


@dataclass(frozen=True, kw_only=True)
class Select(Command):
    """SELECT, or EXAMINE (``readonly``)."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, kw_only=True)
class MailboxCommand(Command):
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE."""

    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Quota(Command):
    """GETQUOTA root, or SETQUOTA root (resource limit ...) (RFC 9208)."""

    root: str
    limits: tuple[tuple[str, int], ...] = ()  # SETQUOTA's resources, upper-cased


@dataclass(frozen=True, kw_only=True)
class Rename(Command):
    old: str
    new: str


@dataclass(frozen=True, kw_only=True)
class ListMailboxes(Command):
    """LIST (with RFC 5258 LIST-EXTENDED options, RFC 5819 STATUS, RFC 6154 SPECIAL-USE), or LSUB."""

    reference: str
    patterns: tuple[str, ...]  # list-mailbox patterns, with % and *
    select_options: tuple[str, ...] = ()  # upper-cased: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE
    return_options: tuple[str, ...] = ()  # upper-cased: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS
    status_items: tuple[str, ...] = ()  # RETURN (STATUS (...)) items, upper-cased


@dataclass(frozen=True, kw_only=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]  # upper-cased, e.g. ("MESSAGES", "UIDNEXT")


@dataclass(frozen=True, kw_only=True)
class Append(Command):
    """APPEND of one message, or of several (MULTIAPPEND, RFC 3502: ``more`` holds the rest).

    A message given by CATENATE (RFC 4469) has ``catenate`` set and an empty ``message``.
    """

    mailbox: str
    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None  # timezone-aware
    message: bytes
    binary: bool = False  # sent as literal8 (RFC 3516): may hold NUL and bare CR or LF
    catenate: tuple[CatenatePart, ...] | None = None
    more: tuple[AppendMessage, ...] = ()

    @property
    def messages(self) -> tuple[AppendMessage, ...]:
        first = AppendMessage(
            flags=self.flags,
            internal_date=self.internal_date,
            message=self.message,
            binary=self.binary,
            catenate=self.catenate,
        )
        return (first, *self.more)


@dataclass(frozen=True)
class CatenatePart:
    """One part of a CATENATE (RFC 4469): literal text (``TEXT``), or an IMAP URL (``URL``)."""

    text: bytes | None = None
    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class AppendMessage:
    """One message of an APPEND: a literal, or CATENATE's parts."""

    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    message: bytes = b""
    binary: bool = False
    catenate: tuple[CatenatePart, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Copy(Command):
    """COPY or MOVE."""

    uid: bool = False
    sequence_set: SequenceSet
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Expunge(Command):
    uid: bool = False
    uids: SequenceSet | None = None  # UID EXPUNGE's set (RFC 9051 6.4.9)


@dataclass(frozen=True, kw_only=True)
class Store(Command):
    uid: bool = False
    sequence_set: SequenceSet
    operation: Literal["replace", "add", "remove"]  # FLAGS, +FLAGS, -FLAGS
    silent: bool = False  # .SILENT
    flags: tuple[str, ...]
    unchanged_since: int | None = None  # CONDSTORE's UNCHANGEDSINCE modifier


# --- FETCH ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A body section spec: ``part`` numbers (empty: the whole message) and an optional text part.

    ``text`` is HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME (MIME only after part
    numbers); ``fields`` are HEADER.FIELDS' header names as sent.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join(str(number) for number in self.part)
        if self.text is not None:
            spec += ("." if spec else "") + self.text
        if self.text is not None and self.text.startswith("HEADER.FIELDS"):
            # As the client wrote them (atoms mostly), so that it recognizes its request.
            names = (astring(name.encode("latin-1")).decode("latin-1") for name in self.fields)
            spec += " (" + " ".join(names) + ")"
        return spec


@dataclass(frozen=True)
class FetchAttr:
    """A fetch attribute without arguments: ENVELOPE, FLAGS, INTERNALDATE, RFC822.SIZE, RFC822,
    RFC822.HEADER, RFC822.TEXT, BODY, BODYSTRUCTURE, UID, MODSEQ, EMAILID, THREADID (RFC 8474),
    PREVIEW, and PREVIEW (LAZY) as "PREVIEW.LAZY" (RFC 8970)."""

    name: str

    def label(self) -> str:
        """The name of the item in the FETCH response."""
        return "PREVIEW" if self.name == "PREVIEW.LAZY" else self.name


@dataclass(frozen=True)
class FetchSection:
    """BODY[section]<partial>, BODY.PEEK[...], BINARY[...] or BINARY.PEEK[...]."""

    section: Section
    peek: bool = False
    binary: bool = False
    partial: tuple[int, int] | None = None  # (offset, length)

    def label(self) -> str:
        """The name of the item in the FETCH response: .PEEK dropped, only the partial's origin."""
        origin = f"<{self.partial[0]}>" if self.partial is not None else ""
        return f"{'BINARY' if self.binary else 'BODY'}[{self.section}]{origin}"


@dataclass(frozen=True)
class FetchBinarySize:
    """BINARY.SIZE[part]."""

    part: tuple[int, ...]

    def label(self) -> str:
        return "BINARY.SIZE[" + ".".join(str(number) for number in self.part) + "]"


FetchItem = FetchAttr | FetchSection | FetchBinarySize


@dataclass(frozen=True, kw_only=True)
class Fetch(Command):
    uid: bool = False
    sequence_set: SequenceSet
    items: tuple[FetchItem, ...]  # the ALL, FAST and FULL macros expanded
    changed_since: int | None = None  # CONDSTORE's CHANGEDSINCE modifier
    vanished: bool = False  # QRESYNC's VANISHED modifier (UID FETCH with CHANGEDSINCE only)


# --- SEARCH --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class And:
    """All keys match; no keys (the ALL key) matches every message."""

    keys: tuple[SearchKey, ...] = ()


@dataclass(frozen=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class Not:
    key: SearchKey


@dataclass(frozen=True)
class InSet:
    """A sequence set of message numbers, or of UIDs (the UID key)."""

    sequence_set: SequenceSet
    uid: bool = False


@dataclass(frozen=True)
class HasFlag:
    """ANSWERED, SEEN, KEYWORD x, ... (present) and UNANSWERED, UNSEEN, UNKEYWORD x, ... (not present).

    System flags come with their canonical spelling ("\\Seen"); NEW and OLD are rewritten with
    \\Recent and \\Seen.
    """

    flag: str
    present: bool = True


@dataclass(frozen=True)
class Contains:
    """BCC, BODY, CC, FROM, SUBJECT, TEXT or TO (``field``) contains ``value`` (in the charset)."""

    field: str
    value: bytes


@dataclass(frozen=True)
class HeaderContains:
    """HEADER name value: the named header field contains value (any such field for b"")."""

    name: str
    value: bytes


@dataclass(frozen=True)
class DateKey:
    """BEFORE/ON/SINCE (internal date) or SENTBEFORE/SENTON/SENTSINCE (Date header, ``sent``)."""

    relation: Literal["BEFORE", "ON", "SINCE"]
    date: datetime.date
    sent: bool = False


@dataclass(frozen=True)
class SizeKey:
    """LARGER n (``larger``) or SMALLER n: RFC822.SIZE compared with n."""

    larger: bool
    size: int


@dataclass(frozen=True)
class ModSeqKey:
    """MODSEQ [entry-name entry-type] n (RFC 7162 3.1.5): the mod-sequence is at least n."""

    mod_seq: int
    entry: str | None = None  # "/flags/\\draft"
    entry_type: str | None = None  # "priv", "shared" or "all"


@dataclass(frozen=True)
class ObjectIdKey:
    """EMAILID x or THREADID x (RFC 8474 6): the message's object id is x."""

    kind: Literal["EMAILID", "THREADID"]
    object_id: str


SearchKey = (
    And | Or | Not | InSet | HasFlag | Contains | HeaderContains | DateKey | SizeKey | ModSeqKey | ObjectIdKey
)

# RFC 4731 and 5182; PARTIAL, UPDATE and CONTEXT from RFC 5267 (CONTEXT=SEARCH).
SEARCH_RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL", "UPDATE", "CONTEXT")


@dataclass(frozen=True, kw_only=True)
class Search(Command):
    uid: bool = False
    charset: str | None = None  # upper-cased CHARSET argument; None: US-ASCII, or UTF-8 in IMAP4rev2
    criteria: SearchKey = field(default_factory=And)  # one key, or And of the top-level keys
    # None: no RETURN (a classic SEARCH response in IMAP4rev1); otherwise the ESEARCH options,
    # upper-cased; RETURN () means ALL (RFC 4731).
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL low:high), RFC 5267 4.4


# --- SORT and THREAD (RFC 5256, 5267, 5957) --------------------------------------------------------

SORT_RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "PARTIAL", "UPDATE", "CONTEXT")


@dataclass(frozen=True, kw_only=True)
class Sort(Command):
    """SORT / UID SORT: the messages matching ``criteria`` in the order of ``keys``."""

    uid: bool = False
    keys: tuple[tuple[str, bool], ...]  # (sort key upper-cased, REVERSE before it)
    charset: str  # upper-cased
    criteria: SearchKey = field(default_factory=And)
    # None: a classic SORT response; otherwise ESORT's RETURN options, upper-cased (RFC 5267).
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None  # RETURN (PARTIAL low:high), 1-based, low <= high


@dataclass(frozen=True, kw_only=True)
class Thread(Command):
    """THREAD / UID THREAD with ``algorithm`` ORDEREDSUBJECT or REFERENCES (upper-cased)."""

    uid: bool = False
    algorithm: str
    charset: str
    criteria: SearchKey = field(default_factory=And)


@dataclass(frozen=True, kw_only=True)
class CancelUpdate(Command):
    """CANCELUPDATE tag... (RFC 5267 4.3): stop the UPDATE notifications of those searches."""

    tags: tuple[str, ...]


# --- NOTIFY (RFC 5465) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyGroup:
    """One event group: a mailbox filter (upper-cased: SELECTED, SELECTED-DELAYED, PERSONAL,
    INBOXES, SUBSCRIBED, SUBTREE, MAILBOXES), its names for SUBTREE/MAILBOXES, the events asked
    for (upper-cased, unknown ones kept for the handler's BADEVENT), and MessageNew's fetch-atts."""

    filter: str
    mailboxes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    fetch: tuple[FetchItem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Notify(Command):
    groups: tuple[NotifyGroup, ...] | None  # None: NOTIFY NONE
    status: bool = False  # NOTIFY SET STATUS: the initial STATUS of each mailbox watched
