"""Dovecot as a reference IMAP server on loopback, for the oracle tests and bench/imap.py.

``Dovecot`` starts Debian's Dovecot (package ``dovecot-imapd``) in the foreground as a
subprocess (``dovecot -F -c <conf>``) with a configuration of its own in a temporary directory:
no system configuration is read, nothing outside that directory is written, and it listens on
127.0.0.1 only, on a free port. Users come from a passwd-file (passwords stored PLAIN, or as
argon2id hashes for the bench); mail is in maildirs under the directory; there is no TLS and
plaintext logins are allowed::

    with Dovecot({"oracle@dovecot.test": "secret"}) as dovecot:
        client = dovecot.login("oracle@dovecot.test")
        append_exact(client, "INBOX", raw)

As root (CI), Dovecot's own unprivileged users run it as Debian's package sets it up: logins
as ``dovenull``, internal services and the mailboxes as ``dovecot`` (Dovecot refuses mail access
as root). As any other user, everything runs as that user and the login processes are not
chrooted.

The module also holds what the tests need to read IMAP responses: ``parse`` turns response text
(with its literals inline) into Python values, ``fetch_data`` the FETCH responses imaplib
collected into ``{sequence number: {item name: value}}``, and ``append_exact`` APPENDs bytes
exactly as given (imaplib's own ``append`` rewrites every bare LF or CR into CRLF).
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ports import free_port

DEBIAN_PACKAGES = ("dovecot-imapd",)  # pulls in dovecot-core, which has the dovecot binary
HOST = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds for Dovecot to greet on its port
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
SKIP_REASON = "missing tool: dovecot (Debian package dovecot-imapd; make test installs it when run as root)"


def find_dovecot() -> str | None:
    """The dovecot binary (Debian puts it in /usr/sbin, which a non-root PATH may lack), or None."""
    found = shutil.which("dovecot")
    if found is None and os.access("/usr/sbin/dovecot", os.X_OK):
        found = "/usr/sbin/dovecot"
    return found


def require_dovecot() -> str:
    """The dovecot binary, or a pytest skip whose reason CI turns into a failure (see .ci/run)."""
    found = find_dovecot()
    if found is None:
        import pytest

        pytest.skip(SKIP_REASON)
    return found


def _argon2id(password: str) -> str:
    """mailpipe's own password hash (mailpipe.passwords: argon2id, t=3, m=64 MiB, one lane), which
    Dovecot's libsodium verifier takes as it is: the same cost per LOGIN."""
    from mailpipe.passwords import hash_password

    return "{ARGON2ID}" + hash_password(password)


# Password schemes for the passwd-file: PLAIN (the default, cheapest) or ARGON2ID, which makes
# Dovecot pay what mailpipe pays for a LOGIN (bench/imap.py).
SCHEMES = {"PLAIN": lambda password: "{PLAIN}" + password, "ARGON2ID": _argon2id}


class DovecotError(RuntimeError):
    pass


