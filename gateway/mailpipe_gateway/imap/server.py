"""The IMAP gateway as an asyncio server: a plain listener (STARTTLS) and an implicit-TLS one."""

from __future__ import annotations

import asyncio

from mailpipe_gateway.imap.session import IMAPSession
from mailpipe_gateway.imap.state import IMAPContext
from mailpipe_gateway.listeners import StreamListeners


class IMAPServer(StreamListeners):
    def __init__(
        self, context: IMAPContext, host: str, port: int | None, *, implicit_tls_port: int | None = None
    ) -> None:
        self.context = context
        super().__init__(
            self._run_session,
            host,
            port,
            tls_context=context.tls_context,
            implicit_tls_port=implicit_tls_port,
        )

    async def _run_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool
    ) -> None:
        await IMAPSession(self.context, reader, writer, tls=tls).run()
