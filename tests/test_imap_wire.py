"""The IMAP wire layer: framing (reader), the command grammar (parser) and responses (serializer)."""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpipe.mime import summarize
from mailpipe_gateway.imap import serializer
from mailpipe_gateway.imap.commands import (
    And,
    Append,
    Authenticate,
    CatenatePart,
    Command,
    Contains,
    Copy,
    DateKey,
    Enable,
    Expunge,
    Fetch,
    FetchAttr,
    FetchBinarySize,
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
    Or,
    QResync,
    Rename,
    Search,
    Section,
    Select,
    SequenceSet,
    SizeKey,
    Status,
    Store,
    UndecodableName,
)
from mailpipe_gateway.imap.parser import ParseError, parse_bytes, parse_command
from mailpipe_gateway.imap.reader import (
    CommandReader,
    ContinuationRequest,
    Event,
    Limit,
    LimitExceeded,
    Line,
    Literal,
    RawCommand,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
TZ = datetime.timezone


def read_all(reader: CommandReader, data: bytes, chunks: list[int] | None = None) -> list[Event]:
    """Feed ``data`` (in pieces of the given sizes, else at once) and collect every event."""
    out: list[Event] = []
    pieces = [data] if chunks is None else list(split(data, chunks))
    for piece in pieces:
        reader.feed(piece)
        while (event := reader.next_event()) is not None:
            out.append(event)
    return out


def split(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    i = 0
    for size in sizes:
        yield data[i : i + size]
        i += size
    if i < len(data):
        yield data[i:]


def random_chunks(rng: random.Random, total: int) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(rng.choice([1, 1, 2, 3, 5, 8, 13, 64, 1000]))
    return sizes


def seq(*ranges: tuple[int | None, int | None]) -> SequenceSet:
    return SequenceSet(tuple(ranges))


# --- reader: framing --------------------------------------------------------------------------------


def test_reads_lines_as_commands() -> None:
    events = read_all(CommandReader(), b"a1 NOOP\r\na2 CAPABILITY\r\n\r\na3 LOGOUT\n")
    assert events == [RawCommand((b"a1 NOOP",)), RawCommand((b"a2 CAPABILITY",)), RawCommand((b"a3 LOGOUT",))]


def test_waits_for_a_complete_line() -> None:
    reader = CommandReader()
    assert read_all(reader, b"a1 NO") == []
    assert reader.in_command
    assert read_all(reader, b"OP\r") == []
    assert read_all(reader, b"\n") == [RawCommand((b"a1 NOOP",))]
    assert not reader.in_command and reader.buffered == 0


def test_synchronizing_literal_asks_for_continuation_before_the_data() -> None:
    reader = CommandReader()
    assert read_all(reader, b"a1 LOGIN {3}\r\n") == [ContinuationRequest("a1", "LOGIN", 3, False)]
    assert read_all(reader, b"bob {6}\r\n") == [ContinuationRequest("a1", "LOGIN", 6, False)]
    assert read_all(reader, b"secret\r\n") == [
        RawCommand(
            (b"a1 LOGIN {3}", b" {6}", b""),
            (Literal(b"bob"), Literal(b"secret")),
        )
    ]


def test_non_synchronizing_and_binary_literals() -> None:
    events = read_all(CommandReader(), b"a LOGIN {3+}\r\nbob {2+}\r\npw\r\nb APPEND x ~{4}\r\n\x00\r\n\n\r\n")
    assert events == [
        RawCommand(
            (b"a LOGIN {3+}", b" {2+}", b""),
            (Literal(b"bob", synchronizing=False), Literal(b"pw", synchronizing=False)),
        ),
        ContinuationRequest("b", "APPEND", 4, True),
        RawCommand((b"b APPEND x ~{4}", b""), (Literal(b"\x00\r\n\n", binary=True),)),
    ]


def test_literal_data_is_opaque() -> None:
    """Line ends, announcements and tags inside a literal are data, not framing."""
    data = b"a1 APPEND x {23+}\r\nb1 NOOP\r\nc1 LOGIN {3}\r\n\r\na2 NOOP\r\n"
    assert read_all(CommandReader(), data) == [
        RawCommand(
            (b"a1 APPEND x {23+}", b""), (Literal(b"b1 NOOP\r\nc1 LOGIN {3}\r\n", synchronizing=False),)
        ),
        RawCommand((b"a2 NOOP",)),
    ]


def test_zero_length_literal() -> None:
    assert read_all(CommandReader(), b"a LOGIN {0+}\r\n {0}\r\n\r\n") == [
        ContinuationRequest("a", "LOGIN", 0, False),
        RawCommand((b"a LOGIN {0+}", b" {0}", b""), (Literal(b"", synchronizing=False), Literal(b""))),
    ]


STREAM = (
    b"a1 LOGIN {4}\r\nfred {6+}\r\nfoobar\r\n"
    b"a2 APPEND Drafts (\\Seen) ~{19}\r\n\x00Subject: x\r\n\r\nhi\r\n\r\n"
    b"a3 SEARCH CHARSET UTF-8 TEXT {6+}\r\n\xe6\x97\xa5\xe6\x9c\xac\r\n"
    b"a4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From {5})])\r\n"
    b"\r\n"
    b"a5 APPEND x {12}\r\n}\r\n{3}\r\n{3+}\r\n\r\n"
    b"a6 LOGOUT\n"
)


def test_chunk_boundaries_do_not_matter() -> None:
    expected = read_all(CommandReader(), STREAM)
    assert len([event for event in expected if isinstance(event, RawCommand)]) == 6
    assert read_all(CommandReader(), STREAM, [1] * len(STREAM)) == expected
    rng = random.Random(7888)
    for _ in range(300):
        assert read_all(CommandReader(), STREAM, random_chunks(rng, len(STREAM))) == expected


def test_a_line_can_end_with_a_bare_lf() -> None:
    assert read_all(CommandReader(), b"a LOGIN {1}\nx {1+}\ny\n") == [
        ContinuationRequest("a", "LOGIN", 1, False),
        RawCommand((b"a LOGIN {1}", b" {1+}", b""), (Literal(b"x"), Literal(b"y", synchronizing=False))),
    ]


def test_braces_not_at_the_end_of_a_line_are_no_literal() -> None:
    assert read_all(
        CommandReader(), b"a SELECT {3} x\r\nb SELECT x{3}y\r\nc X {99999999999999999999999}\r\n"
    ) == [
        RawCommand((b"a SELECT {3} x",)),
        RawCommand((b"b SELECT x{3}y",)),
        RawCommand((b"c X {99999999999999999999999}",)),  # not a number64: a syntax error later
    ]


def test_expect_line_reads_an_authenticate_response_or_done() -> None:
    reader = CommandReader()
    assert read_all(reader, b"a AUTHENTICATE PLAIN\r\n") == [RawCommand((b"a AUTHENTICATE PLAIN",))]
    reader.expect_line()
    assert read_all(reader, b"AGJvYgBwdw==\r\nb IDLE\r\n") == [
        Line(b"AGJvYgBwdw=="),
        RawCommand((b"b IDLE",)),
    ]
    reader.expect_line()
    assert read_all(reader, b"{5}\r\n") == [Line(b"{5}")]  # no literal outside commands
    reader.expect_line()
    assert read_all(reader, b"\r\n") == [Line(b"")]


def test_refused_literal_ends_the_command() -> None:
    reader = CommandReader()
    assert read_all(reader, b"a APPEND nosuch {5}\r\n") == [ContinuationRequest("a", "APPEND", 5, False)]
    reader.refuse_literal()  # the server answers "a NO [TRYCREATE] ..." instead of "+"
    assert not reader.in_command
    assert read_all(reader, b"b NOOP\r\n") == [RawCommand((b"b NOOP",))]


def test_pipelined_bytes_after_starttls_are_visible() -> None:
    reader = CommandReader()
    reader.feed(b"a STARTTLS\r\nb LOGIN user pass\r\n")
    assert reader.next_event() == RawCommand((b"a STARTTLS",))
    assert reader.buffered == len(b"b LOGIN user pass\r\n")  # the server must drop these


# --- reader: limits ---------------------------------------------------------------------------------


def test_overlong_line_is_discarded_without_buffering() -> None:
    reader = CommandReader(max_line=1000)
    events = read_all(reader, b"t1 SELECT ")
    for _ in range(1000):
        events += read_all(reader, b"x" * 1000)
        assert reader.buffered <= 1000
    events += read_all(reader, b"\r\nt2 NOOP\r\n")
    assert events == [LimitExceeded(Limit.LINE, "t1", "SELECT", 1000), RawCommand((b"t2 NOOP",))]
    assert events[0].response() == b"t1 BAD Command line too long\r\n"  # type: ignore[union-attr]


def test_line_limit_counts_all_lines_of_a_command_but_not_literals() -> None:
    reader = CommandReader(max_line=30)
    ok = b"a LOGIN {40+}\r\n" + b"p" * 40 + b" {3+}\r\npw!\r\n"
    assert isinstance(read_all(reader, ok)[0], RawCommand)
    too_long = b"b LOGIN {3+}\r\nbob " + b"x" * 30 + b"\r\nc NOOP\r\n"
    assert read_all(reader, too_long) == [
        LimitExceeded(Limit.LINE, "b", "LOGIN", 30),
        RawCommand((b"c NOOP",)),
    ]


def test_overlong_line_ending_in_a_literal_skips_the_literal_too() -> None:
    reader = CommandReader(max_line=100)
    data = b"a1 X " + b"y" * 200 + b" {10+}\r\n0123456789 more\r\na2 NOOP\r\n"
    expected = [LimitExceeded(Limit.LINE, "a1", "X", 100), RawCommand((b"a2 NOOP",))]
    assert read_all(reader, data) == expected
    assert read_all(CommandReader(max_line=100), data, [1] * len(data)) == expected
    # A synchronizing literal is never asked for: the command ends with the announcement.
    sync = b"a1 X " + b"y" * 200 + b" {10}\r\na2 NOOP\r\n"
    assert read_all(CommandReader(max_line=100), sync, [7] * 40) == expected


def test_oversize_synchronizing_literal_is_refused_before_it_is_sent() -> None:
    reader = CommandReader(max_literal=1000)
    events = read_all(reader, b"a1 APPEND INBOX (\\Seen) {1001}\r\n")
    assert events == [LimitExceeded(Limit.LITERAL, "a1", "APPEND", 1000, 1001)]
    assert events[0].response() == b"a1 NO [TOOBIG] Literal larger than 1000 octets\r\n"  # type: ignore[union-attr]
    assert not reader.in_command
    assert read_all(reader, b"a2 NOOP\r\n") == [RawCommand((b"a2 NOOP",))]


def test_oversize_non_synchronizing_literal_is_skipped_then_reported() -> None:
    reader = CommandReader(max_literal=1000)
    events = read_all(reader, b"a1 APPEND INBOX {50000+}\r\n")
    assert events == []
    for _ in range(50):
        assert read_all(reader, b"z" * 1000) == []
        assert reader.buffered == 0  # skipped, not stored
    assert read_all(reader, b"\r\na2 NOOP\r\n") == [
        LimitExceeded(Limit.LITERAL, "a1", "APPEND", 1000, 50000),
        RawCommand((b"a2 NOOP",)),
    ]


def test_rest_of_a_rejected_command_is_discarded() -> None:
    """After an oversize literal, further literals of the same command are skipped or not asked for."""
    data = b"a1 X {2000+}\r\n" + b"q" * 2000 + b" {5+}\r\n12345 {7}\r\na2 NOOP\r\n"
    assert read_all(CommandReader(max_literal=1000), data) == [
        LimitExceeded(Limit.LITERAL, "a1", "X", 1000, 2000),
        RawCommand((b"a2 NOOP",)),
    ]


def test_literals_of_one_command_are_limited_together() -> None:
    reader = CommandReader(max_line=100, max_literal=1000)
    data = b"a X {1000+}\r\n" + b"1" * 1000 + b" {101}\r\n"
    assert read_all(reader, data) == [LimitExceeded(Limit.LITERAL, "a", "X", 1000, 101)]
    # A maximal APPEND message after a mailbox name sent as a literal still fits.
    data = b"b APPEND {5+}\r\nINBOX {1000+}\r\n" + b"m" * 1000 + b"\r\n"
    (event,) = read_all(reader, data)
    assert isinstance(event, RawCommand) and len(event.literals[1].data) == 1000


def test_literal_minus() -> None:
    reader = CommandReader(literal_plus=False)
    assert read_all(reader, b"a LOGIN {4096+}\r\n" + b"u" * 4096 + b" pw\r\n")[0] == RawCommand(
        (b"a LOGIN {4096+}", b" pw"), (Literal(b"u" * 4096, synchronizing=False),)
    )
    events = read_all(reader, b"b APPEND x {4097+}\r\n" + b"m" * 4097 + b"\r\nc NOOP\r\n")
    assert events == [LimitExceeded(Limit.NONSYNC, "b", "APPEND", 4096, 4097), RawCommand((b"c NOOP",))]
    assert events[0].response() == (  # type: ignore[union-attr]
        b"b BAD [TOOBIG] Non-synchronizing literal larger than 4096 octets\r\n"
    )
    assert read_all(reader, b"d APPEND x {5000}\r\n") == [ContinuationRequest("d", "APPEND", 5000, False)]
    # LITERAL+: any size up to the limit
    assert read_all(CommandReader(), b"e APPEND x {5000+}\r\n" + b"m" * 5000 + b"\r\n")[0] == RawCommand(
        (b"e APPEND x {5000+}", b""), (Literal(b"m" * 5000, synchronizing=False),)
    )


def test_limit_errors_without_a_tag_and_for_other_commands() -> None:
    assert read_all(CommandReader(max_line=10), b"x" * 50 + b"\r\n") == [
        LimitExceeded(Limit.LINE, None, None, 10)
    ]
    (error,) = read_all(CommandReader(max_literal=10), b"a1 LOGIN {11}\r\n")
    assert isinstance(error, LimitExceeded)
    assert error.response() == b"a1 BAD [TOOBIG] Literal larger than 10 octets\r\n"
    (error,) = read_all(CommandReader(max_line=10), b"*" * 50 + b"\r\n")
    assert isinstance(error, LimitExceeded) and error.response().startswith(b"* BAD ")
    reader = CommandReader(max_line=10)
    reader.expect_line()
    assert read_all(reader, b"a LOGIN aaaaaaaaaaaaaaaaaaaaaaaaa\r\n") == [
        LimitExceeded(Limit.LINE, None, None, 10)
    ]


# --- parser: commands -------------------------------------------------------------------------------

T = "t"
PARSED: list[tuple[bytes, Command]] = [
    # RFC 9051 examples
    (b"t CAPABILITY", Command(tag=T, name="CAPABILITY")),
    (b"t noop", Command(tag=T, name="NOOP")),
    (b"t LOGOUT", Command(tag=T, name="LOGOUT")),
    (b"t STARTTLS", Command(tag=T, name="STARTTLS")),
    (b"t NAMESPACE", Command(tag=T, name="NAMESPACE")),
    (b"t IDLE", Command(tag=T, name="IDLE")),
    (b"t CLOSE", Command(tag=T, name="CLOSE")),
    (b"t UNSELECT", Command(tag=T, name="UNSELECT")),
    (b"t CHECK", Command(tag=T, name="CHECK")),
    (b"t EXPUNGE", Expunge(tag=T, name="EXPUNGE")),
    (b"t login SMITH SESAME", Login(tag=T, name="LOGIN", user="SMITH", password="SESAME")),
    (b't LOGIN "bob" "p\\"a\\\\ss"', Login(tag=T, name="LOGIN", user="bob", password='p"a\\ss')),
    (
        b"t LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man",
        Login(tag=T, name="LOGIN", user="FRED FOOBAR", password="fat man"),
    ),
    (b"t AUTHENTICATE GSSAPI", Authenticate(tag=T, name="AUTHENTICATE", mechanism="GSSAPI")),
    (
        b"t authenticate plain dGVzdAB0ZXN0AHRlc3Q=",
        Authenticate(tag=T, name="AUTHENTICATE", mechanism="PLAIN", initial_response=b"test\x00test\x00test"),
    ),
    (
        b"t AUTHENTICATE PLAIN =",
        Authenticate(tag=T, name="AUTHENTICATE", mechanism="PLAIN", initial_response=b""),
    ),
    (b"t ENABLE CONDSTORE qresync", Enable(tag=T, name="ENABLE", capabilities=("CONDSTORE", "QRESYNC"))),
    (
        b"t ENABLE IMAP4rev2 UTF8=ACCEPT",
        Enable(tag=T, name="ENABLE", capabilities=("IMAP4REV2", "UTF8=ACCEPT")),
    ),
    (
        b't ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")',
        Id(
            tag=T,
            name="ID",
            params=(("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited")),
        ),
    ),
    (b"t ID NIL", Id(tag=T, name="ID", params=None)),
    (b't ID ("os" NIL)', Id(tag=T, name="ID", params=(("os", None),))),
    (b"t SELECT INBOX", Select(tag=T, name="SELECT", mailbox="INBOX")),
    (b't select "inbox"', Select(tag=T, name="SELECT", mailbox="INBOX")),
    (b"t EXAMINE blurdybloop", Select(tag=T, name="EXAMINE", mailbox="blurdybloop", readonly=True)),
    (b"t SELECT INBOX (CONDSTORE)", Select(tag=T, name="SELECT", mailbox="INBOX", condstore=True)),
    (
        b"t SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        Select(
            tag=T,
            name="SELECT",
            mailbox="INBOX",
            qresync=QResync(67890007, 20050715194045000, seq((41, 41), (43, 211), (214, 541))),
        ),
    ),
    (
        b"t SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        b"(5000,7500,9990:9999 15000,22500,29997)))",
        Select(
            tag=T,
            name="SELECT",
            mailbox="INBOX",
            qresync=QResync(
                67890007,
                90060115194045000,
                seq((1, 29997)),
                (
                    seq((5000, 5000), (7500, 7500), (9990, 9999)),
                    seq((15000, 15000), (22500, 22500), (29997, 29997)),
                ),
            ),
        ),
    ),
    (
        b"t SELECT INBOX (QRESYNC (1 2 (1:2 3:4)))",
        Select(
            tag=T, name="SELECT", mailbox="INBOX", qresync=QResync(1, 2, None, (seq((1, 2)), seq((3, 4))))
        ),
    ),
    (b"t CREATE owatagusiam/", MailboxCommand(tag=T, name="CREATE", mailbox="owatagusiam/")),
    (b"t DELETE blurdybloop", MailboxCommand(tag=T, name="DELETE", mailbox="blurdybloop")),
    (
        b"t SUBSCRIBE #news.comp.mail.mime",
        MailboxCommand(tag=T, name="SUBSCRIBE", mailbox="#news.comp.mail.mime"),
    ),
    (b'T UNSUBSCRIBE "a b"', MailboxCommand(tag="T", name="UNSUBSCRIBE", mailbox="a b")),
    (b"t RENAME blurdybloop sarasoop", Rename(tag=T, name="RENAME", old="blurdybloop", new="sarasoop")),
    (
        b"t SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        Select(tag=T, name="SELECT", mailbox="~peter/mail/台北/日本語"),
    ),
    (b"t CREATE Tom&-Jerry]", MailboxCommand(tag=T, name="CREATE", mailbox="Tom&Jerry]")),
    (b't LIST "" *', ListMailboxes(tag=T, name="LIST", reference="", patterns=("*",))),
    (b't LIST "" ""', ListMailboxes(tag=T, name="LIST", reference="", patterns=("",))),
    (b'T LIST "~/Mail/" "%"', ListMailboxes(tag="T", name="LIST", reference="~/Mail/", patterns=("%",))),
    (
        b"t LIST /usr/staff/jones %",
        ListMailboxes(tag=T, name="LIST", reference="/usr/staff/jones", patterns=("%",)),
    ),
    (
        b"t LIST ~/Mail/ foo*bar%]",
        ListMailboxes(tag=T, name="LIST", reference="~/Mail/", patterns=("foo*bar%]",)),
    ),
    (
        b't LIST (SUBSCRIBED) "" "*"',
        ListMailboxes(tag=T, name="LIST", reference="", patterns=("*",), select_options=("SUBSCRIBED",)),
    ),
    (
        b't LIST (subscribed RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
        ListMailboxes(
            tag=T,
            name="LIST",
            reference="",
            patterns=("%",),
            select_options=("SUBSCRIBED", "RECURSIVEMATCH"),
            return_options=("CHILDREN",),
        ),
    ),
    (
        b't LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
        ListMailboxes(
            tag=T,
            name="LIST",
            reference="",
            patterns=("%",),
            return_options=("STATUS",),
            status_items=("MESSAGES", "UNSEEN"),
        ),
    ),
    (
        b't LIST () "" ("INBOX" Drafts/% {4+}\r\nS%nt) RETURN (SPECIAL-USE SUBSCRIBED)',
        ListMailboxes(
            tag=T,
            name="LIST",
            reference="",
            patterns=("INBOX", "Drafts/%", "S%nt"),
            return_options=("SPECIAL-USE", "SUBSCRIBED"),
        ),
    ),
    (
        b't LSUB "#news." "comp.mail.*"',
        ListMailboxes(tag=T, name="LSUB", reference="#news.", patterns=("comp.mail.*",)),
    ),
    (
        b"t STATUS blurdybloop (UIDNEXT MESSAGES)",
        Status(tag=T, name="STATUS", mailbox="blurdybloop", items=("UIDNEXT", "MESSAGES")),
    ),
    (
        b"t STATUS INBOX (messages size deleted HIGHESTMODSEQ APPENDLIMIT unseen uidvalidity recent)",
        Status(
            tag=T,
            name="STATUS",
            mailbox="INBOX",
            items=(
                "MESSAGES",
                "SIZE",
                "DELETED",
                "HIGHESTMODSEQ",
                "APPENDLIMIT",
                "UNSEEN",
                "UIDVALIDITY",
                "RECENT",
            ),
        ),
    ),
    (
        b"t APPEND saved-messages (\\Seen) {10}\r\nSubject: x",
        Append(tag=T, name="APPEND", mailbox="saved-messages", flags=("\\Seen",), message=b"Subject: x"),
    ),
    (
        b't APPEND Drafts (\\seen $MDNSent \\Draft) " 7-Feb-1994 21:52:25 -0800" ~{5}\r\nab\x00\r\n',
        Append(
            tag=T,
            name="APPEND",
            mailbox="Drafts",
            flags=("\\Seen", "$MDNSent", "\\Draft"),
            internal_date=datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=TZ(datetime.timedelta(hours=-8))),
            message=b"ab\x00\r\n",
            binary=True,
        ),
    ),
    (
        b't APPEND INBOX "01-Feb-1994 21:23:45 +0130" {2+}\r\nhi',
        Append(
            tag=T,
            name="APPEND",
            mailbox="INBOX",
            internal_date=datetime.datetime(
                1994, 2, 1, 21, 23, 45, tzinfo=TZ(datetime.timedelta(minutes=90))
            ),
            message=b"hi",
        ),
    ),
    (b"t APPEND INBOX () {0}\r\n", Append(tag=T, name="APPEND", mailbox="INBOX", message=b"")),
    (b"t COPY 2:4 MEETING", Copy(tag=T, name="COPY", sequence_set=seq((2, 4)), mailbox="MEETING")),
    (b"t UID MOVE 42:69 foo", Copy(tag=T, name="MOVE", uid=True, sequence_set=seq((42, 69)), mailbox="foo")),
    (b"t MOVE $ Trash", Copy(tag=T, name="MOVE", sequence_set=SequenceSet((), saved=True), mailbox="Trash")),
    (b"t UID EXPUNGE 3000:3002", Expunge(tag=T, name="EXPUNGE", uid=True, uids=seq((3000, 3002)))),
    (
        b"t STORE 2:4 +FLAGS (\\Deleted)",
        Store(tag=T, name="STORE", sequence_set=seq((2, 4)), operation="add", flags=("\\Deleted",)),
    ),
    (
        b"t STORE 1 FLAGS ()",
        Store(tag=T, name="STORE", sequence_set=seq((1, 1)), operation="replace", flags=()),
    ),
    (
        b"t uid store 1:* -flags.silent \\Seen $Junk",
        Store(
            tag=T,
            name="STORE",
            uid=True,
            sequence_set=seq((1, None)),
            operation="remove",
            silent=True,
            flags=("\\Seen", "$Junk"),
        ),
    ),
    (
        b"t UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)",
        Store(
            tag=T,
            name="STORE",
            uid=True,
            sequence_set=seq((6, 6), (4, 4), (8, 8)),
            operation="add",
            silent=True,
            flags=("\\Deleted",),
            unchanged_since=12121230045,
        ),
    ),
    (
        b"t FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
        Fetch(
            tag=T,
            name="FETCH",
            sequence_set=seq((2, 4)),
            items=(FetchAttr("FLAGS"), FetchSection(Section((), "HEADER.FIELDS", ("DATE", "FROM")))),
        ),
    ),
    (
        b"t FETCH 1 all",
        Fetch(
            tag=T,
            name="FETCH",
            sequence_set=seq((1, 1)),
            items=tuple(FetchAttr(name) for name in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")),
        ),
    ),
    (
        b"t FETCH 1:* FAST",
        Fetch(
            tag=T,
            name="FETCH",
            sequence_set=seq((1, None)),
            items=tuple(FetchAttr(name) for name in ("FLAGS", "INTERNALDATE", "RFC822.SIZE")),
        ),
    ),
    (
        b"t FETCH *:4,7 FULL",
        Fetch(
            tag=T,
            name="FETCH",
            sequence_set=seq((None, 4), (7, 7)),
            items=tuple(
                FetchAttr(name) for name in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")
            ),
        ),
    ),
    (
        b"t UID FETCH 4827313:4828442 FLAGS",
        Fetch(
            tag=T, name="FETCH", uid=True, sequence_set=seq((4827313, 4828442)), items=(FetchAttr("FLAGS"),)
        ),
    ),
    (
        b"t FETCH 1 (body[] BODY.PEEK[1.2.HEADER] BODY[3.MIME] BODY[4.TEXT]<0.2048> body[1] BODY "
        b"BODYSTRUCTURE ENVELOPE INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE UID MODSEQ "
        b"BINARY.PEEK[1]<100.200> BINARY[] BINARY.SIZE[2.1] "
        b"BODY[HEADER.FIELDS.NOT (Received {9}\r\nX-Spam-Yo)])",
        Fetch(
            tag=T,
            name="FETCH",
            sequence_set=seq((1, 1)),
            items=(
                FetchSection(Section()),
                FetchSection(Section((1, 2), "HEADER"), peek=True),
                FetchSection(Section((3,), "MIME")),
                FetchSection(Section((4,), "TEXT"), partial=(0, 2048)),
                FetchSection(Section((1,))),
                FetchAttr("BODY"),
                FetchAttr("BODYSTRUCTURE"),
                FetchAttr("ENVELOPE"),
                FetchAttr("INTERNALDATE"),
                FetchAttr("RFC822"),
                FetchAttr("RFC822.HEADER"),
                FetchAttr("RFC822.TEXT"),
                FetchAttr("RFC822.SIZE"),
                FetchAttr("UID"),
                FetchAttr("MODSEQ"),
                FetchSection(Section((1,)), peek=True, binary=True, partial=(100, 200)),
                FetchSection(Section(), binary=True),
                FetchBinarySize((2, 1)),
                FetchSection(Section((), "HEADER.FIELDS.NOT", ("Received", "X-Spam-Yo"))),
            ),
        ),
    ),
    (
        b"t UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        Fetch(
            tag=T,
            name="FETCH",
            uid=True,
            sequence_set=seq((300, 500)),
            items=(FetchAttr("FLAGS"),),
            changed_since=12345,
            vanished=True,
        ),
    ),
    (
        b"t FETCH $ (UID INTERNALDATE)",
        Fetch(
            tag=T,
            name="FETCH",
            sequence_set=SequenceSet((), saved=True),
            items=(FetchAttr("UID"), FetchAttr("INTERNALDATE")),
        ),
    ),
    (
        b'T SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            tag="T",
            name="SEARCH",
            criteria=And(
                (
                    HasFlag("\\Flagged"),
                    DateKey("SINCE", datetime.date(1994, 2, 1)),
                    Not(Contains("FROM", b"Smith")),
                )
            ),
        ),
    ),
    (
        b't SEARCH RETURN (MIN COUNT) FLAGGED SINCE "1-Feb-1994" NOT FROM "Smith"',
        Search(
            tag=T,
            name="SEARCH",
            return_options=("MIN", "COUNT"),
            criteria=And(
                (
                    HasFlag("\\Flagged"),
                    DateKey("SINCE", datetime.date(1994, 2, 1)),
                    Not(Contains("FROM", b"Smith")),
                )
            ),
        ),
    ),
    (b"t SEARCH RETURN () ALL", Search(tag=T, name="SEARCH", return_options=(), criteria=And())),
    (
        b"t UID SEARCH RETURN (SAVE) CHARSET utf-8 TEXT {6+}\r\n\xe6\x97\xa5\xe6\x9c\xac",
        Search(
            tag=T,
            name="SEARCH",
            uid=True,
            charset="UTF-8",
            return_options=("SAVE",),
            criteria=Contains("TEXT", "日本".encode()),
        ),
    ),
    (
        b"t SEARCH OR (UNSEEN KEYWORD $Important) NOT (DELETED) 1:5,*",
        Search(
            tag=T,
            name="SEARCH",
            criteria=And(
                (
                    Or(
                        And((HasFlag("\\Seen", False), HasFlag("$Important"))),
                        Not(HasFlag("\\Deleted")),
                    ),
                    InSet(seq((1, 5), (None, None))),
                )
            ),
        ),
    ),
    (
        b"t SEARCH NEW OLD RECENT UNKEYWORD $Junk UID 10:* LARGER 100 SMALLER 20000 "
        b'HEADER "List-Id" "" SENTBEFORE 31-dec-2023 SENTON 1-Jan-2024 SENTSINCE 02-Jan-2024 '
        b"BEFORE 1-Feb-1994 ON 29-Feb-2024 BCC b CC c BODY d SUBJECT e TO f ANSWERED UNANSWERED DRAFT "
        b"UNDRAFT UNFLAGGED UNDELETED SEEN $",
        Search(
            tag=T,
            name="SEARCH",
            criteria=And(
                (
                    And((HasFlag("\\Recent"), HasFlag("\\Seen", False))),
                    HasFlag("\\Recent", False),
                    HasFlag("\\Recent"),
                    HasFlag("$Junk", False),
                    InSet(seq((10, None)), uid=True),
                    SizeKey(True, 100),
                    SizeKey(False, 20000),
                    HeaderContains("List-Id", b""),
                    DateKey("BEFORE", datetime.date(2023, 12, 31), sent=True),
                    DateKey("ON", datetime.date(2024, 1, 1), sent=True),
                    DateKey("SINCE", datetime.date(2024, 1, 2), sent=True),
                    DateKey("BEFORE", datetime.date(1994, 2, 1)),
                    DateKey("ON", datetime.date(2024, 2, 29)),
                    Contains("BCC", b"b"),
                    Contains("CC", b"c"),
                    Contains("BODY", b"d"),
                    Contains("SUBJECT", b"e"),
                    Contains("TO", b"f"),
                    HasFlag("\\Answered"),
                    HasFlag("\\Answered", False),
                    HasFlag("\\Draft"),
                    HasFlag("\\Draft", False),
                    HasFlag("\\Flagged", False),
                    HasFlag("\\Deleted", False),
                    HasFlag("\\Seen"),
                    InSet(SequenceSet((), saved=True)),
                )
            ),
        ),
    ),
    (
        b't SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        Search(tag=T, name="SEARCH", criteria=ModSeqKey(620162338, "/flags/\\draft", "all")),
    ),
    (b"t SEARCH MODSEQ 0", Search(tag=T, name="SEARCH", criteria=ModSeqKey(0))),
    (
        b"t SEARCH OR OR FROM a FROM b FROM c",
        Search(
            tag=T,
            name="SEARCH",
            criteria=Or(Or(Contains("FROM", b"a"), Contains("FROM", b"b")), Contains("FROM", b"c")),
        ),
    ),
]