class Dovecot:
    """One Dovecot IMAP server in a temporary directory; a context manager (start/stop).

    ``users`` maps login names to passwords, stored with ``scheme`` (a key of ``SCHEMES``).
    ``settings`` adds or overrides top-level configuration settings (``{"mail_fsync": "never"}``).
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        scheme: str = "PLAIN",
        binary: str | None = None,
    ) -> None:
        self.users = dict(users or {"oracle@dovecot.test": "oracle-password"})
        if any(re.search(r"[:\s]", user) or re.search(r"[:\r\n]", pw) for user, pw in self.users.items()):
            raise ValueError("passwd-file: no ':' or line breaks in users or passwords, no space in users")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(SCHEMES)}")
        self.scheme = scheme
        self.settings = dict(settings or {})
        self.binary = binary or find_dovecot()
        self.directory: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.binary is None:
            raise DovecotError(SKIP_REASON)
        if self.process is not None:
            raise DovecotError("already started")
        # A short path of our own: Dovecot's unix sockets live under base_dir (108-byte limit).
        self.directory = Path(tempfile.mkdtemp(prefix="dovecot-"))
        try:
            for attempt in range(3):  # the free port may be taken before Dovecot binds it
                self.port = free_port()
                self._write_config()
                with (self.directory / "stderr.log").open("ab") as stderr:  # the child keeps its own fd
                    self.process = subprocess.Popen(
                        [self.binary, "-F", "-c", str(self.config_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it ourselves
                    )
                if self._wait_ready():
                    return
                self._terminate()
                if attempt == 2 or "Address already in use" not in self.log():
                    raise DovecotError(f"Dovecot did not start on {HOST}:{self.port}:\n{self.log()[-3000:]}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops Dovecot (and every process it started) and removes its directory. Idempotent."""
        self._terminate()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the master stops its children (shutdown_clients)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own session: the whole group
                process.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):  # children that outlived their master
            os.killpg(process.pid, signal.SIGKILL)

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    # -- configuration ---------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "dovecot.log"

    def log(self) -> str:
        """Dovecot's log and anything it wrote to stderr, for error messages."""
        if self.directory is None:
            return ""
        parts = [
            path.read_text(errors="replace")
            for path in (self.directory / "stderr.log", self.log_path)
            if path.exists()
        ]
        return "\n".join(parts)

    def _write_config(self) -> None:
        directory = self.directory
        assert directory is not None
        root = os.geteuid() == 0
        if root:  # Debian's package creates these two; Dovecot never gives mail access to root
            login_user, internal_user = "dovenull", "dovecot"
        else:
            login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
        mail = pwd.getpwnam(internal_user)
        home = directory / "home"
        home.mkdir(exist_ok=True)
        passwd = directory / "passwd"
        passwd.write_text(
            "".join(
                f"{user}:{SCHEMES[self.scheme](password)}::::::\n" for user, password in self.users.items()
            )
        )
        if root:
            directory.chmod(0o755)  # the auth process (internal user) reads the passwd-file
            os.chown(home, mail.pw_uid, mail.pw_gid)
            os.chown(passwd, 0, mail.pw_gid)
            passwd.chmod(0o640)
        settings = {
            "protocols": "imap",
            "listen": HOST,
            "base_dir": str(directory / "run"),
            "state_dir": str(directory / "state"),
            "instance_name": f"dovecot-oracle-{self.port}",
            "log_path": str(self.log_path),
            "info_log_path": str(self.log_path),
            "ssl": "no",
            "disable_plaintext_auth": "no",
            "auth_mechanisms": "plain login",
            "default_login_user": login_user,
            "default_internal_user": internal_user,
            "default_internal_group": _group_name(mail.pw_gid),
            "first_valid_uid": str(mail.pw_uid),
            "last_valid_uid": "0",
            "first_valid_gid": "1" if mail.pw_gid else "0",
            "mail_location": "maildir:~/Maildir",
            "mail_max_userip_connections": "1000",  # bench/imap.py logs one user in many times
            "login_greeting": "Dovecot oracle ready.",
            **self.settings,
        }
        lines = [f"{name} = {value}" for name, value in settings.items()]
        lines += [
            "namespace inbox {",
            "  inbox = yes",
            "  separator = /",
            "}",
            "passdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {passwd}",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {passwd}",
            f"  default_fields = uid={mail.pw_uid} gid={mail.pw_gid} home={home}/%u",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            f"    address = {HOST}",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
            *([] if root else ["  chroot ="]),  # only root can chroot
            "}",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- clients ---------------------------------------------------------------------------------

    def connect(self, timeout: float = 30.0) -> imaplib.IMAP4:
        return imaplib.IMAP4(HOST, self.port, timeout=timeout)

    def login(self, user: str | None = None, timeout: float = 30.0) -> imaplib.IMAP4:
        """A client logged in as ``user`` (the first user when None)."""
        user = user or next(iter(self.users))
        client = self.connect(timeout)
        try:
            client.login(user, self.users[user])
        except BaseException:
            client.shutdown()
            raise
        return client


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


# -- clients: exact APPEND, response parsing ----------------------------------------------------


def append_exact(
    client: imaplib.IMAP4, mailbox: str, message: bytes, flags: str | None = None, date_time: Any = None
) -> int | None:
    """APPEND ``message`` byte for byte (imaplib's ``append`` turns bare LF and CR into CRLF).

    Returns the new message's UID from APPENDUID (RFC 4315) when the server sends it.
    """
    if flags and not flags.startswith("("):
        flags = f"({flags})"
    client.literal = message  # what imaplib.IMAP4.append does, minus its line-end rewriting
    status, data = client._simple_command(
        "APPEND", mailbox, flags, imaplib.Time2Internaldate(date_time) if date_time else None
    )
    if status != "OK":
        raise DovecotError(f"APPEND failed: {data!r}")
    match = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[-1] or b"")
    return int(match.group(1)) if match else None


class Atom(str):
    """An atom in a response (a flag, a FETCH item name, OK, ...), as opposed to a string."""

    __slots__ = ()


_ATOM_END = b" ()\r\n"


