"""Framing client input into commands: lines, literals, and the limits that bound a client's memory.

A command is a line, unless the line ends with a literal announcement (RFC 9051 4.3, RFC 7888,
RFC 3516): ``{n}`` (synchronizing: the client waits for a ``+`` continuation request before it
sends the n octets), ``{n+}`` (non-synchronizing, LITERAL+ / LITERAL-), or ``~{n}`` / ``~{n+}``
(literal8, which may hold NUL). The n octets follow the line end, then the command goes on
with another line. ``CommandReader`` cuts the byte stream into these pieces without parsing
the grammar; ``parser.parse_command`` reads a ``RawCommand``.

The reader is pull-based so that the server decides what the next bytes mean: after
AUTHENTICATE or IDLE it calls ``expect_line()`` and gets the client's next line as a ``Line``,
and after STARTTLS it can check ``buffered`` for bytes a client (or an attacker) pipelined
before the handshake. A server drives it like this::

    reader = CommandReader(max_literal=APPENDLIMIT)
    while data := await stream.read(65536):
        reader.feed(data)
        while (event := reader.next_event()) is not None:
            if isinstance(event, ContinuationRequest):
                writer.write(b"+ Ready for literal data\\r\\n")  # or reader.refuse_literal() + NO
            elif isinstance(event, LimitExceeded):
                writer.write(event.response())
            elif isinstance(event, RawCommand):
                ...  # parse_command(event), then run it; ParseError -> "tag BAD message"
            else:  # a Line, after expect_line()
                ...

Limits: a command's text (its lines, without literals) may not exceed ``max_line`` octets, each
literal ``max_literal`` octets, and all literals of one command together ``max_literal +
max_line`` (room for an APPEND message of the maximal size plus a mailbox name sent as a
literal, but not for many maximal literals). Past a limit nothing more of the command is
stored: the reader discards the rest of the command (skipping the octets of non-synchronizing
literals, which the client sends anyway) and then reports ``LimitExceeded``. An oversize
synchronizing literal is reported as soon as it is announced, so the server refuses it before
the client sends a byte of it; the command ends there (the client sends nothing more for it).

Before login the limits are Dovecot's imap-login ones (``PREAUTH_MAX_LINE``,
``PREAUTH_MAX_LITERAL``): a stranger gets no 40 MiB buffers. An oversize non-synchronizing
literal is then not skipped but reported at once as ``fatal``: its octets come whether
or not they are wanted, so the server answers and closes rather than read megabytes for nothing.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

MAX_LINE = 64 * 1024
MAX_LITERAL = 40 * 1024 * 1024
LITERAL_MINUS_MAX = 4096  # RFC 7888 4: the largest non-synchronizing literal under LITERAL-
PREAUTH_MAX_LINE = 8192  # Dovecot's imap-login: MAX_IMAP_LINE
PREAUTH_MAX_LITERAL = 8192  # room for any LOGIN, AUTHENTICATE or ID a real client sends

_ANNOUNCEMENT = re.compile(rb"\{(\d{1,20})(\+?)\}")  # 20 digits cover number64; more is no literal
_TAG_AND_NAME = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) (?:([A-Za-z]{1,16})\b)?')
_TAIL = 32  # what is kept of a discarded line: enough for a literal announcement at its end
_HEAD = 256  # what is looked at for the tag and command name of a command being discarded


@dataclass(frozen=True)
class Literal:
    """The octets of one literal, as sent."""

    data: bytes
    binary: bool = False  # literal8: ~{n}
    synchronizing: bool = True


@dataclass(frozen=True)
class RawCommand:
    """A complete command: ``lines[i]`` (its line end removed) is followed by ``literals[i]``.

    ``lines`` has one more element than ``literals``; every line but the last ends with the
    announcement of the literal that follows it.
    """

    lines: tuple[bytes, ...]
    literals: tuple[Literal, ...] = ()

    @property
    def tag(self) -> str | None:
        return _tag_and_name(self.lines[0])[0]


@dataclass(frozen=True)
class ContinuationRequest:
    """The client announced a synchronizing literal and waits for ``+``.

    The server either sends a continuation request, or calls ``CommandReader.refuse_literal()``
    and answers the command with a tagged NO or BAD (RFC 9051 7.5), which ends it.
    """

    tag: str | None
    command: str | None  # upper-cased second word of the command, when there is one
    size: int
    binary: bool


class Limit(enum.StrEnum):
    LINE = "line"  # the command's text is longer than max_line
    LITERAL = "literal"  # a literal is larger than max_literal (or the command's literals together)
    NONSYNC = "nonsync"  # a non-synchronizing literal above 4096 octets under LITERAL-


@dataclass(frozen=True)
class LimitExceeded:
    """A command was too large; it was discarded, and the server answers it with ``response()``."""

    limit: Limit
    tag: str | None
    command: str | None
    maximum: int
    size: int | None = None  # the announced literal size, for the literal limits
    fatal: bool = False  # octets of an oversize literal are coming: answer, then close

    def response(self) -> bytes:
        """The answer RFC 9051, 7888 and 7889 suggest: BAD, or NO [TOOBIG] for an APPEND message."""
        tag = (self.tag or "*").encode("ascii")
        if self.limit is Limit.LINE:
            return tag + b" BAD Command line too long\r\n"
        if self.limit is Limit.NONSYNC:
            return tag + b" BAD [TOOBIG] Non-synchronizing literal larger than 4096 octets\r\n"
        status = b"NO" if self.command == "APPEND" else b"BAD"
        return tag + b" " + status + b" [TOOBIG] Literal larger than %d octets\r\n" % self.maximum


@dataclass(frozen=True)
class Line:
    """One line the server asked for with ``expect_line()``, its line end removed."""

    data: bytes


Event = RawCommand | ContinuationRequest | LimitExceeded | Line


class CommandReader:
    """Cuts the client's byte stream into commands, asking for literals and enforcing limits."""

    def __init__(
        self,
        max_line: int = MAX_LINE,
        max_literal: int = MAX_LITERAL,
        literal_plus: bool = True,
        *,
        skip_oversize: bool = True,
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        # False: we advertise LITERAL- instead of LITERAL+, and enforce its 4096-octet limit.
        self.literal_plus = literal_plus
        # False: an oversize non-synchronizing literal is a fatal LimitExceeded, not skipped.
        self.skip_oversize = skip_oversize
        self._buffer = bytearray()
        self._scanned = 0  # bytes at the start of _buffer known to hold no line feed
        self._want_line = False
        self._start_command()

    def _start_command(self) -> None:
        self._lines: list[bytes] = []
        self._literals: list[Literal] = []
        self._text = 0  # octets of command text so far (its lines; literals excluded)
        self._stored = 0  # octets of literals so far
        self._literal: _Announcement | None = None  # the literal being read
        self._left = 0  # octets of that literal still to come
        self._error: LimitExceeded | None = None  # set: discard the rest of the command, then report
        self._tail = b""  # the end of a line being discarded

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client; ``next_event()`` then says what they complete."""
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Received octets not yet part of an event (non-zero after STARTTLS means injection)."""
        return len(self._buffer)

    @property
    def in_command(self) -> bool:
        """Whether a command has begun but not ended (at end of input: the client was cut off)."""
        return bool(self._buffer or self._lines or self._literal or self._error)

    def take_buffered(self) -> bytes:
        """Remove and return the received octets not yet part of an event: after COMPRESS they are
        compressed, and go through the inflater first."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return data

    def set_limits(self, *, max_line: int, max_literal: int, skip_oversize: bool) -> None:
        """New limits for the commands still to come (after login: the full ones)."""
        self.max_line, self.max_literal, self.skip_oversize = max_line, max_literal, skip_oversize

    def expect_line(self) -> None:
        """Make the next event a ``Line``: an AUTHENTICATE response, or IDLE's DONE."""
        self._want_line = True

    def refuse_literal(self) -> None:
        """Drop the command of the last ``ContinuationRequest`` instead of asking for its literal."""
        self._start_command()

    def next_event(self) -> Event | None:
        """The next complete event in the bytes fed so far, or None until more bytes come."""
        while True:
            if self._literal is not None:
                if not self._read_literal():
                    return None
                continue
            line = self._next_line()
            if line is None:
                return None
            event = self._line_event(line)
            if event is not None:
                return event

    def _read_literal(self) -> bool:
        """Take (or skip) the current literal's octets; whether it is complete."""
        assert self._literal is not None
        if self._error is not None:  # the command is being discarded: skip without storing
            skipped = min(self._left, len(self._buffer))
            del self._buffer[:skipped]
            self._left -= skipped
        elif len(self._buffer) >= self._left:
            with memoryview(self._buffer) as view, view[: self._left] as part:
                data = bytes(part)  # one copy, not two: a literal may be the APPENDLIMIT's 40 MiB
            del self._buffer[: self._left]
            self._literals.append(Literal(data, self._literal.binary, self._literal.synchronizing))
            self._left = 0
        if self._left:
            return False
        self._literal = None
        return True

    def _next_line(self) -> bytes | None:
        """The next line without its line end (only its end while discarding), or None if incomplete.

        A bare LF is taken as a line end too, as Dovecot does, for clients typing by hand.
        """
        end = self._buffer.find(b"\n", self._scanned)
        if end < 0:
            if self._error is None and self._text + len(self._buffer) > self.max_line:
                self._fail(Limit.LINE, self.max_line, bytes(self._buffer[:_HEAD]))
            if self._error is not None:  # keep no more than the tail of an oversize line
                self._tail = (self._tail + bytes(self._buffer[-_TAIL:]))[-_TAIL:]
                self._buffer.clear()
            self._scanned = len(self._buffer)
            return None
        if self._error is not None:
            line = (self._tail + bytes(self._buffer[max(0, end - _TAIL) : end]))[-_TAIL:]
        else:
            line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        self._tail = b""
        return line[:-1] if line.endswith(b"\r") else line

    def _line_event(self, line: bytes) -> Event | None:
        """What a complete line means: an event, or None when the command goes on."""
        if self._want_line:
            if self._error is None and len(line) > self.max_line:
                self._fail(Limit.LINE, self.max_line, b"")
            self._want_line = False
            error = self._error
            self._start_command()
            return error or Line(line)
        if not self._lines and self._error is None and not line:
            return None  # an empty line between commands: ignored
        if self._error is None and self._text + len(line) > self.max_line:
            self._fail(Limit.LINE, self.max_line, line[:_HEAD])
        announced = _announcement(line)
        if self._error is not None:
            if announced is not None and not announced.synchronizing:
                if not self.skip_oversize:
                    return replace(self._finish_error(), fatal=True)
                self._literal, self._left = announced, announced.size
                return None
            return self._finish_error()  # no literal, or one we never ask for: the command ends
        self._text += len(line)
        self._lines.append(line)
        if announced is None:
            command = RawCommand(tuple(self._lines), tuple(self._literals))
            self._start_command()
            return command
        size = announced.size
        if size > self.max_literal or self._stored + size > self.max_literal + self.max_line:
            self._fail(Limit.LITERAL, self.max_literal, b"", size)
        elif not announced.synchronizing and not self.literal_plus and size > LITERAL_MINUS_MAX:
            self._fail(Limit.NONSYNC, LITERAL_MINUS_MAX, b"", size)
        if self._error is not None and announced.synchronizing:
            return self._finish_error()
        if self._error is not None and not self.skip_oversize:
            return replace(self._finish_error(), fatal=True)
        self._stored += size
        self._literal, self._left = announced, size
        if announced.synchronizing:
            tag, name = _tag_and_name(self._lines[0])
            return ContinuationRequest(tag, name, size, announced.binary)
        return None

    def _fail(self, limit: Limit, maximum: int, head: bytes, size: int | None = None) -> None:
        """Start discarding the current command; ``head`` is the start of its first line if not stored."""
        tag, name = (
            (None, None) if self._want_line else _tag_and_name(self._lines[0] if self._lines else head)
        )
        self._error = LimitExceeded(limit, tag, name, maximum, size)
        self._lines, self._literals = [], []  # free what was stored: it will not be used

    def _finish_error(self) -> LimitExceeded:
        error = self._error
        assert error is not None
        self._start_command()
        return error


@dataclass(frozen=True)
class _Announcement:
    size: int
    binary: bool
    synchronizing: bool


def _announcement(line: bytes) -> _Announcement | None:
    """The literal announced at the end of ``line``, or None."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{", max(0, len(line) - 24))
    match = _ANNOUNCEMENT.fullmatch(line, start) if start >= 0 else None
    if match is None:
        return None
    binary = line[start - 1 : start] == b"~"
    return _Announcement(int(match.group(1)), binary, not match.group(2))


def _tag_and_name(line: bytes) -> tuple[str | None, str | None]:
    """The tag and upper-cased command name at the start of a command line, where they are valid."""
    match = _TAG_AND_NAME.match(line)
    if match is None:
        return None, None
    return match.group(1).decode("ascii"), (match.group(2) or b"").decode("ascii").upper() or None