@pytest.mark.parametrize(("wire", "expected"), PARSED, ids=[repr(wire[:50]) for wire, _ in PARSED])
def test_parses_commands(wire: bytes, expected: Command) -> None:
    assert parse_bytes(wire) == expected


# Commands as real clients send them: each must parse, to the command named.
CLIENTS = [
    # Thunderbird
    b'1 ID ("name" "Thunderbird" "version" "115.5.0")',
    b"2 authenticate PLAIN",
    b"3 capability",
    b"4 enable CONDSTORE",
    b'5 list (subscribed) "" "*" return (special-use)',
    b'6 select "INBOX" (CONDSTORE)',
    b"7 UID fetch 1:* (FLAGS) (CHANGEDSINCE 42)",
    b"8 UID fetch 20:23 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
    b"Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
    b"9 UID fetch 21 (UID RFC822.SIZE BODY.PEEK[])",
    b"10 UID store 21 +Flags (\\Seen)",
    b'11 append "Sent" (\\Seen) "29-Mar-2024 10:00:00 +0100" {3}\r\nabc',
    b'12 UID move 5,9 "Trash"',
    b"13 IDLE",
    b"14 UID fetch 21 (UID RFC822.SIZE BODY.PEEK[]<0.10240>)",
    b"15 UID expunge 21",
    # Apple Mail
    b'1.1 ID ("name" "Mac OS X Mail" "version" "16.0 (3774.300.61.1.2)" "os" "macOS" "os-version" "14.1")',
    b'2.1 LIST (SPECIAL-USE) "" "*"',
    b"3.2 SELECT INBOX (CONDSTORE)",
    b"4.2 UID FETCH 1:* (FLAGS UID) (CHANGEDSINCE 5)",
    b"5.2 UID FETCH 7 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (references x-ms-tnef-correlator "
    b"zimbra-cal-updated x-apple-draft-uuid x-universally-unique-identifier)])",
    b"6.2 UID SEARCH UNDELETED UNKEYWORD $Junk SINCE 1-Jan-2024",
    b'7.2 STATUS "Sent Messages" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)',
    b"8.2 UID FETCH 7 BODY.PEEK[1]<0.5120>",
    # mutt
    b'a0003 LIST "" "*"',
    b'a0004 LSUB "" "*"',
    b'a0005 SELECT "INBOX"',
    b"a0006 UID FETCH 1:4 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER "
    b"SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES "
    b"LIST-POST X-LABEL X-ORIGINAL-TO)])",
    b"a0010 UID STORE 5 +FLAGS.SILENT (\\Deleted)",
    b"a0011 UID EXPUNGE 5",
    b'a0012 STATUS "Lists/dev" (MESSAGES UNSEEN RECENT UIDNEXT UIDVALIDITY)',
    b"a0013 UID COPY 1:3,5 Archive",
    b'a0014 UID SEARCH OR OR FROM "bob" SUBJECT "bob" TO "bob"',
    # Python imaplib
    b"KFBM1 CAPABILITY",
    b'KFBM2 LOGIN user "pass word"',
    b"KFBM3 SELECT INBOX",
    b"KFBM4 FETCH 1 (RFC822)",
    b"KFBM5 UID SEARCH ALL",
    b"KFBM6 SEARCH CHARSET UTF-8 SUBJECT {6}\r\n\xe6\x97\xa5\xe6\x9c\xac",
    b'KFBM7 APPEND INBOX () "14-Jul-2023 02:44:25 +0000" {5}\r\nhello',
    b"KFBM8 STORE 1 +FLAGS \\Deleted",
    b"KFBM9 EXAMINE INBOX",
    # mbsync
    b'3 LIST "" "*" RETURN (SUBSCRIBED)',
    b"4 UID FETCH 1:1000000000 (UID FLAGS)",
    b"5 UID FETCH 3 (BODY.PEEK[HEADER.FIELDS (X-TUID)])",
    b'6 APPEND "INBOX" (\\Seen) "02-Jan-2024 10:11:12 +0000" {5+}\r\nhello',
    b"7 UID SEARCH HEADER X-TUID aBcDeFgHiJkL",
    b"8 UID STORE 4 -FLAGS.SILENT (\\Flagged)",
    b'9 CREATE "Archive/2024"',
]


