"""The POP3 gateway as an asyncio server: a plain listener (with STLS) and an implicit-TLS one."""

from __future__ import annotations

import asyncio

from mailpipe_gateway.connection_limits import ConnectionLimiter
from mailpipe_gateway.listeners import StreamListeners
from mailpipe_gateway.pop3.session import MAX_LINE, POP3Context, POP3Session

# RFC 2449 8 (RESP-CODES): SYS/TEMP is a temporary problem, a later try may succeed.
REFUSAL = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
# Longer lines than MAX_LINE are answered -ERR and skipped; past twice that the session ends.
# This bounds what a client holds in the server before a line end, logged in or not.
LINE_LIMIT = 2 * MAX_LINE


class POP3Server(StreamListeners):
    def __init__(
        self,
        context: POP3Context,
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
            name="POP3",
            limiter=limiter,
            refusal=REFUSAL,
            line_limit=LINE_LIMIT,
        )

    async def _run_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool
    ) -> None:
        await POP3Session(self.context, reader, writer, tls=tls).run()
