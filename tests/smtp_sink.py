"""A programmable SMTP receiving server for tests: aiosmtpd on loopback, in a thread of its own.

    with SmtpSink(recipients={"bob@x.test": "550 5.1.1 no such user"}, stages={"dot": HANG}) as sink:
        deliver(... parse_route(sink.nexthop) ...)
        assert sink.transactions[0].data == message

Why a sink of our own rather than the gateway: outbound tests need a server that misbehaves
on demand, at any stage, which a real MTA (or our gateway) never does on purpose.

What it does is set per stage (`stages`) and per recipient (`recipients`, keys compared in
lower case). A value is a reply to give instead of the normal one (`"451 4.3.0 try later"`;
lines joined with CRLF make a multi-line reply), `HANG` (answer nothing for `hang_seconds`,
longer than the client timeouts of the tests, then go on normally) or `DROP` (close the
connection at once, without a reply). The stages:

- `connect` (the greeting), `ehlo`, `helo`, `starttls`, `auth`;
- `mail`, `rcpt` (every recipient without an entry of its own), `data` (the DATA command);
- `dot` (the end of the data: the message has been received and is recorded first).

Both dicts may be changed between deliveries. Extensions: STARTTLS (`starttls=True`, a fresh
self-signed certificate for `hostname` and 127.0.0.1 in `cert_file`), AUTH PLAIN and LOGIN
(`auth=(user, password)`; required before MAIL, offered only after STARTTLS unless
`auth_in_plaintext`), DSN (`dsn=True`: the RFC 3461 parameters are accepted; without it
aiosmtpd refuses them with 555, as a server without DSN may), SMTPUTF8, 8BITMIME and SIZE.

It records every connection (`connections`), every command line (`commands`; AUTH without
its secret) and every transaction that reached the end of the data (`transactions`: sender,
parameters as sent, accepted recipients with their parameters, the data bytes as received and
un-dot-stuffed, the reply given, TLS, the authenticated user). `stop` (or leaving the `with`)
closes the server, its connections and its thread.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailpipe_gateway.tls import server_context, write_self_signed

HANG = "hang"
DROP = "drop"
DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")
STAGES = ("connect", "ehlo", "helo", "starttls", "auth", "mail", "rcpt", "data", "dot")


@dataclass
class Transaction:
    """One transaction that reached the end of the data. Parameter names upper-cased, values as sent."""

    mail_from: str
    mail_params: dict[str, str]
    rcpt_tos: list[str]
    rcpt_params: dict[str, dict[str, str]]
    data: bytes
    reply: str
    tls: bool
    auth_user: str | None
    helo: str | None


@dataclass
class _State:
    """What the current session collected since MAIL FROM."""

    mail_params: dict[str, str] = field(default_factory=dict)
    rcpt_params: dict[str, dict[str, str]] = field(default_factory=dict)
    last_params: dict[str, str] = field(default_factory=dict)


class SmtpSink:
    """The server; see the module docstring. Context manager: `with SmtpSink(...) as sink:`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "sink.test",
        starttls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_in_plaintext: bool = False,
        auth_exclude: tuple[str, ...] = (),
        dsn: bool = False,
        smtputf8: bool = True,
        eight_bit_mime: bool = True,
        size_limit: int | None = 10 * 1024 * 1024,
        stages: dict[str, str] | None = None,
        recipients: dict[str, str] | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.hostname = hostname
        self.starttls = starttls
        self.auth = auth
        self.auth_in_plaintext = auth_in_plaintext
        self.auth_exclude = auth_exclude
        self.dsn = dsn
        self.smtputf8 = smtputf8
        self.eight_bit_mime = eight_bit_mime
        self.size_limit = size_limit
        self.stages: dict[str, str] = dict(stages or {})
        self.recipients: dict[str, str] = {k.lower(): v for k, v in (recipients or {}).items()}
        self.hang_seconds = hang_seconds
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; known: {STAGES}")
        self.connections = 0
        self.commands: list[str] = []
        self.transactions: list[Transaction] = []
        self.cert_file: Path | None = None
        self._cert_dir: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._live: set[_SinkSMTP] = set()

    @property
    def nexthop(self) -> str:
        """This sink as a transport map value: `smtp:[127.0.0.1]:PORT`."""
        return f"smtp:[{self.host}]:{self.port}"

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        tls_context = None
        if self.starttls:
            self._cert_dir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
            self.cert_file, key_file = write_self_signed(self._cert_dir, self.hostname)
            tls_context = server_context(self.cert_file, key_file)
        loop = self._loop = asyncio.new_event_loop()
        handler = _Handler(self)
        options: dict[str, Any] = {
            "hostname": self.hostname,
            "tls_context": tls_context,
            "enable_SMTPUTF8": self.smtputf8,
            "data_size_limit": self.size_limit,
            "auth_required": self.auth is not None,
            "auth_require_tls": not self.auth_in_plaintext,
            "auth_exclude_mechanism": list(self.auth_exclude),
            "authenticator": _authenticator(self.auth),
            "loop": loop,
        }

        def factory() -> _SinkSMTP:
            return _SinkSMTP(handler, self, **options)

        self._thread = threading.Thread(target=loop.run_forever, name=f"smtp-sink-{self.host}", daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(loop.create_server(factory, self.host, self.port), loop)
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None:
            return
        if server is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(server), loop).result(10)
        if self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
        loop.close()
        self._loop = self._server = self._thread = None
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = None

    async def _shutdown(self, server: asyncio.AbstractServer) -> None:
        server.close()
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def action(self, stage: str) -> str | None:
        return self.stages.get(stage)