def test_parses_what_real_clients_send() -> None:
    for wire in CLIENTS:
        command = parse_bytes(wire)
        assert command.tag == wire.split(b" ", 1)[0].decode(), wire
        words = wire.split(b" ")
        name = words[2] if words[1].upper() == b"UID" else words[1]
        assert command.name == name.decode().upper(), wire


def test_parses_through_the_reader_with_synchronizing_literals() -> None:
    reader = CommandReader()
    events = read_all(reader, b"a1 APPEND {5}\r\nINBOX (\\Seen) {7}\r\nSubject\r\n")
    assert [type(event) for event in events] == [ContinuationRequest, ContinuationRequest, RawCommand]
    command = parse_command(events[-1])  # type: ignore[arg-type]
    assert command == Append(tag="a1", name="APPEND", mailbox="INBOX", flags=("\\Seen",), message=b"Subject")


def test_mailbox_names_in_utf8_mode() -> None:
    assert parse_bytes(b'a SELECT "Entw\xc3\xbcrfe"', utf8=True) == Select(
        tag="a", name="SELECT", mailbox="Entwürfe"
    )
    assert parse_bytes(b"a SELECT Tom&Jerry", utf8=True) == Select(
        tag="a", name="SELECT", mailbox="Tom&Jerry"
    )
    assert parse_bytes(b"a SELECT Entw&APw-rfe") == Select(tag="a", name="SELECT", mailbox="Entwürfe")
    with pytest.raises(ParseError, match="modified UTF-7"):
        parse_bytes(b'a SELECT "Entw\xc3\xbcrfe"')
    # An atom that is not modified UTF-7 is no syntax error: the handler answers NO (or LIST
    # ignores it), so the parser hands it on as sent, marked.
    for wire in (b"a SELECT &Jjo", b"a SELECT &AGE-"):
        selected = parse_bytes(wire)
        assert isinstance(selected, Select) and isinstance(selected.mailbox, UndecodableName)
        assert selected.undecodable_name() == wire[9:].decode()
    with pytest.raises(ParseError, match="UTF-8"):
        parse_bytes(b'a SELECT "Entw\xfcrfe"', utf8=True)


