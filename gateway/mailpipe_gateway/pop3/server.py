"""The POP3 gateway as an asyncio server: a plain listener (with STLS) and an implicit-TLS one."""

from __future__ import annotations

import asyncio

from mailpipe_gateway.listeners import StreamListeners
from mailpipe_gateway.pop3.session import POP3Context, POP3Session


class POP3Server(StreamListeners):
    def __init__(
        self, context: POP3Context, host: str, port: int | None, *, implicit_tls_port: int | None = None
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
        await POP3Session(self.context, reader, writer, tls=tls).run()
