"""A seeded IMAP fuzzer: random, mutated and oversize commands before and after login.

Each command goes out alone and must be answered (its tagged response, or a BYE and an orderly
close where that is the right answer) before the next: that is the property checked, together
with "no error logged" by the caller. Used by tests/test_imap_fuzz.py and bench/hostile_imap.py.
"""

from __future__ import annotations

import base64
import contextlib
import random
import re
import socket
from collections import Counter
from dataclasses import dataclass

PREAUTH = [
    b"CAPABILITY",
    b"NOOP",
    b'ID ("name" "fuzz" "version" "1")',
    b"ID NIL",
    b"ENABLE IMAP4rev2",
    b'LOGIN nobody@example.test "wrong"',
    b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0nobody@example.test\0wrong"),
    b"AUTHENTICATE PLAIN",
    b"AUTHENTICATE LOGIN",
    b"AUTHENTICATE CRAM-MD5",
    b'LIST "" *',
    b"SELECT INBOX",
    b"FETCH 1 BODY[]",
]
AUTHENTICATED = [
    b"FETCH 1:* (FLAGS BODY[1.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10> BINARY[1] BINARY.SIZE[1])",
    b"UID FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
    b"SEARCH OR FROM a NOT SUBJECT x",
    b"SEARCH TEXT fuzz BODY body HEADER Subject fuzz",
    b"STORE 1:3 +FLAGS (\\Seen $label1)",
    b"UID STORE 2 -FLAGS.SILENT (\\Seen)",
    b"COPY 1 Trash",
    b"MOVE 2 Archive",
    b"EXPUNGE",
    b"UID EXPUNGE 1:*",
    b"SELECT INBOX",
    b"EXAMINE Trash",
    b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE HIGHESTMODSEQ)",
    b'LIST "" *',
    b'LIST "" "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*aZ"',
    b'LIST (SUBSCRIBED) "" ("%" "*/%") RETURN (CHILDREN STATUS (MESSAGES))',
    b"CREATE a/b/c",
    b"CREATE " + b"a" * 300,
    b"RENAME a x",
    b"DELETE x/b/c",
    b"ENABLE QRESYNC",
    b"GETQUOTAROOT INBOX",
    b"SEARCH RETURN (MIN MAX COUNT SAVE) ALL",
    b"FETCH $ (UID)",
    b"UNSELECT",
    b"IDLE",
    b"NAMESPACE",
    b"NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER]) MessageExpunge FlagChange))"
    b" (SUBTREE (a x) (MessageNew MessageExpunge MailboxName SubscriptionChange)) (INBOXES NONE)",
    b"NOTIFY NONE",
    b"AUTHENTICATE PLAIN",
]
_ANNOUNCEMENT = re.compile(rb"~?\{\d+\+?\}$")