def test_utf8_append_data_and_search_charsets_under_utf8_accept() -> None:
    """RFC 6855 3 and 4: what ENABLE UTF8=ACCEPT adds to the grammar, and what it takes away."""
    message = "Subject: Grüße\r\n\r\n\x00".encode()
    wire = b'15 append "Sent" (\\Seen) UTF8 (~{%d+}\r\n%s)' % (len(message), message)
    assert parse_bytes(wire, utf8_accept=True) == Append(
        tag="15", name="APPEND", mailbox="Sent", flags=("\\Seen",), message=message, binary=True
    )
    for utf8 in (False, True):  # before ENABLE, and under IMAP4rev2 alone: no such data item
        with pytest.raises(ParseError, match="ENABLE UTF8=ACCEPT"):
            parse_bytes(wire, utf8=utf8)
    with pytest.raises(ParseError, match="literal8"):
        parse_bytes(b"a APPEND x UTF8 ({1+}\r\nx)", utf8_accept=True)
    with pytest.raises(ParseError, match="closing parenthesis"):
        parse_bytes(b"a APPEND x UTF8 (~{1+}\r\nx", utf8_accept=True)
    with pytest.raises(ParseError, match="can only be UTF-8"):
        parse_bytes(b"a SEARCH CHARSET ISO-8859-1 ALL", utf8_accept=True)
    assert parse_bytes(b"a SEARCH CHARSET utf-8 ALL", utf8_accept=True) == Search(
        tag="a", name="SEARCH", charset="UTF-8"
    )
    assert parse_bytes(b"a SEARCH CHARSET ISO-8859-1 ALL", utf8=True) == Search(
        tag="a", name="SEARCH", charset="ISO-8859-1"
    )


