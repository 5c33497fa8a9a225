"""Listeners for the access gateway: a plain port and an implicit-TLS port, one task per session.

IMAP and POP3 differ only in the session they run (and what they answer a client over the
connection limits); starting, counting, limiting and stopping sessions is the same, and lives here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from mailpipe_gateway.connection_limits import ConnectionLimiter

log = logging.getLogger(__name__)

# asyncio's default: what a session's reader may buffer while looking for a line end.
DEFAULT_LINE_LIMIT = 65536

Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bool], Awaitable[None]]


class StreamListeners:
    def __init__(
        self,
        session: Session,
        host: str,
        port: int | None,
        *,
        tls_context: ssl.SSLContext | None,
        implicit_tls_port: int | None = None,
        name: str,
        limiter: ConnectionLimiter | None = None,
        refusal: bytes = b"",
        line_limit: int = DEFAULT_LINE_LIMIT,
    ) -> None:
        """`limiter` caps the sessions of both ports together; a client over it gets `refusal`
        (the protocol's "too many connections" line) and is closed. `line_limit` bounds what
        each session's reader buffers before a line end."""
        self._session = session
        self._host = host
        self._port = port
        self._tls_context = tls_context
        self._tls_port = implicit_tls_port
        self._servers: list[asyncio.base_events.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self._name = name
        self.limiter = limiter or ConnectionLimiter()
        self._refusal = refusal
        self._line_limit = line_limit
        self.ports: list[int] = []

    async def start(self) -> None:
        listeners: list[tuple[int, ssl.SSLContext | None]] = []
        if self._port is not None:
            listeners.append((self._port, None))
        if self._tls_port is not None and self._tls_context is not None:
            listeners.append((self._tls_port, self._tls_context))
        for port, tls in listeners:
            server = await asyncio.start_server(
                functools.partial(self._serve, tls=tls is not None),
                self._host,
                port,
                ssl=tls,
                limit=self._line_limit,
            )
            self._servers.append(server)
            self.ports.append(int(server.sockets[0].getsockname()[1]))

    @property
    def port(self) -> int:
        return self.ports[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "unknown"
        if not self.limiter.acquire(client):
            log.warning("%s: refused connection from %s: too many connections", self._name, client)
            writer.write(self._refusal)  # a few octets: the transport flushes them as it closes
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._session(reader, writer, tls)
        except asyncio.CancelledError:
            # stop() ends sessions by cancelling them; Python 3.11's stream callback would log a
            # cancelled task as an error, so the session ends here as a normal return.
            writer.close()
        finally:
            self._sessions.discard(task)
            self.limiter.release(client)

    async def stop(self) -> None:
        """Stop listening and end every session (a POP3 session that did not QUIT deletes nothing)."""
        for server in self._servers:
            server.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def executor_runner(executor: Executor | None) -> Callable[..., Awaitable[Any]]:
    """Runs blocking store and directory calls on `executor`, off the event loop."""

    async def run(function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(function, *args))

    return run
