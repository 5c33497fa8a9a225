"""The IMAP gateway as an asyncio server: a plain listener (STARTTLS) and an implicit-TLS one."""

from __future__ import annotations

import asyncio

from mailpipe_gateway.connection_limits import ConnectionLimiter
from mailpipe_gateway.imap.dispatch import HANDLERS
from mailpipe_gateway.imap.session import IMAPSession
from mailpipe_gateway.imap.state import IMAPContext
from mailpipe_gateway.listeners import StreamListeners

# RFC 5530 3: UNAVAILABLE, a temporary failure; a later try may succeed.
REFUSAL = b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"


class IMAPServer(StreamListeners):
    def __init__(
        self,
        context: IMAPContext,
        host: str,
        port: int | None,
        *,
        implicit_tls_port: int | None = None,
        limiter: ConnectionLimiter | None = None,
    ) -> None:
        self.context = context
        super().__init__(
            self._run_session,
            host,
            port,
            tls_context=context.tls_context,
            implicit_tls_port=implicit_tls_port,
            name="IMAP",
            limiter=limiter,
            refusal=REFUSAL,
        )

    async def start(self) -> None:
        self.context.open()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        self.context.close()

    async def _run_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool
    ) -> None:
        await IMAPSession(self.context, reader, writer, tls=tls, handlers=HANDLERS).run()