def test_multiappend_and_catenate() -> None:
    """RFC 3502's several messages, each with its own flags and date, and RFC 4469's parts."""
    wire = (
        b'a APPEND Sent (\\Seen) {1+}\r\nx "01-Feb-1994 21:23:45 +0000" ~{2+}\r\ny\x00 '
        b'CATENATE (URL "/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1" TEXT {3+}\r\nabc URL ;UID=2)'
    )
    command = parse_bytes(wire)
    assert isinstance(command, Append)
    first, second, third = command.messages
    assert (first.flags, first.message, first.catenate) == (("\\Seen",), b"x", None)
    assert (second.message, second.binary, second.internal_date.year) == (b"y\x00", True, 1994)
    assert third.catenate == (
        CatenatePart(url="/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1"),
        CatenatePart(text=b"abc"),
        CatenatePart(url=";UID=2"),
    )


def test_fetch_item_labels_for_the_response() -> None:
    command = parse_bytes(
        b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.2048> BINARY.PEEK[1.2] BINARY.SIZE[3] "
        b"BODY[2.MIME] BODY[] FLAGS)"
    )
    assert isinstance(command, Fetch)
    labels = [item.label() for item in command.items]
    assert labels == [
        "BODY[HEADER.FIELDS (DATE FROM)]<0>",
        "BINARY[1.2]",
        "BINARY.SIZE[3]",
        "BODY[2.MIME]",
        "BODY[]",
        "FLAGS",
    ]


