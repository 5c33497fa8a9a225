"""STARTTLS on an asyncio stream, leaving behind every octet that came before the handshake.

``StreamWriter.start_tls`` keeps the connection's ``StreamReader``: octets a client pipelined
behind STARTTLS that were already in its buffer (say past a 64 KiB read the command reader made)
are then read after the handshake as though they had come encrypted, a command injection of the
class of CVE-2011-0411. Here the TLS layer feeds a new reader: whatever reached the old one in
plaintext is dropped with it, and what arrives after the switch goes to the TLS layer, where
plaintext fails the handshake.
"""

from __future__ import annotations

import asyncio
import ssl

STREAM_LIMIT = 65536  # as the listeners' streams


async def start_tls(
    writer: asyncio.StreamWriter, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The TLS server side of ``writer``'s connection as a new reader and writer."""
    loop = asyncio.get_running_loop()
    await writer.drain()  # the STARTTLS answer goes out in plaintext before the switch
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = await loop.start_tls(writer.transport, protocol, context, server_side=True)
    if transport is None:  # the connection closed during the handshake
        raise ConnectionResetError("connection closed during the TLS handshake")
    protocol.connection_made(transport)  # loop.start_tls does not announce the new transport
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