class _SinkSMTP(SMTP):
    """aiosmtpd's server with stage actions, recorded commands and DSN parameters kept as sent."""

    line_length_limit = 1024 * 1024  # bare-LF messages arrive as very long "lines"
    command_size_limit = 4096
    command_size_limits = collections.defaultdict(lambda: 4096)  # not shared with other SMTP classes

    def __init__(self, handler: _Handler, sink: SmtpSink, **options: Any) -> None:
        self.sink = sink
        self.state = _State()
        super().__init__(handler, **options)
        self._smtp_methods = {
            name: self._recorded(name, method) for name, method in self._smtp_methods.items()
        }

    def _recorded(self, name: str, method: Callable[[str | None], Any]) -> Callable[[str | None], Any]:
        async def run(arg: str | None) -> None:
            shown = (arg or "").split()[0] if name == "AUTH" and arg else arg
            self.sink.commands.append(f"{name} {shown}" if shown else name)
            await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sink._live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._live.discard(self)
        super().connection_lost(error)

    async def act(self, action: str | None) -> str | None:
        """Carry out a stage action: None to go on normally, or the reply to give."""
        if action == HANG:
            await asyncio.sleep(self.sink.hang_seconds)
            return None
        if action == DROP:
            assert self.transport is not None
            self.transport.abort()
            await asyncio.get_running_loop().create_future()  # cancelled by connection_lost
        return action

    async def _handle_client(self) -> None:
        self.sink.connections += 1
        reply = await self.act(self.sink.action("connect"))
        if reply is not None:
            await self.push(reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_STARTTLS(self, arg: str) -> None:
        reply = await self.act(self.sink.action("starttls"))
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        reply = await self.act(self.sink.action("auth"))
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        arg, self.state.last_params = self._take_params(arg)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        arg, self.state.last_params = self._take_params(arg)
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        reply = await self.act(self.sink.action("data"))
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_DATA(arg)

    def _take_params(self, arg: str | None) -> tuple[str | None, dict[str, str]]:
        """Every parameter as sent; with DSN on, its parameters are taken out (aiosmtpd refuses them)."""
        if not arg:
            return arg, {}
        close = arg.find(">")
        head, tail = (arg[: close + 1], arg[close + 1 :]) if close != -1 else (arg, "")
        params: dict[str, str] = {}
        kept = []
        for token in tail.split():
            name, _eq, value = token.partition("=")
            params[name.upper()] = value
            if not (self.sink.dsn and name.upper() in DSN_PARAMS):
                kept.append(token)
        return " ".join([head, *kept]), params


class _Handler:
    """aiosmtpd's hooks: stage actions, the programmed replies, and the records."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        reply = await server.act(self.sink.action("ehlo"))
        if reply is not None:
            return [reply]
        session.host_name = hostname
        lines = [line for line in responses[:-1] if self.sink.eight_bit_mime or line != "250-8BITMIME"]
        if self.sink.dsn:
            lines.append("250-DSN")
        return [*lines, responses[-1]]

    async def handle_HELO(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        reply = await server.act(self.sink.action("helo"))
        if reply is not None:
            return reply
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await server.act(self.sink.action("mail"))
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        server.state.mail_params = server.state.last_params
        server.state.rcpt_params = {}
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        action = self.sink.recipients.get(address.lower(), self.sink.action("rcpt"))
        reply = await server.act(action)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        server.state.rcpt_params[address] = server.state.last_params
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: _SinkSMTP, session: Session, envelope: Envelope) -> str:
        action = self.sink.action("dot")
        reply = action if action not in (None, HANG, DROP) else "250 2.0.0 Ok: queued"
        login = session.auth_data
        self.sink.transactions.append(
            Transaction(
                mail_from=envelope.mail_from or "",
                mail_params=dict(server.state.mail_params),
                rcpt_tos=list(envelope.rcpt_tos),
                rcpt_params=dict(server.state.rcpt_params),
                data=envelope.original_content or b"",
                reply=reply,
                tls=session.ssl is not None,
                auth_user=login.decode() if isinstance(login, bytes) else None,
                helo=session.host_name,
            )
        )
        await server.act(action if action in (HANG, DROP) else None)
        return reply


def _authenticator(credentials: tuple[str, str] | None) -> Callable[..., AuthResult] | None:
    if credentials is None:
        return None
    user, password = (part.encode("utf-8") for part in credentials)

    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == (user, password):
            return AuthResult(success=True, auth_data=data.login)
        return AuthResult(success=False, handled=False)

    return check