def test_header_field_labels_keep_what_the_client_sent() -> None:
    command = parse_bytes(b'a FETCH 1 BODY.PEEK[1.HEADER.FIELDS.NOT ("X Y" From {3+}\r\nA"B)]')
    assert isinstance(command, Fetch)
    assert command.items[0].label() == 'BODY[1.HEADER.FIELDS.NOT ("X Y" From "A\\"B")]'


def test_parse_bytes_wants_exactly_one_command() -> None:
    with pytest.raises(ParseError):
        parse_bytes(b"a NOOP\r\nb NOOP")
    with pytest.raises(ParseError):
        parse_bytes(b"a LOGIN {5}\r\nab")
    with pytest.raises(ParseError, match="Malformed"):
        parse_command(RawCommand((b"a LOGIN {1}", b""), ()))


def test_sequence_set_resolution() -> None:
    sequence_set = parse_bytes(b"a FETCH 5:2,*,7,3:* FLAGS").sequence_set  # type: ignore[attr-defined]
    assert sequence_set.resolve(10) == [(2, 5), (10, 10), (7, 7), (3, 10)]
    assert str(sequence_set) == "5:2,*,7,3:*"
    assert str(SequenceSet((), saved=True)) == "$"
    with pytest.raises(ValueError):
        SequenceSet((), saved=True).resolve(10)


REJECTED: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b" NOOP", None),
    (b"* NOOP", None),
    (b"+a NOOP", None),
    (b'"a" NOOP', None),
    (b"a", "a"),
    (b"a ", "a"),
    (b"a  NOOP", "a"),
    (b"a NOOP extra", "a"),
    (b"a NOOP ", "a"),
    (b"a FOO", "a"),
    (b"a UID NOOP", "a"),
    (b"a UID", "a"),
    (b"a DONE", "a"),
    (b"a LOGIN bob", "a"),
    (b"a LOGIN bob pw extra", "a"),
    (b'a LOGIN "bob pw', "a"),
    (b'a LOGIN "b\\ob" pw', "a"),
    (b"a LOGIN b\xc3\xb6b pw", "a"),
    (b"a LOGIN {3+}\r\na\x00b pw", "a"),
    (b"a LOGIN ~{3+}\r\nabc pw", "a"),
    (b"a LOGIN bob {3+}\r\n\xff\xfe\xfd", "a"),
    (b"a LOGIN x{3+}\r\nabc", "a"),
    (b"a LOGIN (bob) pw", "a"),
    (b"a AUTHENTICATE", "a"),
    (b"a AUTHENTICATE PLAIN !!!", "a"),
    (b"a AUTHENTICATE PLAIN AAA", "a"),
    (b"a AUTHENTICATE PLAIN ", "a"),
    (b"a ENABLE", "a"),
    (b"a ENABLE ", "a"),
    (b"a ID", "a"),
    (b'a ID ("name")', "a"),
    (b"a ID (name x)", "a"),
    (b"a SELECT", "a"),
    (b"a SELECT x (FOO)", "a"),
    (b"a SELECT x (CONDSTORE", "a"),
    (b"a SELECT x (QRESYNC (0 5))", "a"),
    (b"a SELECT x (QRESYNC (1 0))", "a"),
    (b"a SELECT x (QRESYNC (1))", "a"),
    (b"a SELECT x (QRESYNC (1 2 3:4 (1:2)))", "a"),
    (b"a SELECT x (QRESYNC (1 2) QRESYNC (1 2))", "a"),
    (b"a SELECT a%b", "a"),
    (b"a SELECT a*", "a"),
    (b"a CREATE", "a"),
    (b"a RENAME a", "a"),
    (b"a LIST", "a"),
    (b'a LIST ""', "a"),
    (b'a LIST (RECURSIVEMATCH) "" *', "a"),
    (b'a LIST (RECURSIVEMATCH RECURSIVEMATCH) "" *', "a"),
    (b'a LIST (REMOTE RECURSIVEMATCH) "" *', "a"),
    (b'a LIST (BOGUS) "" *', "a"),
    (b'a LIST "" * RETURN (BOGUS)', "a"),
    (b'a LIST "" * RETURN (STATUS ())', "a"),
    (b'a LIST "" * RETURNS ()', "a"),
    (b'a LIST "" ()', "a"),
    (b'a LSUB (SUBSCRIBED) "" *', "a"),
    (b"a STATUS x", "a"),
    (b"a STATUS x ()", "a"),
    (b"a STATUS x (BOGUS)", "a"),
    (b"a STATUS x MESSAGES", "a"),
    (b"a APPEND x", "a"),
    (b"a APPEND x (\\Seen)", "a"),
    (b'a APPEND x "01-Feb-1994 21:23:45 +0100"', "a"),
    (b'a APPEND x "bad date" {1+}\r\nx', "a"),
    (b'a APPEND x "31-Feb-1994 21:23:45 +0100" {1+}\r\nx', "a"),
    (b'a APPEND x "01-Feb-1994 25:23:45 +0100" {1+}\r\nx', "a"),
    (b'a APPEND x "01-Feb-1994 21:23:45 +0160" {1+}\r\nx', "a"),
    (b'a APPEND x "01-Foo-1994 21:23:45 +0100" {1+}\r\nx', "a"),
    (b"a APPEND x hello", "a"),
    (b"a APPEND x {1+}\r\nx {1+}\r\ny y", "a"),
    (b"a APPEND x {1+}\r\nx ", "a"),
    (b"a APPEND x CATENATE ()", "a"),
    (b"a APPEND x CATENATE (TEXT x)", "a"),
    (b"a APPEND x CATENATE (FILE {1+}\r\nx)", "a"),
    (b"a APPEND x CATENATE (URL /INBOX;UID=1", "a"),
    (b"a APPEND x (\\Seen {1+}\r\nx", "a"),
    (b"a APPEND x UTF8 (~{1+}\r\nx)", "a"),
    (b"a FETCH", "a"),
    (b"a FETCH 1", "a"),
    (b"a FETCH 0 FLAGS", "a"),
    (b"a FETCH 01 FLAGS", "a"),
    (b"a FETCH 4294967296 FLAGS", "a"),
    (b"a FETCH 1: FLAGS", "a"),
    (b"a FETCH 1,,2 FLAGS", "a"),
    (b"a FETCH $,1 FLAGS", "a"),
    (b"a FETCH 1 (FLAGS", "a"),
    (b"a FETCH 1 ()", "a"),
    (b"a FETCH 1 (ALL)", "a"),
    (b"a FETCH 1 BOGUS", "a"),
    (b"a FETCH 1 BODY.PEEK", "a"),
    (b"a FETCH 1 BINARY", "a"),
    (b"a FETCH 1 BODY[MIME]", "a"),
    (b"a FETCH 1 BODY[1.]", "a"),
    (b"a FETCH 1 BODY[0]", "a"),
    (b"a FETCH 1 BODY[1.MIME", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "a"),
    (b"a FETCH 1 BODY[TEXT.MIME]", "a"),
    (b"a FETCH 1 BINARY[TEXT]", "a"),
    (b"a FETCH 1 BINARY.SIZE", "a"),
    (b"a FETCH 1 BODY[]<0.0>", "a"),
    (b"a FETCH 1 BODY[]<0>", "a"),
    (b"a FETCH 1 BODY[]<1.2", "a"),
    (b"a FETCH 1 FLAGS (VANISHED)", "a"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "a"),
    (b"a UID FETCH 1 FLAGS (VANISHED)", "a"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE)", "a"),
    (b"a FETCH 1 FLAGS (BOGUS 1)", "a"),
    (b"a FETCH 1 FLAGS ()", "a"),
    (b"a STORE 1 FLAGS", "a"),
    (b"a STORE 1 FLAGS ", "a"),
    (b"a STORE 1 *FLAGS (\\Seen)", "a"),
    (b"a STORE 1 +FLAGS.LOUD (\\Seen)", "a"),
    (b"a STORE 1 (UNCHANGEDSINCE) FLAGS ()", "a"),
    (b"a STORE 1 (BOGUS 5) FLAGS ()", "a"),
    (b"a STORE 1 FLAGS (\\Seen", "a"),
    (b"a STORE 1 FLAGS (\\)", "a"),
    (b"a STORE 1 FLAGS \\Seen ", "a"),
    (b"a COPY 1", "a"),
    (b"a COPY x y", "a"),
    (b"a EXPUNGE 1", "a"),
    (b"a UID EXPUNGE", "a"),
    (b"a SEARCH", "a"),
    (b"a SEARCH ", "a"),
    (b"a SEARCH FOO", "a"),
    (b"a SEARCH NOT", "a"),
    (b"a SEARCH OR SEEN", "a"),
    (b"a SEARCH ()", "a"),
    (b"a SEARCH (SEEN", "a"),
    (b"a SEARCH SEEN)", "a"),
    (b"a SEARCH FROM", "a"),
    (b"a SEARCH HEADER Subject", "a"),
    (b"a SEARCH SINCE 31-Feb-2020", "a"),
    (b"a SEARCH SINCE 1-Foo-2020", "a"),
    (b"a SEARCH SINCE 1-Feb-20", "a"),
    (b'a SEARCH SINCE "1-Feb-2020', "a"),
    (b"a SEARCH LARGER x", "a"),
    (b"a SEARCH LARGER 99999999999999999999", "a"),
    (b"a SEARCH UID", "a"),
    (b"a SEARCH KEYWORD \\Seen", "a"),
    (b"a SEARCH RETURN (BOGUS) ALL", "a"),
    (b"a SEARCH RETURN ALL", "a"),
    (b"a SEARCH CHARSET", "a"),
    (b"a SEARCH CHARSET UTF-8", "a"),
    (b'a SEARCH MODSEQ "/foo/bar" all 5', "a"),
    (b'a SEARCH MODSEQ "/flags/\\\\seen" mine 5', "a"),
    (b"a SEARCH " + b"(" * 100 + b"SEEN" + b")" * 100, "a"),
    (b"a SEARCH " + b"NOT " * 5000 + b"SEEN", "a"),
    (b"a SEARCH " + b"OR SEEN " * 100 + b"SEEN", "a"),
    (b"a NOOP\x00", "a"),
    (b"a NOOP\r", "a"),
    (b"a\x00 NOOP", "a"),
]


