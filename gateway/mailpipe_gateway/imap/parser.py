"""The command grammar of RFC 9051 (and IMAP4rev1's), read from a ``RawCommand`` into ``commands``.

``parse_command`` returns one of the dataclasses of ``commands`` or raises ``ParseError``, whose
message the server sends as ``tag BAD message`` (``* BAD`` when the tag itself is missing). It
raises nothing else, whatever the bytes.

Extensions understood besides the base grammar: LITERAL+/- and BINARY literals (the reader),
CONDSTORE/QRESYNC (RFC 7162: SELECT parameters, CHANGEDSINCE, VANISHED, UNCHANGEDSINCE, MODSEQ),
ESEARCH and SEARCHRES (RFC 4731, 5182: RETURN, ``$``), LIST-EXTENDED, LIST-STATUS and
SPECIAL-USE (RFC 5258, 5819, 6154), ENABLE, ID (RFC 2971), SASL-IR (RFC 4959), MOVE, UNSELECT,
UIDPLUS's UID EXPUNGE, APPENDLIMIT's STATUS item, SORT and THREAD (RFC 5256, ESORT and CONTEXT's
RETURN options of RFC 5267, DISPLAYFROM/DISPLAYTO of RFC 5957), and UTF8=ACCEPT (RFC 6855: APPEND's
``UTF8 (literal8)``, no SEARCH CHARSET but UTF-8 once enabled).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable
from typing import Literal, NoReturn, TypeVar

from mailpipe_gateway.imap import mutf7
from mailpipe_gateway.imap.commands import (
    SEARCH_RETURN_OPTIONS,
    SORT_RETURN_OPTIONS,
    And,
    Append,
    AppendMessage,
    Authenticate,
    CancelUpdate,
    CatenatePart,
    Command,
    Compress,
    Contains,
    Copy,
    DateKey,
    Enable,
    Expunge,
    Fetch,
    FetchAttr,
    FetchBinarySize,
    FetchItem,
    FetchSection,
    HasFlag,
    HeaderContains,
    Id,
    InSet,
    ListMailboxes,
    Login,
    MailboxCommand,
    ModSeqKey,
    Not,
    Notify,
    NotifyGroup,
    ObjectIdKey,
    Or,
    QResync,
    Quota,
    Rename,
    Search,
    SearchKey,
    Section,
    Select,
    SequenceSet,
    SizeKey,
    Sort,
    Status,
    Store,
    Thread,
    UndecodableName,
)
from mailpipe_gateway.imap.reader import CommandReader, ContinuationRequest, RawCommand

MAX_NUMBER = 2**32 - 1  # number, nz-number: unsigned 32-bit
MAX_NUMBER64 = 2**63 - 1  # number64, mod-sequence-value: unsigned 63-bit
SORT_KEYS = frozenset(("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"))
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
MAX_DEPTH = 32  # nesting of search keys (parentheses, NOT, OR); deeper is refused, not recursed into

# Character classes of RFC 9051 9 (all 7-bit; 8-bit octets only occur inside strings).
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # ASTRING-CHAR adds "]"
_LIST_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')  # list-char adds "%", "*", "]"
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')  # ASTRING-CHAR except "+"
_FLAG = re.compile(rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+')  # flag-keyword or "\" atom
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')  # 8-bit allowed: UTF-8 (RFC 9051, 6855)
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_DIGITS = re.compile(rb"[0-9]+")
_FETCH_WORD = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_WORD = re.compile(rb"[A-Za-z.]+")
_PREVIEW_MODIFIERS = re.compile(rb" \((?:LAZY)(?: LAZY)*\)", re.IGNORECASE)
_OBJECT_ID = re.compile(rb"[A-Za-z0-9_-]{1,255}")  # RFC 8474 objectid
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"( [0-9]|[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([-+])([0-9]{2})([0-9]{2})"'
)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_SYSTEM_FLAGS = {
    flag.upper(): flag for flag in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_ATTRS = frozenset(
    (
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "EMAILID",
        "THREADID",
        "PREVIEW",
    )
)
_STORE_OPERATIONS: dict[str, Literal["replace", "add", "remove"]] = {
    "FLAGS": "replace",
    "+FLAGS": "add",
    "-FLAGS": "remove",
}
STATUS_ITEMS = frozenset(
    (
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
        "MAILBOXID",
    )
)
_LIST_SELECT_OPTIONS = frozenset(("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"))
_LIST_RETURN_OPTIONS = frozenset(("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"))
_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_UTF8_LABELS = frozenset(("UTF-8", "US-ASCII"))  # SEARCH charsets that agree with UTF8=ACCEPT
_TEXT_KEYS = frozenset(("BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"))
_DATE_KEYS: dict[str, tuple[Literal["BEFORE", "ON", "SINCE"], bool]] = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}


_T = TypeVar("_T")


class ParseError(Exception):
    """A command that does not follow the grammar: the server answers ``tag BAD message``."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag  # None when the command has no valid tag: answer "* BAD"


