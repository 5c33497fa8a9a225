"""COMPRESS=DEFLATE (RFC 4978): the rest of the connection as raw deflate streams, both ways.

The server compresses from the octet after the CRLF of its tagged OK, the client from the octet
after the CRLF of its COMPRESS command, so octets the client sent behind the command are already
compressed: they are taken from the command reader and inflated first. COMPRESS comes after
STARTTLS (only in the authenticated state), so the layers are, from the socket up: TCP, TLS,
deflate, the command reader.

A small compressed input can inflate a thousandfold. The reader inflates at most one read's
worth (64 KiB) at a time, holding at most one socket read of compressed input, and gives the
event loop a turn between such slices; what it hands on meets the command reader's line and
literal limits as any plaintext does. The writer compresses in slices too, so a FETCH of a
40 MiB message does not hold the loop for the time deflating it takes.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import TYPE_CHECKING, Any

from mailpipe_gateway.imap.commands import Compress
from mailpipe_gateway.imap.state import Done, bad, no

if TYPE_CHECKING:
    from mailpipe_gateway.imap.session import IMAPSession

log = logging.getLogger(__name__)

WBITS = -15  # raw deflate (RFC 1951), no zlib header, the largest window (RFC 4978 3)
LEVEL = 6  # as Dovecot's default
SLICE = 64 * 1024  # inflated or deflated between two turns of the event loop
READ_SIZE = 64 * 1024


async def cmd_compress(session: IMAPSession, command: Compress) -> Done:
    if command.mechanism != "DEFLATE":
        return bad("Unknown compression mechanism")
    if session.compression is not None:
        return no("Compression is already active", "COMPRESSIONACTIVE")
    session.compression = command.mechanism
    await session.answer_then_layer(command.tag, "DEFLATE active", _layer)


def _layer(already: bytes, reader: Any, writer: Any) -> tuple[InflatingReader, DeflatingWriter]:
    return InflatingReader(reader, already), DeflatingWriter(writer)


class InflatingReader:
    """The client's octets, inflated: ``read(n)`` as a StreamReader's, never more than n at once."""

    def __init__(self, reader: Any, already: bytes = b"") -> None:
        self._reader = reader
        self._inflate = zlib.decompressobj(WBITS)
        self._input = already  # compressed octets not yet inflated (at most one read's)
        self._more = bool(already)  # the inflater may hold output without input left

    async def read(self, n: int) -> bytes:
        while True:
            if self._inflate.eof:
                return b""  # the client ended its deflate stream: nothing after it is IMAP
            if self._input or self._more:
                await asyncio.sleep(0)  # inflating what is here already: let other sessions run
            else:
                self._input = await self._reader.read(READ_SIZE)
                if not self._input:
                    return b""
            try:
                data = self._inflate.decompress(self._input, min(n, SLICE))
            except zlib.error as exc:
                log.info("IMAP client sent data that does not inflate: %s; closing", exc)
                raise ConnectionResetError(f"bad deflate data: {exc}") from None
            self._input = self._inflate.unconsumed_tail
            self._more = len(data) == min(n, SLICE)
            if data:
                return data


class DeflatingWriter:
    """Writes deflated, each ``drain()`` ending with a sync flush so the client has every response."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS)
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._pending.append(data)  # deflated at drain(), a slice at a time

    async def drain(self) -> None:
        pending, self._pending = self._pending, []
        for data in pending:
            with memoryview(data) as view:
                for start in range(0, len(data), SLICE):
                    self._writer.write(self._deflate.compress(view[start : start + SLICE]))
                    if start + SLICE < len(data):
                        await self._writer.drain()
                        await asyncio.sleep(0)
        self._writer.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))
        await self._writer.drain()

    def close(self) -> None:
        if self._pending:  # not drained: a last word (BYE) still goes out
            self._writer.write(self._deflate.compress(b"".join(self._pending)))
            self._writer.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))
            self._pending = []
        self._writer.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)