@pytest.mark.parametrize(("wire", "tag"), REJECTED, ids=[repr(wire[:40]) for wire, _ in REJECTED])
def test_rejects_bad_syntax(wire: bytes, tag: str | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_bytes(wire)
    assert info.value.tag == tag
    assert info.value.message and "Internal" not in info.value.message
    assert not re.search(r"[\x00-\x1f]", info.value.message)


def test_max_size_sequence_numbers_and_mod_sequences() -> None:
    command = parse_bytes(b"a UID FETCH 4294967295 FLAGS (CHANGEDSINCE 9223372036854775807)")
    assert isinstance(command, Fetch) and command.changed_since == 2**63 - 1
    assert command.sequence_set == seq((2**32 - 1, 2**32 - 1))
    with pytest.raises(ParseError):
        parse_bytes(b"a UID FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)")


# --- parser: fuzzing --------------------------------------------------------------------------------

VALID = [wire for wire, _ in PARSED] + CLIENTS
FUZZ_ALPHABET = (
    b' ()[]<>{}~+-*%$:,."\\\r\n\x00\x80\xffAZaz019' + b"FLAGS BODY.PEEK[HEADER.FIELDS (FROM)] NOT OR "
)


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        position = rng.randint(0, len(data))
        action = rng.randrange(5)
        if action == 0:
            data[position:position] = bytes([rng.choice(FUZZ_ALPHABET)])
        elif action == 1 and data:
            del data[min(position, len(data) - 1)]
        elif action == 2 and data:
            data[min(position, len(data) - 1)] = rng.choice(FUZZ_ALPHABET)
        elif action == 3:
            other = rng.choice(VALID)
            start = rng.randint(0, len(other))
            data[position:position] = other[start : start + rng.randint(1, 20)]
        else:
            del data[position : position + rng.randint(1, 10)]
    return bytes(data)


def check_stream(data: bytes, chunks: list[int]) -> int:
    """Every command the reader makes of ``data`` parses or raises ParseError, nothing else."""
    reader = CommandReader(max_line=4096, max_literal=4096)
    commands = 0
    for event in read_all(reader, data, chunks):
        if isinstance(event, RawCommand):
            commands += 1
            try:
                command = parse_command(event)
            except ParseError as error:
                assert "Internal" not in error.message, (data, error.__cause__)
            else:
                assert isinstance(command, Command)
    return commands


def test_fuzz_mutated_commands() -> None:
    rng = random.Random(9051)
    parsed = 0
    for _ in range(6000):
        wire = mutate(rng, rng.choice(VALID)) + b"\r\n"
        parsed += check_stream(wire, random_chunks(rng, len(wire)))
    assert parsed > 1000


def test_fuzz_random_bytes() -> None:
    rng = random.Random(3501)
    for _ in range(3000):
        data = bytes(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(0, 80)))
        check_stream(data + b"\r\n", random_chunks(rng, len(data) + 2))
        check_stream(b"a " + data + b"\r\n", [len(data) + 4])
        raw = rng.randbytes(rng.randint(0, 80))
        check_stream(raw + b"\r\n", random_chunks(rng, len(raw) + 2))


def test_fuzz_hand_built_raw_commands() -> None:
    """The parser takes any RawCommand, even one no reader would make."""
    rng = random.Random(2088)
    for _ in range(3000):
        lines = tuple(
            bytes(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(0, 20)))
            for _ in range(rng.randint(1, 3))
        )
        literals = tuple(
            Literal(rng.randbytes(rng.randint(0, 5)), rng.random() < 0.3, rng.random() < 0.5)
            for _ in range(rng.randint(0, len(lines) - 1))
        )
        try:
            parse_command(RawCommand(lines, literals))
        except ParseError as error:
            assert "Internal" not in error.message, (lines, literals, error.__cause__)


# --- serializer -------------------------------------------------------------------------------------


def test_strings() -> None:
    assert serializer.string(b"") == b'""'
    assert serializer.string(b'say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert serializer.string(b"two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert serializer.string(b"caf\xc3\xa9") == b"{5}\r\ncaf\xc3\xa9"
    assert serializer.string(b"caf\xc3\xa9", utf8=True) == b'"caf\xc3\xa9"'
    assert serializer.string(b"caf\xe9", utf8=True) == b"{4}\r\ncaf\xe9"
    assert serializer.string(b"a\x00b") == b"{3}\r\na\x80b"
    long = b"x" * (serializer.QUOTED_MAX + 1)
    assert serializer.string(long) == b"{%d}\r\n" % len(long) + long
    assert serializer.literal(b"\x00\x01", binary=True) == b"~{2}\r\n\x00\x01"
    assert serializer.nstring(None) == b"NIL"
    assert serializer.astring(b"INBOX") == b"INBOX"
    assert serializer.astring(b"a]b") == b"a]b"
    assert serializer.astring(b"nil") == b'"nil"'
    assert serializer.astring(b"a b") == b'"a b"'
    assert serializer.astring(b"a%") == b'"a%"'
    assert serializer.astring(b"") == b'""'
    assert serializer.mailbox("~peter/mail/台北/日本語") == b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert serializer.mailbox("Sent Items") == b'"Sent Items"'
    assert serializer.mailbox("Entwürfe", utf8=True) == b'"Entw\xc3\xbcrfe"'
    assert serializer.mailbox("Tom & Jerry") == b'"Tom &- Jerry"'


def test_serialize_values_and_responses() -> None:
    value = [
        serializer.Atom("FLAGS"),
        [serializer.Atom("\\Seen"), serializer.Atom("$label")],
        "UID",
        42,
        None,
    ]
    assert serializer.serialize(value) == b'(FLAGS (\\Seen $label) "UID" 42 NIL)'
    assert serializer.serialize(("é", b"")) == b'({2}\r\n\xc3\xa9 "")'
    with pytest.raises(TypeError):
        serializer.serialize(True)
    assert serializer.status_response("a1", "OK", "SELECT completed", "READ-WRITE") == (
        b"a1 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert serializer.status_response("*", "BAD", "bad\r\nline\x00") == b"* BAD bad  line \r\n"
    assert serializer.untagged("23", "EXISTS") == b"* 23 EXISTS\r\n"
    assert (
        serializer.untagged("FLAGS", serializer.serialize([serializer.Atom("\\Seen")]))
        == b"* FLAGS (\\Seen)\r\n"
    )
    assert serializer.continuation("Ready") == b"+ Ready\r\n"
    assert serializer.continuation() == b"+ \r\n"
    assert serializer.fetch_response(12, [("UID", b"42"), ("BODY[]<0>", serializer.literal(b"ab"))]) == (
        b"* 12 FETCH (UID 42 BODY[]<0> {2}\r\nab)\r\n"
    )


def corpus(name: str) -> dict[str, Any]:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"the real-world mail corpus is missing: {path}")
    return summarize(path.read_bytes())


def test_simple_message_by_hand() -> None:
    summary = corpus("rfc2822/example01.eml")
    john = b'(("John Doe" NIL "jdoe" "machine.example"))'
    assert serializer.envelope(summary["envelope"]) == (
        b'("Fri, 21 Nov 1997 09:55:06 -0600" "Saying Hello" '
        + john
        + b" "
        + john
        + b" "
        + john
        + b' (("Mary Smith" NIL "mary" "example.net")) NIL NIL NIL "<1234@local.machine.example>")'
    )
    # No MIME-Version: text/plain, us-ascii; 36+2 and 12+2 octets in 2 lines.
    assert serializer.body_structure(summary["bodystructure"]) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 52 2 NIL NIL NIL NIL)'
    )
    assert serializer.body_structure(summary["bodystructure"], extensible=False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 52 2)'
    )


