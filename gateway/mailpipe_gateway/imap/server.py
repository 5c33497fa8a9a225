"""The IMAP gateway as an asyncio server: a plain listener (STARTTLS) and an implicit-TLS one."""

from __future__ import annotations

import asyncio
import functools
import ssl

from mailpipe_gateway.imap.session import IMAPSession
from mailpipe_gateway.imap.state import IMAPContext


class IMAPServer:
    def __init__(
        self, context: IMAPContext, host: str, port: int, *, implicit_tls_port: int | None = None
    ) -> None:
        self.context = context
        self._host = host
        self._port = port
        self._tls_port = implicit_tls_port
        self._servers: list[asyncio.base_events.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self.ports: list[int] = []

    async def start(self) -> None:
        listeners: list[tuple[int, ssl.SSLContext | None]] = []
        if self._port is not None:
            listeners.append((self._port, None))
        if self._tls_port is not None and self.context.tls_context is not None:
            listeners.append((self._tls_port, self.context.tls_context))
        for port, tls in listeners:
            server = await asyncio.start_server(
                functools.partial(self._serve, tls=tls is not None), self._host, port, ssl=tls
            )
            self._servers.append(server)
            self.ports.append(int(server.sockets[0].getsockname()[1]))

    @property
    def port(self) -> int:
        return self.ports[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await IMAPSession(self.context, reader, writer, tls=tls).run()
        finally:
            self._sessions.discard(task)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