def parse(data: bytes) -> list[Any]:
    """The values of response text ``data``, literals inline (``{n}`` CRLF then n octets).

    NIL is None, numbers int, quoted strings and literals (also literal8 ``~{n}``) bytes,
    parenthesized lists Python lists, anything else an ``Atom``. An atom keeps a bracketed part
    with its spaces, as in ``BODY[HEADER.FIELDS (DATE FROM)]<0>``. Raises ValueError on bad input.
    """
    return _parse_list(data, 0, top=True)[0]


def _parse_list(data: bytes, pos: int, top: bool = False) -> tuple[list[Any], int]:
    out: list[Any] = []
    size = len(data)
    while True:
        while pos < size and data[pos : pos + 1] in (b" ", b"\r", b"\n"):
            pos += 1
        if pos >= size:
            if top:
                return out, pos
            raise ValueError("unterminated list")
        char = data[pos : pos + 1]
        if char == b")":
            if top:
                raise ValueError(f"unbalanced ) at {pos}")
            return out, pos + 1
        if char == b"(":
            value, pos = _parse_list(data, pos + 1)
        elif char == b'"':
            value, pos = _parse_quoted(data, pos + 1)
        elif char == b"{" or data.startswith(b"~{", pos):
            value, pos = _parse_literal(data, pos)
        else:
            value, pos = _parse_atom(data, pos)
        out.append(value)


def _parse_quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while pos < len(data):
        char = data[pos]
        if char == 0x22:
            return bytes(out), pos + 1
        if char == 0x5C and pos + 1 < len(data):
            pos += 1
            char = data[pos]
        out.append(char)
        pos += 1
    raise ValueError("unterminated quoted string")


def _parse_literal(data: bytes, pos: int) -> tuple[bytes, int]:
    match = re.compile(rb"~?\{(\d+)\+?\}\r\n").match(data, pos)
    if match is None:
        raise ValueError(f"bad literal at {pos}: {data[pos : pos + 20]!r}")
    start = match.end()
    end = start + int(match.group(1))
    if end > len(data):
        raise ValueError("literal runs past the end of the response")
    return data[start:end], end


def _parse_atom(data: bytes, pos: int) -> tuple[Any, int]:
    start = pos
    depth = 0
    while pos < len(data):
        char = data[pos : pos + 1]
        if char == b"[":
            depth += 1
        elif char == b"]":
            depth -= 1
        elif depth == 0 and char in _ATOM_END:
            break
        pos += 1
    text = data[start:pos].decode("latin-1")
    if not text:
        raise ValueError(f"empty atom at {start}")
    if text.upper() == "NIL":
        return None, pos
    if text.isdigit():
        return int(text), pos
    return Atom(text), pos


def responses(data: Iterable[Any]) -> list[bytes]:
    """The untagged responses of one kind that imaplib collected (``typ, data``'s data), each put
    back together as its text with literals inline.

    imaplib stores a response with literals as ``(text up to {n}, literal)`` tuples followed by
    the bytes of the line's remainder; a response without literals is one bytes item.
    """
    out: list[bytes] = []
    current = b""
    for item in data:
        if isinstance(item, tuple):
            current += item[0] + b"\r\n" + item[1]
        elif item is not None:
            out.append(current + item)
            current = b""
    if current:
        out.append(current)
    return out


def fetch_data(data: Iterable[Any]) -> dict[int, dict[str, Any]]:
    """imaplib's FETCH data as ``{sequence number: {ITEM NAME: value}}``.

    Item names are upper-cased and lose .PEEK (servers answer BODY[1] to BODY.PEEK[1]); several
    responses for one message are merged.
    """
    out: dict[int, dict[str, Any]] = {}
    for text in responses(data):
        values = parse(text)
        if len(values) != 2 or not isinstance(values[0], int) or not isinstance(values[1], list):
            raise ValueError(f"not a FETCH response: {text[:200]!r}")
        number, items = values
        if len(items) % 2:
            raise ValueError(f"odd FETCH item list: {text[:200]!r}")
        merged = out.setdefault(number, {})
        for name, value in zip(items[::2], items[1::2], strict=True):
            merged[str(name).upper().replace(".PEEK", "")] = value
    return out


def fetch(
    client: imaplib.IMAP4, sequence: str, items: str, *, uid: bool = False
) -> dict[int, dict[str, Any]]:
    """FETCH (or UID FETCH) ``items`` and the parsed results, as ``fetch_data`` gives them."""
    if uid:
        status, data = client.uid("FETCH", sequence, items)
    else:
        status, data = client.fetch(sequence, items)
    if status != "OK":
        raise DovecotError(f"FETCH {sequence} {items} failed: {data!r}")
    return fetch_data(data)