def test_address_lists_by_hand() -> None:
    summary = corpus("rfc2822/example03.eml")
    joe = b'(("Joe Q. Public" NIL "john.q.public" "example.com"))'
    assert serializer.envelope(summary["envelope"]) == (
        b'("Tue, 1 Jul 2003 10:52:37 +0200" NIL '
        + joe
        + b" "
        + joe
        + b" "
        + joe
        + b' (("Mary Smith" NIL "mary" "x.test")(NIL NIL "jdoe" "example.org")("Who?" NIL "one" "y.test"))'
        + b' ((NIL NIL "boss" "nil.test")("Giant; \\"Big\\" Box" NIL "sysservices" "example.net"))'
        + b' NIL NIL "<5678.21-Nov-1997@example.com>")'
    )


def test_multipart_by_hand() -> None:
    summary = corpus("attachment_emails/attachment_content_disposition.eml")
    first = (
        b'("text" "plain" ("charset" "ISO-8859-1" "delsp" "yes" "format" "flowed") NIL NIL '
        b'"quoted-printable" 25 1'
    )
    second = b'("text" "x-ruby-script" ("name" "hello.rb" "charset" "us-ascii") NIL NIL "7bit" 28 2'
    assert serializer.body_structure(summary["bodystructure"]) == (
        b"("
        + first
        + b" NIL NIL NIL NIL)"
        + second
        + b' NIL ("attachment" ("filename" "api.rb")) NIL NIL)'
        + b' "mixed" ("boundary" "Apple-Mail-13-196941151") NIL NIL NIL)'
    )
    assert serializer.body_structure(summary["bodystructure"], extensible=False) == (
        b"(" + first + b")" + second + b') "mixed")'
    )


def test_eight_bit_parameter_goes_out_as_a_literal() -> None:
    summary = corpus("attachment_emails/attachment_nonascii_filename.eml")
    rendered = serializer.body_structure(summary["bodystructure"])
    assert b'("name" {10}\r\nci\xc3\xable.txt "charset" "us-ascii")' in rendered
    assert b'("attachment" ("filename" {10}\r\nci\xc3\xable.txt))' in rendered


class ResponseReader:
    """A minimal reader of the response grammar's values, independent of the serializer."""

    _QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
    _LITERAL = re.compile(rb"\{([0-9]+)\}\r\n")
    _ATOM = re.compile(rb"[^ ()\r\n]+")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self) -> Any:
        value = self.value()
        assert self.pos == len(self.data), self.data[self.pos :]
        return value

    def value(self) -> Any:
        first = self.data[self.pos : self.pos + 1]
        if first == b"(":
            self.pos += 1
            items = []
            while self.data[self.pos : self.pos + 1] != b")":
                items.append(self.value())
                if self.data[self.pos : self.pos + 1] == b" ":
                    self.pos += 1
            self.pos += 1
            return items
        if first == b'"':
            found = self._QUOTED.match(self.data, self.pos)
            assert found is not None, self.data[self.pos :]
            self.pos = found.end()
            return re.sub(rb'\\(["\\])', rb"\1", found.group(1))
        if first == b"{":
            found = self._LITERAL.match(self.data, self.pos)
            assert found is not None
            end = found.end() + int(found.group(1))
            self.pos = end
            return self.data[found.end() : end]
        found = self._ATOM.match(self.data, self.pos)
        assert found is not None
        self.pos = found.end()
        atom = found.group()
        if atom == b"NIL":
            return None
        assert atom.isdigit(), atom  # strings are never sent as atoms here
        return int(atom)


def raw(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1").replace(b"\x00", b"\x80")


def expected_envelope(envelope: dict[str, Any]) -> list[Any]:
    def addresses(entries: list[dict[str, str | None]] | None) -> list[Any] | None:
        if not entries:
            return None
        return [[raw(entry[key]) for key in ("name", "adl", "mailbox", "host")] for entry in entries]

    keys = ("from", "sender", "reply_to", "to", "cc", "bcc")
    return [
        raw(envelope["date"]),
        raw(envelope["subject"]),
        *(addresses(envelope[key]) for key in keys),
        raw(envelope["in_reply_to"]),
        raw(envelope["message_id"]),
    ]


def expected_body(part: dict[str, Any], extensible: bool) -> list[Any]:
    def params(pairs: list[list[str]] | None) -> list[Any] | None:
        return [raw(item) for pair in pairs for item in pair] if pairs else None

    disposition = part["disposition"]
    extension = [
        [raw(disposition[0]), params(disposition[1])] if disposition else None,
        [raw(tag) for tag in part["language"]] if part["language"] else None,
        raw(part["location"]),
    ]
    if part["type"] == "multipart":
        children = [expected_body(child, extensible) for child in part["parts"]]
        return [
            *children,
            raw(part["subtype"]),
            *([params(part["params"]), *extension] if extensible else []),
        ]
    fields = [
        raw(part["type"]),
        raw(part["subtype"]),
        params(part["params"]),
        raw(part["id"]),
        raw(part["description"]),
        raw(part["encoding"]),
        part["size"],
    ]
    if "bodystructure" in part:
        fields += [
            expected_envelope(part["envelope"]),
            expected_body(part["bodystructure"], extensible),
            part["lines"],
        ]
    elif part["type"] == "text":
        fields.append(part["lines"])
    return fields + ([None, *extension] if extensible else [])


def test_corpus_round_trips() -> None:
    """ENVELOPE, BODYSTRUCTURE and BODY of every corpus message read back as the summary."""
    messages = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
    if not messages:
        pytest.skip(f"the real-world mail corpus is missing: {CORPUS}")
    literals = 0
    for path in messages:
        summary = summarize(path.read_bytes())
        rendered = serializer.envelope(summary["envelope"])
        literals += rendered.count(b"}\r\n")
        assert ResponseReader(rendered).read() == expected_envelope(summary["envelope"]), path
        for extensible in (True, False):
            rendered = serializer.body_structure(summary["bodystructure"], extensible=extensible)
            assert ResponseReader(rendered).read() == expected_body(summary["bodystructure"], extensible), (
                path
            )
    assert literals > 0  # the corpus has 8-bit headers: the literal path was exercised


def test_quota_commands() -> None:
    from mailpipe_gateway.imap.commands import MailboxCommand, Quota

    assert parse_bytes(b'a GETQUOTA ""') == Quota(tag="a", name="GETQUOTA", root="")
    root = parse_bytes(b"a GETQUOTAROOT inbox")
    assert root == MailboxCommand(tag="a", name="GETQUOTAROOT", mailbox="INBOX")
    assert parse_bytes(b'a SETQUOTA "" (STORAGE 512 MESSAGE 1000)') == Quota(
        tag="a", name="SETQUOTA", root="", limits=(("STORAGE", 512), ("MESSAGE", 1000))
    )
    for bad in (b"a GETQUOTA", b'a SETQUOTA "" (STORAGE)', b'a SETQUOTA "" STORAGE 5'):
        with pytest.raises(ParseError):
            parse_bytes(bad)
