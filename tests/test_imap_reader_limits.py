"""The command reader's limits before login: small, and an oversize LITERAL+ is fatal, not skipped."""

from __future__ import annotations

from mailpipe_gateway.imap.reader import (
    PREAUTH_MAX_LINE,
    PREAUTH_MAX_LITERAL,
    CommandReader,
    ContinuationRequest,
    Event,
    Limit,
    LimitExceeded,
    RawCommand,
)


def preauth() -> CommandReader:
    return CommandReader(max_line=PREAUTH_MAX_LINE, max_literal=PREAUTH_MAX_LITERAL, skip_oversize=False)


def events(reader: CommandReader, data: bytes) -> list[Event]:
    reader.feed(data)
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def test_an_oversize_non_synchronizing_literal_is_fatal_at_once() -> None:
    reader = preauth()
    found = events(reader, b"a LOGIN {41943040+}\r\n" + b"x" * 1000)
    assert found == [LimitExceeded(Limit.LITERAL, "a", "LOGIN", PREAUTH_MAX_LITERAL, 41943040, fatal=True)]


def test_a_non_synchronizing_literal_after_an_oversize_line_is_fatal_too() -> None:
    reader = preauth()
    found = events(reader, b"a ID " + b"x" * PREAUTH_MAX_LINE + b" {5000000+}\r\n")
    assert len(found) == 1 and isinstance(found[0], LimitExceeded)
    assert found[0].limit is Limit.LINE and found[0].fatal


def test_an_oversize_synchronizing_literal_is_refused_but_not_fatal() -> None:
    reader = preauth()
    found = events(reader, b"a LOGIN {8193}\r\nb NOOP\r\n")
    assert found == [
        LimitExceeded(Limit.LITERAL, "a", "LOGIN", PREAUTH_MAX_LITERAL, 8193),
        RawCommand((b"b NOOP",)),
    ]


def test_after_login_the_full_limits_apply_and_oversize_literals_are_skipped() -> None:
    reader = preauth()
    assert events(reader, b"a LOGIN {8192}\r\n") == [ContinuationRequest("a", "LOGIN", 8192, False)]
    assert len(events(reader, b"u" * 8192 + b" p\r\n")) == 1
    reader.set_limits(max_line=65536, max_literal=100_000, skip_oversize=True)
    assert events(reader, b"b APPEND INBOX {50000}\r\n") == [ContinuationRequest("b", "APPEND", 50000, False)]
    assert len(events(reader, b"m" * 50000 + b"\r\n")) == 1
    found = events(reader, b"c APPEND INBOX {200000+}\r\n" + b"m" * 200_000 + b"\r\nd NOOP\r\n")
    assert found == [LimitExceeded(Limit.LITERAL, "c", "APPEND", 100_000, 200_000), RawCommand((b"d NOOP",))]