def parse_command(raw: RawCommand, *, utf8: bool = False, utf8_accept: bool = False) -> Command:
    """The command in ``raw``.

    ``utf8``: the client enabled IMAP4rev2 or UTF8=ACCEPT, so mailbox names are UTF-8 rather than
    modified UTF-7. ``utf8_accept``: it enabled UTF8=ACCEPT itself, which alone allows APPEND's
    ``UTF8 (literal8)`` and forbids SEARCH charsets other than UTF-8 (RFC 6855 3 and 4).
    """
    parser = _Parser(raw, utf8 or utf8_accept, utf8_accept)
    try:
        return parser.command()
    except ParseError:
        raise
    except Exception as exc:  # a bug here must still cost the client only a BAD, not the connection
        raise ParseError("Internal error reading the command", parser.tag) from exc


def parse_bytes(data: bytes, *, utf8: bool = False, utf8_accept: bool = False) -> Command:
    """The one command in ``data``: its bytes as sent, literals included, without the final CRLF.

    Meant for tests and tools; a server reads through a ``CommandReader``.
    """
    reader = CommandReader(max_line=len(data) + 2, max_literal=len(data))
    reader.feed(data + b"\r\n")
    event = reader.next_event()
    while isinstance(event, ContinuationRequest):
        event = reader.next_event()
    if not isinstance(event, RawCommand) or reader.in_command:
        raise ParseError("Expected exactly one complete command")
    return parse_command(event, utf8=utf8, utf8_accept=utf8_accept)


