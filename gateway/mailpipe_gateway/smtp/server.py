"""The SMTP gateway as an asyncio server: start, serve, stop."""

from __future__ import annotations

import asyncio
import ssl

from mailpipe_gateway.smtp.handler import InboundHandler
from mailpipe_gateway.smtp.protocol import MailpipeSMTP
from mailpipe_gateway.smtp.settings import GatewaySettings

SESSION_TIMEOUT = 300  # RFC 5321 4.5.3.2.7: the server timeout is at least 5 minutes


class SMTPGateway:
    def __init__(
        self, handler: InboundHandler, settings: GatewaySettings, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self._handler = handler
        self._settings = settings
        self._tls_context = tls_context
        self._server: asyncio.base_events.Server | None = None

    def _protocol(self) -> MailpipeSMTP:
        return MailpipeSMTP(
            self._handler,
            data_size_limit=self._settings.max_message_size,
            enable_SMTPUTF8=True,
            hostname=self._settings.hostname,
            ident="mailpipe",
            tls_context=self._tls_context,
            timeout=SESSION_TIMEOUT,
        )

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, host=self._settings.host, port=self._settings.port
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
