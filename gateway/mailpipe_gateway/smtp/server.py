"""The SMTP gateway as an asyncio server: start, serve, stop."""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Callable

from mailpipe_gateway.connection_limits import ConnectionLimiter
from mailpipe_gateway.smtp.budget import MemoryBudget
from mailpipe_gateway.smtp.handler import InboundHandler
from mailpipe_gateway.smtp.protocol import MailpipeSMTP
from mailpipe_gateway.smtp.settings import GatewaySettings


class SMTPGateway:
    def __init__(
        self,
        handler: InboundHandler,
        settings: GatewaySettings,
        tls_context: ssl.SSLContext | None = None,
        *,
        protocol: Callable[..., MailpipeSMTP] = MailpipeSMTP,
        implicit_tls: bool = False,
    ) -> None:
        """`protocol` builds each session (submission passes its AUTH-aware subclass); with
        `implicit_tls` the listener speaks TLS from the first byte (port 465)."""
        self._handler = handler
        self._protocol_class = protocol
        self._implicit_tls = implicit_tls
        self._settings = settings
        self._tls_context = tls_context
        self._server: asyncio.base_events.Server | None = None
        self.limiter = ConnectionLimiter(
            settings.max_connections, settings.max_connections_per_ip, settings.limit_exempt
        )
        self.data_budget = MemoryBudget(settings.data_memory)
        self._sessions: weakref.WeakSet[MailpipeSMTP] = weakref.WeakSet()
        self._port: int | None = None

    def _protocol(self) -> MailpipeSMTP:
        session = self._protocol_class(
            self._handler,
            data_size_limit=self._settings.max_message_size,
            enable_SMTPUTF8=True,
            hostname=self._settings.hostname,
            ident="mailpipe",
            # On an implicit-TLS listener there is nothing to STARTTLS into.
            tls_context=None if self._implicit_tls else self._tls_context,
            timeout=self._settings.session_timeout,
            limiter=self.limiter,
            max_errors=self._settings.max_errors,
            data_budget=self.data_budget,
        )
        self._sessions.add(session)
        return session

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol,
            host=self._settings.host,
            port=self._settings.port,
            ssl=self._tls_context if self._implicit_tls else None,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        assert self._port is not None, "not started"
        return self._port

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening, give open sessions `grace` seconds to finish, then close them with a 421.

        A session cut before its 250 loses nothing: the client still holds the message and retries.
        """
        if self._server is None:
            return
        self._server.close()
        deadline = time.monotonic() + grace
        while self.limiter.open_sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for session in list(self._sessions):
            transport = session.transport
            if transport is not None and not transport.is_closing():
                transport.write(f"421 4.3.2 {self._settings.hostname} Service shutting down\r\n".encode())
                transport.close()
        await self._server.wait_closed()
        self._server = None