class _Parser:
    """A cursor over a command's lines and literals, with one method per grammar rule."""

    def __init__(self, raw: RawCommand, utf8: bool, utf8_accept: bool) -> None:
        if len(raw.lines) != len(raw.literals) + 1:
            raise ParseError("Malformed command: lines and literals do not alternate")
        self.lines = raw.lines
        self.literals = raw.literals
        self.utf8 = utf8
        self.utf8_accept = utf8_accept
        self.index = 0  # the line being read
        self.line = raw.lines[0]
        self.pos = 0
        self.tag: str | None = None
        # Where each literal's announcement starts in the line before it.
        self.announcements = [
            line.rfind(b"{") - (1 if literal.binary else 0)
            for line, literal in zip(raw.lines, raw.literals, strict=False)  # the last line has none
        ]

    # --- the cursor ---------------------------------------------------------------------------

    def fail(self, message: str) -> NoReturn:
        raise ParseError(message, self.tag)

    def peek(self) -> bytes:
        """The next octet of the current line, or b"" at its end."""
        return self.line[self.pos : self.pos + 1]

    def at_end(self) -> bool:
        return self.pos >= len(self.line) and self.index == len(self.lines) - 1

    def skip(self, text: bytes) -> bool:
        """Move past ``text`` (upper case: matched without case) if it comes next."""
        if self.line[self.pos : self.pos + len(text)].upper() == text:
            self.pos += len(text)
            return True
        return False

    def expect(self, text: bytes, what: str | None = None) -> None:
        if not self.skip(text):
            self.fail(f"Expected {what or text.decode('ascii')}")

    def sp(self) -> None:
        if not self.skip(b" "):
            self.fail("Expected a space" if not self.at_end() else "Missing arguments")

    def match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        found = pattern.match(self.line, self.pos)
        if found is None:
            return None
        self.pos = found.end()
        return found.group()

    def end(self) -> None:
        if not self.at_end():
            self.fail("Unexpected characters at the end of the command")

    def word(self, what: str) -> str:
        """An atom, upper-cased (command names, keywords, options)."""
        atom = self.match(_ATOM)
        if atom is None:
            self.fail(f"Expected {what}")
        return atom.decode("ascii").upper()

    def peek_word(self) -> str:
        found = _ATOM.match(self.line, self.pos)
        return found.group().decode("ascii").upper() if found else ""

    def parenthesized(self, item: Callable[[], _T], *, empty: bool = True) -> list[_T]:
        """``"(" item *(SP item) ")"``, or also ``"(" ")"`` when ``empty``."""
        self.expect(b"(")
        items: list[_T] = []
        if empty and self.skip(b")"):
            return items
        items.append(item())
        while not self.skip(b")"):
            self.sp()
            items.append(item())
        return items

    # --- strings and numbers ------------------------------------------------------------------

    def at_literal(self) -> bool:
        return self.index < len(self.literals) and self.pos == self.announcements[self.index]

    def literal(self) -> tuple[bytes, bool] | None:
        """The literal (its octets, whether literal8) announced here, or None if none is."""
        if not self.at_literal():
            return None
        literal = self.literals[self.index]
        self.index += 1
        self.line = self.lines[self.index]
        self.pos = 0
        return literal.data, literal.binary

    def string(self) -> bytes:
        """quoted / literal."""
        if self.peek() == b'"':
            quoted = self.match(_QUOTED)
            if quoted is None:
                self.fail("Bad quoted string")
            return _QUOTED_ESCAPE.sub(rb"\1", quoted[1:-1])
        literal = self.literal()
        if literal is None:
            self.fail("Expected a string")
        data, binary = literal
        if binary:
            self.fail("A literal8 is not allowed here")
        if b"\x00" in data:
            self.fail("NUL in a literal")
        return data

    def astring(self, what: str = "a string") -> bytes:
        if self.peek() == b'"' or self.at_literal():
            return self.string()
        atom = self.match(_ASTRING_ATOM)
        if atom is None:
            self.fail(f"Expected {what}")
        return atom

    def nstring(self) -> bytes | None:
        if self.peek_word() == "NIL":
            self.pos += 3
            return None
        return self.string()

    def text(self, data: bytes, what: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not UTF-8")

    def number(self, maximum: int = MAX_NUMBER, *, nonzero: bool = False, what: str = "a number") -> int:
        digits = self.match(_DIGITS)
        if digits is None:
            self.fail(f"Expected {what}")
        if len(digits) > 20 or int(digits) > maximum:
            self.fail(f"{what.capitalize()} is too large")
        if nonzero and digits.startswith(b"0"):  # nz-number: digit-nz *DIGIT
            self.fail(f"Expected {what} without leading zero, not 0")
        return int(digits)

    # --- common arguments ---------------------------------------------------------------------

    def mailbox_name(self, raw: bytes) -> str:
        if self.utf8:
            name = self.text(raw, "Mailbox name")
        else:
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                self.fail("Mailbox name is not valid modified UTF-7")
            try:
                name = mutf7.decode(text)
            except mutf7.MUTF7Error:
                return UndecodableName(text)  # well-formed, names no mailbox: the handler says NO
        return "INBOX" if name.upper() == "INBOX" else name

    def mailbox(self) -> str:
        return self.mailbox_name(self.astring("a mailbox name"))

    def list_mailbox(self) -> str:
        """list-mailbox: a pattern with % and *."""
        if self.peek() == b'"' or self.at_literal():
            return self.mailbox_name(self.string())
        atom = self.match(_LIST_ATOM)
        if atom is None:
            self.fail("Expected a mailbox pattern")
        return self.mailbox_name(atom)

    def flag(self) -> str:
        flag = self.match(_FLAG)
        if flag is None:
            self.fail("Expected a flag")
        text = flag.decode("ascii")
        return _SYSTEM_FLAGS.get(text.upper(), text) if text.startswith("\\") else text

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.parenthesized(self.flag))

    def seq_number(self) -> int | None:
        if self.skip(b"*"):
            return None
        return self.number(nonzero=True, what="a message number or UID")

    def sequence_set(self) -> SequenceSet:
        if self.skip(b"$"):
            return SequenceSet((), saved=True)
        ranges = []
        while True:
            first = last = self.seq_number()
            if self.skip(b":"):
                last = self.seq_number()
            ranges.append((first, last))
            if not self.skip(b","):
                return SequenceSet(tuple(ranges))

    def date(self) -> datetime.date:
        """date: d-Mon-yyyy, optionally quoted."""
        quoted = self.skip(b'"')
        found = _DATE.match(self.line, self.pos)
        if found is None:
            self.fail("Expected a date like 1-Feb-1994")
        self.pos = found.end()
        if quoted:
            self.expect(b'"', "a closing quote")
        day, month, year = found.groups()
        try:
            return datetime.date(int(year), _MONTHS.get(month.decode("ascii").upper(), 0), int(day))
        except ValueError:
            self.fail("Invalid date")

    def date_time(self) -> datetime.datetime:
        """date-time: "dd-Mon-yyyy hh:mm:ss +zzzz"."""
        found = _DATE_TIME.match(self.line, self.pos)
        if found is None:
            self.fail('Expected a date-time like "01-Feb-1994 21:23:45 +0100"')
        self.pos = found.end()
        day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = found.groups()
        try:
            offset = datetime.timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
            if int(zone_minutes) >= 60:
                raise ValueError(zone_minutes)
            zone = datetime.timezone(-offset if sign == b"-" else offset)
            return datetime.datetime(
                int(year),
                _MONTHS.get(month.decode("ascii").upper(), 0),
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=zone,
            )
        except ValueError:
            self.fail("Invalid date-time")

    # --- commands -----------------------------------------------------------------------------

    def command(self) -> Command:
        tag = self.match(_TAG)
        if tag is None:
            self.fail("Missing or invalid tag")
        self.tag = tag.decode("ascii")
        if self.at_end():
            self.fail("Missing command name")
        self.sp()
        name = self.word("a command name")
        uid = name == "UID"
        if uid:
            self.sp()
            name = self.word("a command name after UID")
            if name not in _UID_COMMANDS:
                self.fail(f"UID {name[:20]} is not a command")
        method = _COMMANDS.get(name)
        if method is None:
            self.fail("Unknown command")
        result = method(self, name, uid) if name in _UID_COMMANDS else method(self, name)
        self.end()
        return result

    def simple(self, name: str) -> Command:
        return Command(tag=self.require_tag(), name=name)

    def require_tag(self) -> str:
        assert self.tag is not None
        return self.tag

    def login(self, name: str) -> Login:
        self.sp()
        user = self.text(self.astring("a user name"), "User name")
        self.sp()
        password = self.text(self.astring("a password"), "Password")
        return Login(tag=self.require_tag(), name=name, user=user, password=password)

    def authenticate(self, name: str) -> Authenticate:
        self.sp()
        mechanism = self.word("a SASL mechanism")
        initial = None
        if not self.at_end():
            self.sp()
            encoded = self.match(_BASE64)
            if not encoded:
                self.fail("Expected a base64 initial response")
            try:  # "=" is the empty response (RFC 4959)
                initial = b"" if encoded == b"=" else base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                self.fail("Invalid base64 in the initial response")
        return Authenticate(tag=self.require_tag(), name=name, mechanism=mechanism, initial_response=initial)

    def enable(self, name: str) -> Enable:
        capabilities = []
        while True:
            self.sp()
            capabilities.append(self.word("a capability"))
            if self.at_end():
                return Enable(tag=self.require_tag(), name=name, capabilities=tuple(capabilities))

    def compress(self, name: str) -> Compress:
        self.sp()
        return Compress(tag=self.require_tag(), name=name, mechanism=self.word("a compression mechanism"))

    def id_command(self, name: str) -> Id:
        self.sp()
        if self.peek_word() == "NIL":
            self.pos += 3
            return Id(tag=self.require_tag(), name=name, params=None)

        def pair() -> tuple[str, str | None]:
            key = self.string().decode("utf-8", "replace")
            self.sp()
            value = self.nstring()
            return key, None if value is None else value.decode("utf-8", "replace")

        return Id(tag=self.require_tag(), name=name, params=tuple(self.parenthesized(pair)))

    def select(self, name: str) -> Select:
        self.sp()
        mailbox = self.mailbox()
        condstore = False
        qresync = None
        if not self.at_end():
            self.sp()
            for param in self.parenthesized(self.select_param):
                if param == "CONDSTORE":
                    condstore = True
                elif qresync is not None:
                    self.fail("QRESYNC given twice")
                else:
                    qresync = param
        return Select(
            tag=self.require_tag(),
            name=name,
            mailbox=mailbox,
            readonly=name == "EXAMINE",
            condstore=condstore,
            qresync=qresync,
        )

    def select_param(self) -> str | QResync:
        param = self.word("a SELECT parameter")
        if param == "CONDSTORE":
            return param
        if param != "QRESYNC":
            self.fail("Unknown SELECT parameter")
        self.sp()
        self.expect(b"(")
        uid_validity = self.number(nonzero=True, what="a UIDVALIDITY")
        self.sp()
        mod_seq = self.number(MAX_NUMBER64, nonzero=True, what="a mod-sequence")
        known_uids = seq_match = None
        if self.skip(b" "):
            if self.peek() != b"(":
                known_uids = self.sequence_set()
            if self.peek() == b"(" or (known_uids is not None and self.skip(b" ")):
                self.expect(b"(")
                known_numbers = self.sequence_set()
                self.sp()
                seq_match = (known_numbers, self.sequence_set())
                self.expect(b")")
        self.expect(b")")
        return QResync(uid_validity, mod_seq, known_uids, seq_match)

    def mailbox_command(self, name: str) -> MailboxCommand:
        self.sp()
        return MailboxCommand(tag=self.require_tag(), name=name, mailbox=self.mailbox())

    def quota(self, name: str) -> Quota:
        self.sp()
        root = self.text(self.astring("a quota root"), "Quota root")
        limits: list[tuple[str, int]] = []
        if name == "SETQUOTA":
            self.sp()

            def resource() -> None:
                resource_name = self.word("a resource name")
                self.sp()
                limits.append((resource_name, self.number(what="a resource limit")))

            self.parenthesized(resource)
        return Quota(tag=self.require_tag(), name=name, root=root, limits=tuple(limits))

    def rename(self, name: str) -> Rename:
        self.sp()
        old = self.mailbox()
        self.sp()
        return Rename(tag=self.require_tag(), name=name, old=old, new=self.mailbox())

    def list_command(self, name: str) -> ListMailboxes:
        self.sp()
        select_options: tuple[str, ...] = ()
        if name == "LIST" and self.peek() == b"(":
            select_options = tuple(self.parenthesized(lambda: self.word("a LIST selection option")))
            if not set(select_options) <= _LIST_SELECT_OPTIONS:
                self.fail("Unknown LIST selection option")
            # RFC 5258 3: never on its own, nor with REMOTE only (which changes no selection).
            if "RECURSIVEMATCH" in select_options and set(select_options) <= {"RECURSIVEMATCH", "REMOTE"}:
                self.fail("RECURSIVEMATCH needs another selection option than REMOTE")
            self.sp()
        reference = self.mailbox()
        self.sp()
        if name == "LIST" and self.peek() == b"(":
            patterns = tuple(self.parenthesized(self.list_mailbox, empty=False))
        else:
            patterns = (self.list_mailbox(),)
        return_options: list[str] = []
        status_items: tuple[str, ...] = ()

        def return_option() -> str:
            nonlocal status_items
            option = self.word("a LIST return option")
            if option not in _LIST_RETURN_OPTIONS:
                self.fail("Unknown LIST return option")
            if option == "STATUS":
                self.sp()
                status_items = self.status_items()
            return option

        if name == "LIST" and not self.at_end():
            self.sp()
            if self.word("RETURN") != "RETURN":
                self.fail("Expected RETURN")
            self.sp()
            return_options = self.parenthesized(return_option)
        return ListMailboxes(
            tag=self.require_tag(),
            name=name,
            reference=reference,
            patterns=patterns,
            select_options=select_options,
            return_options=tuple(return_options),
            status_items=status_items,
        )

    def status_items(self) -> tuple[str, ...]:
        items = tuple(self.parenthesized(lambda: self.word("a STATUS item"), empty=False))
        if not set(items) <= STATUS_ITEMS:
            self.fail("Unknown STATUS item")
        return items

    def status(self, name: str) -> Status:
        self.sp()
        mailbox = self.mailbox()
        self.sp()
        return Status(tag=self.require_tag(), name=name, mailbox=mailbox, items=self.status_items())

    def append(self, name: str) -> Append:
        self.sp()
        mailbox = self.mailbox()
        self.sp()
        first = self.append_message()
        more = []
        while not self.at_end():  # MULTIAPPEND (RFC 3502): another message follows
            self.sp()
            more.append(self.append_message())
        return Append(
            tag=self.require_tag(),
            name=name,
            mailbox=mailbox,
            flags=first.flags,
            internal_date=first.internal_date,
            message=first.message,
            binary=first.binary,
            catenate=first.catenate,
            more=tuple(more),
        )

    def append_message(self) -> AppendMessage:
        """``[SP flag-list] [SP date-time] SP append-data`` (without the leading space)."""
        flags: tuple[str, ...] = ()
        internal_date = None
        if self.peek() == b"(":
            flags = self.flag_list()
            self.sp()
        if self.peek() == b'"':
            internal_date = self.date_time()
            self.sp()
        catenate = None
        message = b""
        if self.peek_word() == "UTF8":
            message, binary = self.utf8_append_data(), True
        elif self.peek_word() == "CATENATE":
            catenate, binary = self.catenate(), False
        else:
            literal = self.literal()
            if literal is None:
                self.fail("Expected the message as a literal")
            message, binary = literal  # a literal8 (~{n}, ~{n+}) too: RFC 3516 and RFC 7888
        return AppendMessage(
            flags=flags, internal_date=internal_date, message=message, binary=binary, catenate=catenate
        )

    def catenate(self) -> tuple[CatenatePart, ...]:
        """RFC 4469 5: ``"CATENATE" SP "(" cat-part *(SP cat-part) ")"``, a part being ``TEXT``
        and a literal (or literal8: RFC 4469 with BINARY), or ``URL`` and an astring."""
        self.pos += len("CATENATE")
        self.sp()

        def part() -> CatenatePart:
            kind = self.word("TEXT or URL")
            self.sp()
            if kind == "TEXT":
                literal = self.literal()
                if literal is None:
                    self.fail("Expected a literal after TEXT")
                return CatenatePart(text=literal[0])
            if kind == "URL":
                return CatenatePart(url=self.astring("a URL").decode("utf-8", "replace"))
            self.fail("Expected TEXT or URL")

        return tuple(self.parenthesized(part, empty=False))

    def utf8_append_data(self) -> bytes:
        """RFC 6855 4: ``"UTF8" SP "(" literal8 ")"``, a message whose headers may be UTF-8."""
        if not self.utf8_accept:  # the data item exists only for a client that enabled it
            self.fail("APPEND's UTF8 data item needs ENABLE UTF8=ACCEPT first")
        self.pos += len("UTF8")
        self.sp()
        self.expect(b"(")
        literal = self.literal()
        if literal is None or not literal[1]:
            self.fail("Expected the message as a literal8 (~{n}) inside UTF8 ( )")
        self.expect(b")", "a closing parenthesis after the UTF8 message")
        return literal[0]

    def copy(self, name: str, uid: bool) -> Copy:
        self.sp()
        sequence_set = self.sequence_set()
        self.sp()
        return Copy(
            tag=self.require_tag(), name=name, uid=uid, sequence_set=sequence_set, mailbox=self.mailbox()
        )

    def expunge(self, name: str, uid: bool) -> Expunge:
        uids = None
        if uid:
            self.sp()
            uids = self.sequence_set()
        return Expunge(tag=self.require_tag(), name=name, uid=uid, uids=uids)

    def store(self, name: str, uid: bool) -> Store:
        self.sp()
        sequence_set = self.sequence_set()
        self.sp()
        unchanged_since = None
        if self.peek() == b"(":
            self.expect(b"(")
            if self.word("UNCHANGEDSINCE") != "UNCHANGEDSINCE":
                self.fail("Unknown STORE modifier")
            self.sp()
            unchanged_since = self.number(MAX_NUMBER64, what="a mod-sequence")
            self.expect(b")")
            self.sp()
        item = self.word("FLAGS, +FLAGS or -FLAGS")
        silent = item.endswith(".SILENT")
        operation = _STORE_OPERATIONS.get(item.removesuffix(".SILENT"))
        if operation is None:
            self.fail("Expected FLAGS, +FLAGS or -FLAGS")
        self.sp()
        if self.peek() == b"(":
            flags = self.flag_list()
        else:
            flags = (self.flag(),)
            while self.skip(b" "):
                flags += (self.flag(),)
        return Store(
            tag=self.require_tag(),
            name=name,
            uid=uid,
            sequence_set=sequence_set,
            operation=operation,
            silent=silent,
            flags=flags,
            unchanged_since=unchanged_since,
        )

    # --- FETCH --------------------------------------------------------------------------------

    def fetch(self, name: str, uid: bool) -> Fetch:
        self.sp()
        sequence_set = self.sequence_set()
        self.sp()
        items: tuple[FetchItem, ...]
        if self.peek() == b"(":
            items = tuple(self.parenthesized(self.fetch_att, empty=False))
        elif self.peek_word() in _FETCH_MACROS:
            items = tuple(FetchAttr(attr) for attr in _FETCH_MACROS[self.word("a macro")])
        else:
            items = (self.fetch_att(),)
        changed_since = None
        vanished = False
        if not self.at_end():
            self.sp()
            for modifier in self.parenthesized(self.fetch_modifier, empty=False):
                if modifier is True:
                    vanished = True
                else:
                    changed_since = modifier
        if vanished and (not uid or changed_since is None):  # RFC 7162 3.2.6
            self.fail("VANISHED needs UID FETCH and CHANGEDSINCE")
        return Fetch(
            tag=self.require_tag(),
            name=name,
            uid=uid,
            sequence_set=sequence_set,
            items=items,
            changed_since=changed_since,
            vanished=vanished,
        )

    def fetch_modifier(self) -> int | bool:
        modifier = self.word("a FETCH modifier")
        if modifier == "VANISHED":
            return True
        if modifier != "CHANGEDSINCE":
            self.fail("Unknown FETCH modifier")
        self.sp()
        return self.number(MAX_NUMBER64, what="a mod-sequence")

    def fetch_att(self) -> FetchItem:
        word = self.match(_FETCH_WORD)
        if word is None:
            self.fail("Expected a FETCH attribute")
        name = word.decode("ascii").upper()
        if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK") and self.peek() == b"[":
            binary = name.startswith("BINARY")
            section = Section(self.section_part(bracketed=True)) if binary else self.section()
            partial = None
            if self.skip(b"<"):
                offset = self.number(MAX_NUMBER64, what="a partial offset")
                self.expect(b".")
                partial = (offset, self.number(MAX_NUMBER64, nonzero=True, what="a partial length"))
                self.expect(b">")
            return FetchSection(section, peek=name.endswith(".PEEK"), binary=binary, partial=partial)
        if name == "BINARY.SIZE" and self.peek() == b"[":
            return FetchBinarySize(self.section_part(bracketed=True))
        if name not in _FETCH_ATTRS:
            self.fail("Unknown FETCH attribute")
        if name == "PREVIEW" and _PREVIEW_MODIFIERS.match(self.line, self.pos):
            self.sp()  # RFC 8970: PREVIEW (LAZY); LAZY is the only modifier
            self.parenthesized(lambda: self.word("LAZY"), empty=False)
            return FetchAttr("PREVIEW.LAZY")
        return FetchAttr(name)

    def section_part(self, *, bracketed: bool = False) -> tuple[int, ...]:
        """section-part: 1.2.3; with ``bracketed``, section-binary: [1.2.3] or []."""
        if bracketed:
            self.expect(b"[")
            if self.skip(b"]"):
                return ()
        part = [self.number(nonzero=True, what="a part number")]
        while self.line[self.pos : self.pos + 1] == b"." and self.line[self.pos + 1 : self.pos + 2].isdigit():
            self.pos += 1
            part.append(self.number(nonzero=True, what="a part number"))
        if bracketed:
            self.expect(b"]")
        return tuple(part)

    def section(self) -> Section:
        self.expect(b"[")
        if self.skip(b"]"):
            return Section()
        part: tuple[int, ...] = ()
        if self.peek().isdigit():
            part = self.section_part()
            if not self.skip(b"."):
                self.expect(b"]")
                return Section(part)
        word = self.match(_SECTION_WORD)
        text = word.decode("ascii").upper() if word else ""
        fields: tuple[str, ...] = ()
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            self.sp()
            fields = self.header_list()
        elif text not in ("HEADER", "TEXT", "MIME") or (text == "MIME" and not part):
            self.fail("Unknown section")
        self.expect(b"]")
        return Section(part, text, fields)

    def header_list(self) -> tuple[str, ...]:
        return tuple(
            self.parenthesized(lambda: self.astring("a header field name").decode("latin-1"), empty=False)
        )

    # --- SEARCH -------------------------------------------------------------------------------

    def search(self, name: str, uid: bool) -> Search:
        self.sp()
        return_options = partial = None
        if self.peek_word() == "RETURN":
            return_options, partial = self.return_options(SEARCH_RETURN_OPTIONS)
            self.sp()
        charset = None
        if self.peek_word() == "CHARSET":
            self.pos += len("CHARSET")
            self.sp()
            charset = self.astring("a charset").decode("ascii", "replace").upper()
            if self.utf8_accept and charset not in _UTF8_LABELS:
                # RFC 6855 3: after ENABLE UTF8=ACCEPT a CHARSET contradicts the UTF-8 the strings
                # are in, and SHOULD get BAD. One that says UTF-8 (or its subset US-ASCII) is no
                # contradiction, and clients that always name it keep working.
                self.fail("SEARCH CHARSET after ENABLE UTF8=ACCEPT can only be UTF-8")
            self.sp()
        keys = [self.search_key(0)]
        while not self.at_end():
            self.sp()
            keys.append(self.search_key(0))
        return Search(
            tag=self.require_tag(),
            name=name,
            uid=uid,
            charset=charset,
            criteria=keys[0] if len(keys) == 1 else And(tuple(keys)),
            return_options=return_options,
            partial=partial,
        )

    def search_key(self, depth: int) -> SearchKey:
        if depth > MAX_DEPTH:
            self.fail("Search keys nested too deeply")
        first = self.peek()
        if first == b"(":
            keys = self.parenthesized(lambda: self.search_key(depth + 1), empty=False)
            return keys[0] if len(keys) == 1 else And(tuple(keys))
        if first.isdigit() or first in (b"*", b"$"):
            return InSet(self.sequence_set())
        key = self.word("a search key")
        if key == "ALL":
            return And()
        if key in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[key]
            return HasFlag(flag, present)
        if key == "NEW":
            return And((HasFlag("\\Recent"), HasFlag("\\Seen", False)))
        if key == "NOT":
            self.sp()
            return Not(self.search_key(depth + 1))
        if key == "OR":
            self.sp()
            left = self.search_key(depth + 1)
            self.sp()
            return Or(left, self.search_key(depth + 1))
        self.sp()
        if key in ("KEYWORD", "UNKEYWORD"):
            keyword = self.match(_ATOM)
            if keyword is None:
                self.fail("Expected a keyword")
            return HasFlag(keyword.decode("ascii"), key == "KEYWORD")
        if key in _TEXT_KEYS:
            return Contains(key, self.astring())
        if key == "HEADER":
            field = self.astring("a header field name").decode("latin-1")
            self.sp()
            return HeaderContains(field, self.astring())
        if key in _DATE_KEYS:
            relation, sent = _DATE_KEYS[key]
            return DateKey(relation, self.date(), sent)
        if key in ("LARGER", "SMALLER"):
            return SizeKey(key == "LARGER", self.number(MAX_NUMBER64, what="a size"))
        if key == "UID":
            return InSet(self.sequence_set(), uid=True)
        if key == "MODSEQ":
            return self.modseq_key()
        if key in ("EMAILID", "THREADID"):
            object_id = self.match(_OBJECT_ID)
            if object_id is None:
                self.fail(f"Expected an object id after {key}")
            return ObjectIdKey(key, object_id.decode("ascii"))
        self.fail("Unknown search key")

    def modseq_key(self) -> ModSeqKey:
        entry = entry_type = None
        if self.peek() == b'"':
            entry = self.string().decode("ascii", "replace")
            if not entry.lower().startswith("/flags/"):
                self.fail("Expected a /flags/ entry name")
            self.sp()
            entry_type = self.word("priv, shared or all").lower()
            if entry_type not in ("priv", "shared", "all"):
                self.fail("Expected priv, shared or all")
            self.sp()
        return ModSeqKey(self.number(MAX_NUMBER64, what="a mod-sequence"), entry, entry_type)

    # --- SORT, THREAD, CANCELUPDATE (RFC 5256, 5267, 5957) --------------------------------------

    def sort(self, name: str, uid: bool) -> Sort:
        self.sp()
        return_options = partial = None
        if self.peek_word() == "RETURN":
            return_options, partial = self.return_options(SORT_RETURN_OPTIONS)
            self.sp()
        keys = tuple(self.parenthesized(self.sort_criterion, empty=False))
        self.sp()
        charset = self.astring("a charset").decode("ascii", "replace").upper()
        self.sp()
        return Sort(
            tag=self.require_tag(),
            name=name,
            uid=uid,
            keys=keys,
            charset=charset,
            criteria=self.search_keys(),
            return_options=return_options,
            partial=partial,
        )

    def sort_criterion(self) -> tuple[str, bool]:
        key = self.word("a sort key")
        reverse = key == "REVERSE"
        if reverse:
            self.sp()
            key = self.word("a sort key")
        if key not in SORT_KEYS:
            self.fail("Unknown sort key")
        return key, reverse

    def return_options(self, allowed: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, int] | None]:
        """``RETURN (option ...)`` with RFC 5267's ``PARTIAL low:high``: the options, upper-cased,
        and the partial range (low <= high), if given."""
        self.pos += len("RETURN")
        self.sp()
        partial: tuple[int, int] | None = None

        def option() -> str:
            nonlocal partial
            word = self.word("a RETURN option")
            if word not in allowed:
                self.fail("Unknown RETURN option")
            if word == "PARTIAL":
                self.sp()
                low = self.number(nonzero=True, what="a partial range start")
                self.expect(b":")
                high = self.number(nonzero=True, what="a partial range end")
                partial = (min(low, high), max(low, high))
            return word

        return tuple(self.parenthesized(option)), partial

    def search_keys(self) -> SearchKey:
        """search-key *(SP search-key), as one key."""
        keys = [self.search_key(0)]
        while not self.at_end():
            self.sp()
            keys.append(self.search_key(0))
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def thread(self, name: str, uid: bool) -> Thread:
        self.sp()
        algorithm = self.word("a threading algorithm")
        if algorithm not in THREAD_ALGORITHMS:
            self.fail("Unknown threading algorithm")
        self.sp()
        charset = self.astring("a charset").decode("ascii", "replace").upper()
        self.sp()
        return Thread(
            tag=self.require_tag(),
            name=name,
            uid=uid,
            algorithm=algorithm,
            charset=charset,
            criteria=self.search_keys(),
        )

    def cancel_update(self, name: str) -> CancelUpdate:
        tags = []
        while not self.at_end():
            self.sp()
            tags.append(self.string().decode("utf-8", "replace"))
        if not tags:
            self.fail("CANCELUPDATE needs the tags of the searches to cancel")
        return CancelUpdate(tag=self.require_tag(), name=name, tags=tuple(tags))

    def notify(self, name: str) -> Notify:
        """NOTIFY NONE, or NOTIFY SET [STATUS] event-group... (RFC 5465 8)."""
        self.sp()
        verb = self.word("SET or NONE")
        if verb == "NONE":
            return Notify(tag=self.require_tag(), name=name, groups=None)
        if verb != "SET":
            self.fail("Expected SET or NONE")
        self.sp()
        status = self.peek_word() == "STATUS"
        if status:
            self.word("STATUS")
            self.sp()
        groups = [self.notify_group()]
        while not self.at_end():
            self.sp()
            groups.append(self.notify_group())
            if len(groups) > MAX_NOTIFY_GROUPS:
                self.fail(f"At most {MAX_NOTIFY_GROUPS} event groups")
        # Every delivery matches each changed mailbox against these names: bounded in all.
        if sum(len(group.mailboxes) for group in groups) > MAX_NOTIFY_NAMES:
            self.fail(f"At most {MAX_NOTIFY_NAMES} mailboxes named in one NOTIFY")
        return Notify(tag=self.require_tag(), name=name, groups=tuple(groups), status=status)

    def notify_group(self) -> NotifyGroup:
        self.expect(b"(")
        kind = self.word("a mailbox filter")
        names: tuple[str, ...] = ()
        if kind in ("SUBTREE", "MAILBOXES"):
            self.sp()
            names = (
                tuple(self.parenthesized(self.mailbox, empty=False))
                if self.peek() == b"("
                else (self.mailbox(),)
            )
        elif kind not in _NOTIFY_FILTERS:
            self.fail("Unknown mailbox filter")
        self.sp()
        events: list[str] = []
        fetch: tuple[FetchItem, ...] = ()
        if self.peek_word() == "NONE":
            self.word("NONE")
        else:

            def event() -> str:
                nonlocal fetch
                word = self.word("an event")
                if word == "MESSAGENEW" and self.line[self.pos : self.pos + 2] == b" (":
                    self.sp()
                    fetch = tuple(self.parenthesized(self.fetch_att, empty=False))
                return word

            events = self.parenthesized(event, empty=False)
        self.expect(b")")
        return NotifyGroup(kind, names, tuple(events), fetch)


