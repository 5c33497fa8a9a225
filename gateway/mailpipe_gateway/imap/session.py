"""One IMAP connection: reads commands, runs them in the right state, keeps the client up to date.

The layers: reader.py frames bytes into commands, parser.py types them, this module
owns the connection and the state machine (RFC 9051 3), the *_commands modules do
the work against the store, view.py keeps the selected mailbox's numbering, and
serializer.py writes the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

from mailpipe.store import Mailbox
from mailpipe_gateway.auth.login import Logins, Throttled
from mailpipe_gateway.auth.sasl import (
    CANCEL,
    Credentials,
    decode_response,
    encode_challenge,
    plain_credentials,
)
from mailpipe_gateway.imap import contexts, notify, serializer
from mailpipe_gateway.imap.commands import Authenticate, Command, Enable, FetchAttr, Id, Login
from mailpipe_gateway.imap.fetch import render_fetch
from mailpipe_gateway.imap.parser import ParseError, parse_command
from mailpipe_gateway.imap.ranges import contains, merged, uid_set
from mailpipe_gateway.imap.reader import (
    MAX_LINE,
    PREAUTH_MAX_LINE,
    PREAUTH_MAX_LITERAL,
    CommandReader,
    ContinuationRequest,
    LimitExceeded,
    Line,
    RawCommand,
)
from mailpipe_gateway.imap.starttls import start_tls
from mailpipe_gateway.imap.state import (
    Done,
    Entry,
    IMAPContext,
    SessionEnded,
    SessionState,
    State,
    bad,
    no,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_FLAGS = (FetchAttr("FLAGS"),)

# Commands that must not be answered with EXPUNGE responses (RFC 9051 7.5.1), by message number.
_NO_EXPUNGE_DURING = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}


# What reading or writing a connection the client dropped raises (a reset, a close mid-TLS record):
# the client's doing, so a log line, not a trace.
_CONNECTION_LOST = (ConnectionError, ssl.SSLError)


class IMAPSession:
    def __init__(
        self,
        context: IMAPContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: bool,
        handlers: Mapping[str, Entry],
    ) -> None:
        self.ctx = context
        self._handlers = handlers  # imap/dispatch.py: which command runs what, in which states
        self.st = SessionState()
        self.tls = tls
        self._stream = reader
        self._writer = writer
        self._plaintext_writer: asyncio.StreamWriter | None = None  # the writer before STARTTLS
        # Until login, a stranger's commands get Dovecot's imap-login limits, not APPENDLIMIT's.
        self._commands = CommandReader(
            max_line=PREAUTH_MAX_LINE, max_literal=PREAUTH_MAX_LITERAL, skip_oversize=False
        )
        self._counted_as: str | None = None  # the user whose session count this session holds
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "unknown"
        self.compression: str | None = None  # COMPRESS=DEFLATE once it is on
        local = writer.get_extra_info("sockname")
        self.local_address = str(local[0]) if local else ""  # a name CATENATE's URLs may give us by
        self.notify: notify.Notifications | None = None  # NOTIFY SET's, until NOTIFY NONE (notify.py)
        # This session's RENAME took its selected mailbox away: BYE at the next command (refresh).
        self._selection_renamed = False
        # Said after the current command's tagged answer, which then ends the session (DELETE of
        # the selected mailbox: the client first learns that its DELETE succeeded, as in Dovecot).
        self.bye_after_answer: bytes | None = None

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.send(
                serializer.status_response("*", "OK", "mailpipe IMAP ready", self.capability_code())
            )
            while self.st.state is not State.LOGOUT:
                if self.notify is None:
                    event = await self.next_event(self.ctx.autologout)
                else:
                    event = await self._next_event_or_notify()
                await self._handle_event(event)
        except SessionEnded:
            pass
        except _CONNECTION_LOST as exc:
            log.info("IMAP client %s went away: %s", self.peer, exc.__class__.__name__)
        except Exception:
            log.exception("IMAP session from %s failed", self.peer)
            with contextlib.suppress(Exception):
                await self.send(b"* BYE internal error\r\n")
        finally:
            if self._counted_as is not None:
                self.ctx.user_sessions.release(self._counted_as)
            self._writer.close()

    async def next_event(self, timeout: float) -> Any:
        """The next thing the client said, reading more bytes as needed."""
        while True:
            event = self._commands.next_event()
            if event is not None:
                return event
            try:
                # asyncio.timeout, not wait_for: no task of its own per read, which costs the loop
                # two more iterations and a task's creation for every command a client sends.
                async with asyncio.timeout(timeout):
                    data = await self._read()
            except TimeoutError:
                await self.send(b"* BYE autologout: idle for too long\r\n")
                raise SessionEnded from None
            if not data:
                raise SessionEnded
            self._commands.feed(data)

    async def _handle_event(self, event: Any) -> None:
        if isinstance(event, ContinuationRequest):
            await self.send(serializer.continuation("Ready for literal data"))
        elif isinstance(event, LimitExceeded):
            log.info("IMAP command from %s over the %s limit", self.peer, event.limit)
            await self.send(event.response())
            if event.fatal:
                await self.send(b"* BYE Too much data\r\n")
                raise SessionEnded
        elif isinstance(event, RawCommand):
            try:
                command = parse_command(event, utf8=self.st.utf8, utf8_accept=self.st.utf8_accept)
            except ParseError as exc:
                await self.send(serializer.status_response(exc.tag or "*", "BAD", exc.message))
                return
            await self._execute(command)
        elif isinstance(event, Line):  # a stray DONE or SASL line: not a command
            await self.send(b"* BAD Expected a command\r\n")

    async def _execute(self, command: Command) -> None:
        if self._selection_renamed and command.name != "LOGOUT":
            await self._selection_gone()
        entry = self._handlers.get(command.name)
        if entry is None:
            done = bad("Unknown command")
        elif self.st.state not in entry.states:
            done = bad(f"{command.name} is not allowed in the {self.st.state.value} state")
        elif command.undecodable_name() is not None:
            # A well-formed name that no mailbox can have: NO, not BAD (RFC 9051 6.3.9's spirit).
            log.info(
                "IMAP %s from %s names %r, not modified UTF-7",
                command.name,
                self.peer,
                command.undecodable_name(),
            )
            code = "CANNOT" if command.name in ("CREATE", "RENAME") else "NONEXISTENT"
            done = no("Mailbox name is not valid modified UTF-7", code)
        else:
            if self.st.view is not None:
                self.st.view.current_by_own_writes = False
            try:
                done = await entry.handler(self, command)
            except SessionEnded:
                raise
            except _Continue:
                return
            except _Cancelled:
                done = bad("Authentication cancelled")
            except Exception:
                log.exception("IMAP %s from %s failed", command.name, self.peer)
                done = no("Internal error, try again later", "SERVERBUG")
        if (
            done.status == "OK"
            and self.st.state is State.SELECTED
            and command.name not in ("SELECT", "EXAMINE")
        ):
            uid = getattr(command, "uid", False)
            await self.refresh(
                may_expunge=uid or command.name not in _NO_EXPUNGE_DURING, own_rename=command.name == "RENAME"
            )
            await contexts.notify(self)  # CONTEXT=SEARCH/SORT: results kept up to date
        if self.notify is not None and command.name != "NOTIFY":
            await notify.deliver(self)
        await self.send(serializer.status_response(command.tag, done.status, done.text, done.code))
        if self.bye_after_answer is not None:
            await self.send(self.bye_after_answer)
            raise SessionEnded

    # -- output --------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Writes `data`; if the client has gone (it may close right after LOGOUT, or reset the
        connection mid-command), the session ends quietly here, whatever command was answering."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except _CONNECTION_LOST as exc:
            self._went_away(exc)

    async def _read(self) -> bytes:
        """The client's next octets (b"" at its end of stream); a dropped connection ends the session."""
        try:
            return await self._stream.read(65536)
        except _CONNECTION_LOST as exc:
            self._went_away(exc)

    def _went_away(self, exc: BaseException) -> NoReturn:
        log.info("IMAP client %s went away: %s", self.peer, exc.__class__.__name__)
        raise SessionEnded from None

    async def untagged(self, *parts: bytes | str) -> None:
        await self.send(serializer.untagged(*parts))

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        return await self.ctx.run(function, *args)

    # -- keeping the client up to date ----------------------------------------------

    async def refresh(self, *, may_expunge: bool, own_rename: bool = False) -> None:
        """Tell the client what changed in its mailbox since it last heard (other sessions, new mail).

        A selected mailbox deleted or renamed away (by any session) ends the session with BYE, as
        Dovecot does: nothing sensible remains selected. After this session's own RENAME
        (`own_rename`) the BYE waits for the next command, so that the client first learns that
        its RENAME succeeded (Dovecot answers OK, then BYE at the next command)."""
        view = self.st.view
        if view is None:
            return
        if view.current_by_own_writes and not (may_expunge and view.has_pending_expunges):
            view.current_by_own_writes = False
            return
        current = await self._mailbox_now(view.mailbox.name)
        if current is None or current.mailbox_id != view.mailbox.mailbox_id:
            if own_rename:
                self._selection_renamed = True
                return
            await self._selection_gone()
        if (current.uidnext, current.highestmodseq) == (
            view.mailbox.uidnext,
            view.mailbox.highestmodseq,
        ) and not (may_expunge and view.has_pending_expunges):
            return
        snapshots = self.ctx.snapshots
        if snapshots.answers(current, view.mailbox.highestmodseq):  # no need to leave the event loop
            changes = snapshots.changes(current, view.mailbox.highestmodseq)
        else:
            changes = await self.call(snapshots.changes, current, view.mailbox.highestmodseq)
        updates = view.refresh(
            changes.mailbox,
            changes.states,
            changes.messages,
            may_expunge=may_expunge,
            qresync=self.st.qresync,
        )
        if updates.exists is not None:  # new UIDs: this session may be the first to see them
            await self.claim_recent(view, current)
        await self.announce(updates)

    async def _selection_gone(self) -> NoReturn:
        self.st.view = None
        self.st.state = State.AUTHENTICATED
        await self.send(b"* BYE the selected mailbox was deleted or renamed\r\n")
        raise SessionEnded

    async def _mailbox_now(self, name: str) -> Mailbox | None:
        """The mailbox item as it is now: from memory while the change feed keeps it current
        (no request, and no trip off the event loop when held), else read from the store."""
        assert self.st.user is not None
        held, mailbox = self.ctx.memory.items.known(self.st.user, name)
        if held:
            return mailbox
        return await self.call(self.ctx.memory.items.get, self.st.user, name)

    async def vanished_since(
        self, mailbox: Mailbox, modseq: int, ranges: list[tuple[int, int]] | None
    ) -> list[int]:
        """UIDs expunged after `modseq` (within `ranges`, if given), for VANISHED (EARLIER): the
        tombstones among the store's changes since then, not a listing of the mailbox."""
        if self.ctx.snapshots.answers(mailbox, modseq):  # this process's log reaches back that far
            changes = self.ctx.snapshots.changes(mailbox, modseq).states
        else:
            changes = await self.call(self.ctx.store.changes_since, mailbox, modseq)
        known = None if ranges is None else merged(ranges)
        return [c.uid for c in changes if c.expunged and (known is None or contains(known, c.uid))]

    async def announce(self, updates: Any) -> None:
        out = []
        if updates.new_keywords and self.st.view is not None:
            out.append(self.flags_changed())
        for number in updates.expunged:
            out.append(b"* %d EXPUNGE\r\n" % number)
        if updates.vanished:
            out.append(b"* VANISHED " + uid_set(updates.vanished).encode() + b"\r\n")
        view = self.st.view
        if updates.exists is not None:
            out.append(b"* %d EXISTS\r\n" % updates.exists)
            if not self.st.rev2 and view is not None:
                out.append(b"* %d RECENT\r\n" % view.recent)
        for message in updates.changed:
            number = view.number_of(message.uid) if view else None
            if number is not None:
                shown = view.shown(message) if view else message
                out.append(
                    render_fetch(number, shown, _FLAGS, None, add_uid=True, add_modseq=self.st.condstore)
                )
        if out:
            await self.send(b"".join(out))

    async def claim_recent(self, view: Any, mailbox: Mailbox) -> None:
        """A read-write IMAP4rev1 session claims the messages no session has seen yet as its
        \\Recent ones (RFC 3501 2.3.2; store/recent.py). No request when none arrived, nor when
        all that arrived since the last claim is expunged already: the view holds every live
        message below `mailbox.uidnext`, so none of them is at or above `recent_from`, and a later
        claim takes those UIDs along with nothing to show for them (a client that appends and
        expunges, as a Drafts folder sees, would otherwise cost a write at every SELECT)."""
        if view.read_only or self.st.rev2 or mailbox.recent_from >= mailbox.uidnext:
            return
        if not view.holds_from(mailbox.recent_from):
            return
        start, end = await self.call(self.ctx.memory.claim_recent, mailbox)
        view.claimed_recent(start, end)

    def flags_changed(self) -> bytes:
        """FLAGS and PERMANENTFLAGS for the selected mailbox's keywords, which just grew."""
        view = self.st.view
        assert view is not None
        return serializer.flags_changed(view.keywords, read_only=view.read_only)

    async def enable_condstore(self) -> None:
        """A CONDSTORE enabling command ran (RFC 7162 3.1): from now on every FETCH response carries
        MODSEQ, and a client that enabled it with a mailbox selected learns its HIGHESTMODSEQ now."""
        if self.st.condstore:
            return
        self.st.enabled.add("CONDSTORE")
        if self.st.view is not None:
            await self.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.st.view.mailbox.highestmodseq)

    # -- capabilities ----------------------------------------------------------------

    def may_login(self) -> bool:
        return self.tls or (self.ctx.plaintext_loopback and self.peer in ("127.0.0.1", "::1"))

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if self.st.state is State.NOT_AUTHENTICATED:
            if self.ctx.tls_context is not None and not self.tls:
                caps.append("STARTTLS")
            if self.may_login():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
        caps += [
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "OBJECTID",
            "PREVIEW",
            "STATUS=SIZE",
            "UTF8=ACCEPT",
            "MULTIAPPEND",
            "CATENATE",
            "BINARY",
            "COMPRESS=DEFLATE",
            "NOTIFY",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            f"APPENDLIMIT={self.ctx.append_limit}",
        ]
        return caps

    def capability_code(self) -> str:
        return "CAPABILITY " + " ".join(self.capabilities())

    # -- commands that need the connection itself --------------------------------------

    async def cmd_capability(self, command: Command) -> Done:
        await self.untagged("CAPABILITY", " ".join(self.capabilities()))
        return Done(text="CAPABILITY completed")

    async def cmd_noop(self, command: Command) -> Done:
        return Done(text=f"{command.name} completed")

    async def cmd_logout(self, command: Command) -> Done:
        await self.send(b"* BYE mailpipe IMAP signing off\r\n")
        self.st.state = State.LOGOUT
        return Done(text="LOGOUT completed")

    async def cmd_starttls(self, command: Command) -> Done:
        if self.tls or self.ctx.tls_context is None:
            return bad("TLS is not available here, or already active")
        if self._commands.buffered:
            # Commands pipelined behind STARTTLS would run inside TLS without having been protected.
            return bad("Commands after STARTTLS must wait for its completion")
        await self.send(serializer.status_response(command.tag, "OK", "Begin TLS negotiation now"))
        # Kept for the session's life: StreamWriter.__del__ closes its transport, now under TLS.
        self._plaintext_writer = self._writer
        try:
            self._stream, self._writer = await start_tls(self._writer, self.ctx.tls_context)
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("IMAP STARTTLS from %s failed: %s", self.peer, exc)
            raise SessionEnded from None
        self.tls = True
        raise _Continue

    async def answer_then_layer(self, tag: str, text: str, layer: Callable[..., tuple[Any, Any]]) -> NoReturn:
        """Answer the command OK, then put `layer` (COMPRESS's deflate) between the session and its
        connection: `layer(octets already received, reader, writer)` gives the new reader and writer."""
        await self.send(serializer.status_response(tag, "OK", text))
        self._stream, self._writer = layer(self._commands.take_buffered(), self._stream, self._writer)
        raise _Continue

    async def cmd_login(self, command: Login) -> Done:
        if not self.may_login():
            return no("Plaintext logins need TLS: use STARTTLS first", "PRIVACYREQUIRED")
        return await self.authenticate(Credentials(command.user, command.password))

    async def cmd_authenticate(self, command: Authenticate) -> Done:
        if not self.may_login():
            return no("Authentication needs TLS: use STARTTLS first", "PRIVACYREQUIRED")
        if command.mechanism == "PLAIN":
            response = command.initial_response
            if response is None:
                response = await self.sasl_response("")
            credentials = plain_credentials(response)
            if credentials is None:
                return bad("Malformed PLAIN response")
            return await self.authenticate(credentials)
        if command.mechanism == "LOGIN":
            user = command.initial_response
            if user is None:
                user = await self.sasl_response("Username:")
            password = await self.sasl_response("Password:")
            return await self.authenticate(Credentials.from_bytes(user, password))
        return no("Unsupported authentication mechanism")

    async def sasl_response(self, challenge: str) -> bytes:
        await self.send(b"+ " + encode_challenge(challenge) + b"\r\n")
        self._commands.expect_line()
        event = await self.next_event(self.ctx.autologout)
        if not isinstance(event, Line):
            raise SessionEnded
        if event.data.strip() == CANCEL:
            raise _Cancelled
        response = decode_response(event.data)
        if response is None:
            raise _Cancelled
        return response

    async def authenticate(self, credentials: Credentials) -> Done:
        logins = Logins(self.ctx.directory, self.ctx.throttle, self.ctx.run)
        try:
            account = await logins.check(credentials, self.peer, "imap")
        except Throttled:
            return no("Too many failed logins, try again later", "UNAVAILABLE")
        if account is None:
            return no("Invalid user name or password", "AUTHENTICATIONFAILED")
        sessions = self.ctx.user_sessions
        if not sessions.acquire(account.address):
            log.warning(
                "IMAP login for %s from %s refused: %d sessions open, the limit",
                account.address,
                self.peer,
                sessions.count(account.address),
            )
            return no(f"Too many sessions for this user (at most {sessions.limit})", "LIMIT")
        self._counted_as = account.address
        self._commands.set_limits(max_line=MAX_LINE, max_literal=self.ctx.append_limit, skip_oversize=True)
        self.st.user = account.address
        self.st.state = State.AUTHENTICATED
        if not self.ctx.store.inbox_ensured(account.address):
            await self.call(self.ctx.store.ensure_inbox, account.address)
        return Done(text="Logged in", code=self.capability_code())

    async def cmd_enable(self, command: Enable) -> Done:
        known = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}
        newly = [c for c in command.capabilities if c in known and c not in self.st.enabled]
        self.st.enabled.update(newly)
        if "QRESYNC" in newly and "CONDSTORE" not in self.st.enabled:
            self.st.enabled.add("CONDSTORE")
        await self.untagged("ENABLED", *newly) if newly else await self.send(b"* ENABLED\r\n")
        return Done(text="ENABLE completed")

    async def cmd_id(self, command: Id) -> Done:
        await self.untagged("ID", serializer.serialize(["name", "mailpipe", "vendor", "mailpipe"]))
        return Done(text="ID completed")

    async def cmd_namespace(self, command: Command) -> Done:
        await self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return Done(text="NAMESPACE completed")

    async def cmd_idle(self, command: Command) -> Done:
        """IDLE (RFC 2177): woken by the change feed (Wakeups); a keep-alive every `idle_keepalive`."""
        await self.send(serializer.continuation("idling"))
        self._commands.expect_line()
        loop = asyncio.get_running_loop()
        last_keepalive = loop.time()
        assert self.st.user is not None
        wake = self.ctx.wakeups.watch(self.st.user)
        reading: asyncio.Task[bytes] | None = None
        try:
            while True:
                event = self._commands.next_event()
                if event is None:
                    until_keepalive = max(0.0, last_keepalive + self.ctx.idle_keepalive - loop.time())
                    # Woken by the change feed at once; the memory is also looked at every
                    # idle_poll seconds as a backstop (no request while it is trusted and current:
                    # Thunderbird's IDLE was once left unwoken, cause not yet found). Untrusted,
                    # that look reads the store, as before the feed.
                    timeout = min(until_keepalive, self.ctx.idle_poll)
                    if reading is None:
                        reading = asyncio.ensure_future(self._read())
                    event = await self._read_or_wake(reading, wake, timeout)
                    if reading.done():
                        reading = None
                if event is not None:
                    if isinstance(event, Line) and event.data.strip().upper() == b"DONE":
                        return Done(text="IDLE terminated")
                    return bad("Expected DONE")
                if self.st.state is State.SELECTED:
                    await self.refresh(may_expunge=True)
                    await contexts.notify(self)
                if self.notify is not None:
                    await notify.deliver(self)
                if loop.time() - last_keepalive >= self.ctx.idle_keepalive:
                    await self.send(b"* OK Still here\r\n")
                    last_keepalive = loop.time()
        finally:
            self.ctx.wakeups.unwatch(self.st.user, wake)
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, SessionEnded, *_CONNECTION_LOST):
                    await reading

    async def _next_event_or_notify(self) -> Any:
        """next_event() for a session with NOTIFY on: while it waits for the client, changes to the
        user's mailboxes (the change feed's wake-ups, memory looked at every idle_poll seconds as
        IDLE does) are sent as they come (RFC 5465: no command needs to be running)."""
        assert self.st.user is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ctx.autologout
        wake = self.ctx.wakeups.watch(self.st.user)
        reading: asyncio.Task[bytes] | None = None
        try:
            while True:
                event = self._commands.next_event()
                if event is not None:
                    return event
                left = deadline - loop.time()
                if left <= 0:
                    await self.send(b"* BYE autologout: idle for too long\r\n")
                    raise SessionEnded
                if reading is None:
                    reading = asyncio.ensure_future(self._read())
                event = await self._read_or_wake(reading, wake, min(left, self.ctx.idle_poll))
                if reading.done():
                    reading = None
                if event is not None:
                    return event
                if not self._commands.in_command and self.notify is not None:
                    await notify.deliver(self, between_commands=True)
        finally:
            self.ctx.wakeups.unwatch(self.st.user, wake)
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, SessionEnded, *_CONNECTION_LOST):
                    await reading

    async def _read_or_wake(self, reading: asyncio.Task[bytes], wake: asyncio.Event, timeout: float) -> Any:
        """The client's next event if it said something within `timeout`; else None (woken by a
        change, or the time is up). A read still pending is left running for the next call."""
        if not reading.done():
            waiting = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({reading, waiting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
        wake.clear()
        if not reading.done():
            return None
        data = reading.result()
        if not data:
            raise SessionEnded
        self._commands.feed(data)
        return self._commands.next_event()


class _Continue(Exception):
    """STARTTLS already answered the command itself."""


class _Cancelled(Exception):
    """The client cancelled a SASL exchange with "*"."""
