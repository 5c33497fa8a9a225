"""One POP3 session: the AUTHORIZATION, TRANSACTION and UPDATE states of RFC 1939."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mailpipe.auth.throttle import AuthThrottle
from mailpipe.directory import Directory
from mailpipe.store import MailMemory, MailStore
from mailpipe.store.locks import Leases
from mailpipe_gateway.auth.login import Logins, Throttled
from mailpipe_gateway.auth.sasl import CANCEL, Credentials, decode_response, plain_credentials
from mailpipe_gateway.pop3.maildrop import Maildrop, MaildropLocked
from mailpipe_gateway.wire_numbers import ascii_number

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_LINE = 1024  # RFC 2449 allows 255 octets; some clients send longer AUTH lines
AUTOLOGOUT_SECONDS = 10 * 60  # RFC 1939 3: at least 10 minutes


@dataclass
class POP3Context:
    """What every session of one POP3 server shares."""

    directory: Directory
    store: MailStore
    memory: MailMemory  # the process's, shared with its IMAP sessions (store/memory.py)
    leases: Leases
    throttle: AuthThrottle
    hostname: str
    tls_context: ssl.SSLContext | None
    run: Callable[..., Awaitable[Any]]  # runs a blocking call off the event loop
    plaintext_loopback: bool = False
    autologout: float = AUTOLOGOUT_SECONDS


class _Quit(Exception):
    pass


class POP3Session:
    def __init__(
        self, context: POP3Context, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        self._ctx = context
        self._reader = reader
        self._writer = writer
        self._tls = tls
        peer = writer.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "unknown"
        self._user: str | None = None
        self._maildrop: Maildrop | None = None

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._send(f"+OK {self._ctx.hostname} mailpipe POP3 ready")
            while True:
                line = await self._read_line()
                if line is None:
                    return
                try:
                    await self._dispatch(line)
                except _Quit:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        except Exception:
            log.exception("POP3 session from %s failed", self._peer)
            await self._try_send("-ERR [SYS/TEMP] internal error")
        finally:
            if self._maildrop is not None:
                # If this fails (say the server is stopping) the lease still expires by itself.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await self._call(self._maildrop.close)
            self._writer.close()

    async def _read_line(self) -> bytes | None:
        """The next command line, or None when the session is over (EOF, autologout, flood)."""
        while True:
            try:
                line = await asyncio.wait_for(self._reader.readuntil(b"\n"), self._ctx.autologout)
            except TimeoutError:
                await self._try_send("-ERR autologout: idle for too long")
                return None
            except asyncio.LimitOverrunError:
                await self._try_send("-ERR line too long")
                return None
            except asyncio.IncompleteReadError:
                return None
            if len(line) <= MAX_LINE:
                return line.rstrip(b"\r\n")
            await self._send("-ERR line too long")

    async def _dispatch(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        command, _, argument = text.partition(" ")
        command = command.upper()
        if self._maildrop is None:
            handler = self._AUTHORIZATION.get(command)
        else:
            handler = self._TRANSACTION.get(command)
            await self._call(self._maildrop.renew)
        if handler is None:
            await self._send(f"-ERR unknown command or not allowed in this state: {command[:20]}")
            return
        await handler(self, argument)

    # -- AUTHORIZATION -----------------------------------------------------------

    async def cmd_capa(self, argument: str) -> None:
        capabilities = [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "AUTH-RESP-CODE",
            "IMPLEMENTATION mailpipe",
        ]
        if self._maildrop is None:
            if self._ctx.tls_context is not None and not self._tls:
                capabilities.append("STLS")
            if self._may_authenticate():
                capabilities += ["USER", "SASL PLAIN"]
        await self._send_multiline("+OK capability list follows", [c.encode() for c in capabilities])

    async def cmd_stls(self, argument: str) -> None:
        if self._tls or self._ctx.tls_context is None:
            await self._send("-ERR STLS not available")
            return
        await self._send("+OK begin TLS negotiation")
        await self._discard_pipelined()
        await self._writer.start_tls(self._ctx.tls_context)
        self._tls = True
        self._user = None

    async def _discard_pipelined(self) -> None:
        """Drop what the client sent after STLS before the handshake (RFC 2595 3.1).

        Those bytes came in clear text, maybe from a man in the middle; read after the
        handshake they would run as if TLS had protected them (CVE-2011-0411). They can only
        be in the stream reader's buffer: this session keeps no buffer of its own, and from
        here to start_tls pausing the socket nothing yields to the loop, so nothing more
        arrives in clear text (what is still in the socket then is read as TLS records).
        """
        buffered = len(getattr(self._reader, "_buffer", b""))  # asyncio has no public "available"
        if buffered:
            # readexactly does not wait when the bytes are there, and resumes a paused socket.
            await self._reader.readexactly(buffered)
            log.warning("POP3 STLS from %s: dropped %d octets sent in clear text", self._peer, buffered)

    async def cmd_user(self, argument: str) -> None:
        if not self._may_authenticate():
            await self._send("-ERR [AUTH] plaintext authentication needs TLS first (STLS)")
            return
        if not argument:
            await self._send("-ERR USER needs a name")
            return
        self._user = argument.strip()
        await self._send("+OK send PASS")

    async def cmd_pass(self, argument: str) -> None:
        if self._user is None:
            await self._send("-ERR USER first")
            return
        user, self._user = self._user, None
        await self._login(Credentials(user, argument))

    async def cmd_auth(self, argument: str) -> None:
        mechanism, _, initial = argument.strip().partition(" ")
        if not mechanism:
            await self._send_multiline("+OK", [b"PLAIN"])
            return
        if not self._may_authenticate():
            await self._send("-ERR [AUTH] authentication needs TLS first (STLS)")
            return
        if mechanism.upper() != "PLAIN":
            await self._send("-ERR unsupported SASL mechanism")
            return
        if not initial:
            await self._send("+ ")
            response = await self._read_line()
            if response is None:
                raise _Quit
            initial = response.decode("ascii", "replace")
        if initial.strip().encode() == CANCEL:
            await self._send("-ERR authentication cancelled")
            return
        response = decode_response(initial)
        credentials = plain_credentials(response) if response is not None else None
        if credentials is None:
            await self._send("-ERR malformed AUTH PLAIN response")
            return
        await self._login(credentials)

    async def cmd_quit(self, argument: str) -> None:
        if self._maildrop is not None:
            try:
                await self._call(self._maildrop.commit)
            except Exception:
                log.exception("POP3 UPDATE for %s failed", self._maildrop.owner)
                await self._send("-ERR [SYS/TEMP] some deleted messages were not removed")
                raise _Quit from None
            # Released before the +OK: a client that logs in again the moment QUIT is answered
            # (RFC 1939 6: the UPDATE state is over) must not find its own maildrop locked.
            maildrop, self._maildrop = self._maildrop, None
            with contextlib.suppress(Exception):  # the lease expires by itself if this fails
                await self._call(maildrop.close)
        await self._send(f"+OK {self._ctx.hostname} mailpipe POP3 signing off")
        raise _Quit

    async def _login(self, credentials: Credentials) -> None:
        logins = Logins(self._ctx.directory, self._ctx.throttle, self._ctx.run)
        try:
            account = await logins.check(credentials, self._peer, "pop3")
        except Throttled:
            await self._send("-ERR [AUTH] too many failed logins, try again later")
            return
        if account is None:
            await self._send("-ERR [AUTH] invalid user name or password")
            return
        maildrop = Maildrop(account.address, self._ctx.memory, self._ctx.leases)
        try:
            await self._call(maildrop.open)
        except MaildropLocked:
            await self._send("-ERR [IN-USE] maildrop is locked by another POP3 session")
            return
        self._maildrop = maildrop
        count, size = self._stat()
        await self._send(f"+OK {account.address} has {count} messages ({size} octets)")

    def _may_authenticate(self) -> bool:
        return self._tls or (self._ctx.plaintext_loopback and self._peer in ("127.0.0.1", "::1"))

    # -- TRANSACTION -------------------------------------------------------------

    def _stat(self) -> tuple[int, int]:
        assert self._maildrop is not None
        live = self._maildrop.live()
        return len(live), sum(m.crlf_size for _, m in live)

    async def cmd_stat(self, argument: str) -> None:
        count, size = self._stat()
        await self._send(f"+OK {count} {size}")

    async def cmd_list(self, argument: str) -> None:
        await self._listing(argument, lambda n, m: f"{n} {m.crlf_size}")

    async def cmd_uidl(self, argument: str) -> None:
        assert self._maildrop is not None
        await self._listing(argument, lambda n, m: f"{n} {self._maildrop.unique_id(m)}")

    async def _listing(self, argument: str, render: Callable[[int, Any], str]) -> None:
        assert self._maildrop is not None
        if argument.strip():
            number = await self._number(argument)
            if number is not None:
                await self._send(f"+OK {render(number, self._maildrop.messages[number - 1])}")
            return
        lines = [render(n, m).encode() for n, m in self._maildrop.live()]
        await self._send_multiline(f"+OK {len(lines)} messages", lines)

    async def cmd_retr(self, argument: str) -> None:
        await self._retrieve(argument, None)

    async def cmd_top(self, argument: str) -> None:
        number_text, _, lines_text = argument.strip().partition(" ")
        body_lines = ascii_number(lines_text.strip())
        if body_lines is None:
            await self._send("-ERR usage: TOP msg n (n in ASCII digits)")
            return
        await self._retrieve(number_text, body_lines)

    async def _retrieve(self, argument: str, body_lines: int | None) -> None:
        assert self._maildrop is not None
        number = await self._number(argument)
        if number is None:
            return
        message = self._maildrop.messages[number - 1]
        lines = await self._call(self._maildrop.lines, message, body_lines == 0)
        if body_lines is not None:
            lines = _top(lines, body_lines)
        await self._send_multiline(f"+OK {message.crlf_size} octets", lines)

    async def cmd_dele(self, argument: str) -> None:
        assert self._maildrop is not None
        number = await self._number(argument)
        if number is not None:
            self._maildrop.deleted.add(number)
            await self._send(f"+OK message {number} deleted")

    async def cmd_noop(self, argument: str) -> None:
        await self._send("+OK")

    async def cmd_rset(self, argument: str) -> None:
        assert self._maildrop is not None
        self._maildrop.deleted.clear()
        count, size = self._stat()
        await self._send(f"+OK maildrop has {count} messages ({size} octets)")

    async def _number(self, argument: str) -> int | None:
        assert self._maildrop is not None
        number = ascii_number(argument.strip())
        if number is None:
            await self._send("-ERR a message number is needed (ASCII digits)")
            return None
        if self._maildrop.message(number) is None:
            await self._send(f"-ERR no such message: {number}")
            return None
        return number

    # -- wire --------------------------------------------------------------------

    async def _send(self, line: str) -> None:
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._writer.drain()

    async def _try_send(self, line: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(line)

    async def _send_multiline(self, first: str, lines: list[bytes]) -> None:
        # RFC 1939 3: byte-stuff lines that start with the termination octet.
        body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
        self._writer.write(first.encode() + b"\r\n" + body + b".\r\n")
        await self._writer.drain()

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await self._ctx.run(function, *args)

    _AUTHORIZATION: dict[str, Callable[[POP3Session, str], Awaitable[None]]] = {
        "CAPA": cmd_capa,
        "STLS": cmd_stls,
        "USER": cmd_user,
        "PASS": cmd_pass,
        "AUTH": cmd_auth,
        "QUIT": cmd_quit,
    }
    _TRANSACTION: dict[str, Callable[[POP3Session, str], Awaitable[None]]] = {
        "CAPA": cmd_capa,
        "STAT": cmd_stat,
        "LIST": cmd_list,
        "UIDL": cmd_uidl,
        "RETR": cmd_retr,
        "TOP": cmd_top,
        "DELE": cmd_dele,
        "NOOP": cmd_noop,
        "RSET": cmd_rset,
        "QUIT": cmd_quit,
    }


def _top(lines: list[bytes], body_lines: int) -> list[bytes]:
    """The header, the blank line, and the first `body_lines` lines of the body."""
    try:
        separator = lines.index(b"")
    except ValueError:
        return lines
    return lines[: separator + 1 + body_lines]
