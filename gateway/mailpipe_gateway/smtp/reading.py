"""Reading from the client with bounded memory, whatever it sends: the DATA section and AUTH lines.

aiosmtpd 1.4.6's own loop keeps every fragment of a line that has no CRLF, even after it has
decided the line is too long: 250 MB without a line end took the gateway from 190 to 449 MB.
Here a line's fragments are kept only while the line and the message are within their limits;
past either, the bytes are counted and dropped until the final dot, and the error is answered
then (RFC 5321 4.2.5: the reply to DATA comes after the data).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mailpipe_gateway.smtp.budget import MemoryBudget

REPLY_LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
REPLY_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
REPLY_NO_MEMORY = "452 4.3.1 Insufficient system storage, try again later"


@dataclass
class _Message:
    max_size: int | None
    max_line: int
    budget: MemoryBudget
    held: int = 0  # bytes taken from the budget
    lines: list[bytes] = field(default_factory=list)
    line: list[bytes] = field(default_factory=list)  # fragments of the line not yet ended
    line_length: int = 0
    size: int = 0
    error: str | None = None

    def add(self, piece: bytes) -> bool:
        """Take one piece of input (a whole line, or part of one); True at the final dot."""
        if not self.line_length and piece == b".\r\n":
            return True
        self.size += len(piece)
        self.line_length += len(piece)
        if self.error is None and self.max_size and self.size > self.max_size:
            self._fail(REPLY_TOO_BIG)
        if self.error is None and self.line_length > self.max_line:
            self._fail(REPLY_LINE_TOO_LONG)
        if self.error is None:
            if not self.budget.take(len(piece)):
                self._fail(REPLY_NO_MEMORY)
            else:
                self.held += len(piece)
                self.line.append(piece)
        if piece.endswith(b"\r\n"):
            if self.error is None:
                line = b"".join(self.line)
                # RFC 5321 4.5.2: a leading dot was doubled by the client.
                self.lines.append(line[1:] if line.startswith(b".") else line)
            self.line.clear()
            self.line_length = 0
        return False

    def _fail(self, reply: str) -> None:
        self.error = reply
        self.release()

    def release(self) -> None:
        self.lines.clear()
        self.line.clear()
        self.budget.give_back(self.held)
        self.held = 0


async def read_data(
    reader: asyncio.StreamReader, *, max_size: int | None, max_line: int, budget: MemoryBudget
) -> bytes | str:
    """The message up to the lone dot, dot-unstuffed, or the reply refusing it.

    The reader's own limit only bounds how much it buffers before handing over a piece; lines
    longer than that arrive here in pieces and are joined up to `max_line`. The message's bytes
    stay taken from `budget`: the caller gives back len(message) when it is done with it.
    """
    message = _Message(max_size, max_line, budget)
    try:
        while True:
            try:
                piece = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                piece = await reader.read(overrun.consumed)
            if message.add(piece):
                break
    except BaseException:
        message.release()  # the session ended mid-DATA
        raise
    if message.error is not None:
        return message.error
    content = b"".join(message.lines)
    budget.give_back(message.held - len(content))  # the unstuffed dots
    return content


async def read_line(reader: asyncio.StreamReader, max_length: int) -> bytes | None:
    """One line (up to LF) of at most `max_length` bytes; a longer one is read to its end,
    dropped, and given as None. aiosmtpd reads AUTH responses with readline(), which raises
    ValueError on a line over the reader's limit and leaves the rest to be read as commands.
    """
    length = 0
    while True:
        try:
            piece = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as overrun:
            piece = await reader.read(overrun.consumed)
        except asyncio.IncompleteReadError as eof:
            piece = eof.partial
        length += len(piece)
        if length <= max_length and piece.endswith(b"\n") and length == len(piece):
            return piece
        if piece.endswith(b"\n") or not piece:
            return None