_UID_COMMANDS = frozenset(("COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"))
_NOTIFY_FILTERS = frozenset(("SELECTED", "SELECTED-DELAYED", "PERSONAL", "INBOXES", "SUBSCRIBED"))
MAX_NOTIFY_GROUPS = 32  # RFC 5465 sets no bound; clients send two or three
MAX_NOTIFY_NAMES = 256  # mailboxes named in all of a NOTIFY's SUBTREE and MAILBOXES filters
_COMMANDS: dict[str, Callable[..., Command]] = {
    **dict.fromkeys(
        ("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "NAMESPACE", "IDLE", "CLOSE", "UNSELECT", "CHECK"),
        _Parser.simple,
    ),
    "LOGIN": _Parser.login,
    "AUTHENTICATE": _Parser.authenticate,
    "ENABLE": _Parser.enable,
    "COMPRESS": _Parser.compress,
    "ID": _Parser.id_command,
    "SELECT": _Parser.select,
    "EXAMINE": _Parser.select,
    **dict.fromkeys(
        ("CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT"), _Parser.mailbox_command
    ),
    **dict.fromkeys(("GETQUOTA", "SETQUOTA"), _Parser.quota),
    "RENAME": _Parser.rename,
    "LIST": _Parser.list_command,
    "LSUB": _Parser.list_command,
    "STATUS": _Parser.status,
    "APPEND": _Parser.append,
    "COPY": _Parser.copy,
    "MOVE": _Parser.copy,
    "EXPUNGE": _Parser.expunge,
    "STORE": _Parser.store,
    "FETCH": _Parser.fetch,
    "SEARCH": _Parser.search,
    "SORT": _Parser.sort,
    "THREAD": _Parser.thread,
    "CANCELUPDATE": _Parser.cancel_update,
    "NOTIFY": _Parser.notify,
}