@dataclass(frozen=True)
class Command:
    """``line`` (no CRLF), then optionally a literal and the rest of the command after it."""

    line: bytes
    literal: bytes | None = None
    synchronizing: bool = True
    rest: bytes = b""


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()

    # -- making commands ---------------------------------------------------------------------

    def command(self, authenticated: bool) -> Command:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15:
            return Command(self._safe(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 80)))))
        if roll < 0.25:
            return self._literal(authenticated)
        if roll < 0.30:
            return self._huge(authenticated)
        if roll < 0.35:
            return self._nested()
        line = bytearray(rng.choice(AUTHENTICATED if authenticated else PREAUTH))
        for _ in range(rng.choice([0, 0, 1, 2, 5])):
            self._mutate(line)
        return Command(self._safe(bytes(line)))

    def _mutate(self, line: bytearray) -> None:
        rng = self.rng
        at = rng.randrange(len(line) + 1)
        kind = rng.randrange(4)
        if kind == 0 and line:
            line[min(at, len(line) - 1)] = rng.choice(b' ()[]{}<>"\\*%$:,.0123456789~+-AZaz\x00\x7f\xff')
        elif kind == 1:
            line[at:at] = bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 8)))
        elif kind == 2 and line:
            del line[at : at + rng.randint(1, 10)]
        else:
            line[at:at] = line[at : at + rng.randint(1, 40)] * rng.randint(1, 20)

    def _literal(self, authenticated: bool) -> Command:
        rng = self.rng
        sync = rng.random() < 0.5
        binary = authenticated and rng.random() < 0.2
        size = rng.choice([0, 1, 100, 4096, 8192, 8193, 20_000, 300_000] + ([50_000_000] if sync else []))
        if not sync and not authenticated and size > 8192:
            size = rng.choice([8193, 41943040])  # over the pre-login limit: answered, then closed
        # Sizes past 64 KiB are only announced, never sent: the server refuses or stops reading.
        sent = min(size, 300_000 if authenticated else 65536)
        data = (bytes(rng.randint(0, 255) for _ in range(min(sent, 64))) * (sent // 64 + 1))[:sent]
        announce = b"%s{%d%s}" % (b"~" if binary else b"", size, b"" if sync else b"+")
        if authenticated:
            line, rest = b"APPEND INBOX (\\Seen) " + announce, b""
        else:
            line, rest = b"LOGIN " + announce, b' "password"'
        return Command(line, data, sync, rest)

    def _huge(self, authenticated: bool) -> Command:
        rng = self.rng
        size = rng.choice([8000, 9000, 65_000, 70_000] if not authenticated else [60_000, 70_000])
        token = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(64)) * (size // 64)
        return Command(rng.choice([b"ID (", b"LOGIN ", b"SELECT ", b"FETCH 1:* (", b"SEARCH TEXT "]) + token)

    def _nested(self) -> Command:
        depth = self.rng.choice([5, 31, 33, 200, 3000])
        return Command(b"SEARCH " + b"(" * depth + b"ALL" + b")" * depth)

    @staticmethod
    def _safe(line: bytes) -> bytes:
        """No line end inside, no literal announced by accident, no STARTTLS (it changes the socket)."""
        line = line.replace(b"\n", b" ").replace(b"\r", b" ")
        if _ANNOUNCEMENT.search(line):
            line = line[:-1] + b"x"
        return line.replace(b"STARTTLS", b"STARTTLX").replace(b"starttls", b"starttlx")

    # -- talking -------------------------------------------------------------------------------

    def session(self, port: int, commands: int, login: tuple[str, str] | None) -> None:
        """One connection: log in if ``login`` is given, then ``commands`` commands, then LOGOUT.
        Reconnects (and logs in again) when a command is rightly answered with BYE."""
        conversation = _Conversation(port, login)
        try:
            for n in range(commands):
                command = self.command(authenticated=login is not None)
                outcome = conversation.exchange(b"t%d" % n, command, self.rng)
                self.counts[outcome] += 1
                if outcome != "answered":
                    conversation.close()
                    conversation = _Conversation(port, login)
            conversation.exchange(b"z", Command(b"LOGOUT"), self.rng)
        finally:
            conversation.close()


class Unanswered(AssertionError):
    """The server closed the connection without a BYE, or never answered."""


class _Conversation:
    def __init__(self, port: int, login: tuple[str, str] | None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rb")
        greeting = self.file.readline()
        if not greeting.startswith(b"* OK"):
            raise Unanswered(f"greeting {greeting!r}")
        if login is not None:
            user, password = login
            answer = self._send_and_wait(b"L", Command(f'LOGIN {user} "{password}"'.encode()), None)
            if answer != "answered":
                raise Unanswered(f"login: {answer}")
            self._send_and_wait(b"S", Command(b"SELECT INBOX"), None)

    def exchange(self, tag: bytes, command: Command, rng: random.Random) -> str:
        """Send one command; "answered", "bye" (an orderly close) or "tls" (STARTTLS got through)."""
        return self._send_and_wait(tag, command, rng)

    def _send_and_wait(self, tag: bytes, command: Command, rng: random.Random | None) -> str:
        line = tag + b" " + command.line
        pending = command.literal if command.synchronizing else None
        tail = b"" if command.literal is None else command.literal + command.rest + b"\r\n"
        # Closed while we sent (an oversize literal before login): what it said is read below.
        with contextlib.suppress(OSError):
            self.sock.sendall(line + b"\r\n" + (b"" if command.synchronizing else tail))
        bye = False
        while True:
            try:
                answer = self.file.readline()
            except ConnectionResetError:
                answer = b""
            except TimeoutError:
                raise Unanswered(
                    f"no answer to {line[:200]!r} (literal {command.literal is not None})"
                ) from None
            if not answer:
                if bye:
                    return "bye"
                raise Unanswered(f"connection closed without BYE after {line[:120]!r}")
            if answer.startswith(b"* BYE"):
                bye = True
            elif answer.startswith(tag + b" "):
                if answer.startswith(tag + b" OK Begin TLS"):
                    return "tls"
                return "bye" if bye else "answered"
            elif answer.startswith(b"+"):
                if pending is not None:
                    self.sock.sendall(tail)
                    pending = None
                elif command.line.upper().startswith(b"IDLE"):
                    self.sock.sendall(b"DONE\r\n")
                else:  # a SASL challenge: some garbage, or cancel
                    reply = b"*" if rng is None or rng.random() < 0.5 else base64.b64encode(rng.randbytes(12))
                    self.sock.sendall(reply + b"\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()
