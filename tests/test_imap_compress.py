"""COMPRESS=DEFLATE (RFC 4978) with raw sockets and zlib (imaplib has no COMPRESS), and with mbsync,
which uses it whenever a server offers it, against the server on the moto-backed store."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import zlib
from collections.abc import Iterator

import pytest
from conftest import PASSWORD, require_tool
from raw_imap import Client, login


class Deflated:
    """Both directions of a connection after COMPRESS: raw deflate (wbits -15), sync-flushed."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket, already: bytes = b"") -> None:
        self.sock = sock
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.buffer = self.inflate.decompress(already)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.buffer += self.inflate.decompress(data)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def response_line(self) -> bytes:
        line = self.line()
        while (found := re.search(rb"~?\{(\d+)\}\r\n$", line)) is not None:
            size = int(found.group(1))
            while len(self.buffer) < size:
                self.buffer += self.inflate.decompress(self.sock.recv(65536))
            literal, self.buffer = self.buffer[:size], self.buffer[size:]
            line += literal + self.line()
        return line

    def command(self, tag: str, data: bytes) -> list[bytes]:
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> list[bytes]:
        lines = []
        while not (lines := [*lines, self.response_line()])[-1].startswith(tag.encode() + b" "):
            pass
        return lines


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


@pytest.fixture
def client(stack, user) -> Iterator[Client]:
    connection = login(stack.imap_port, user, PASSWORD)
    yield connection
    connection.close()


def compressed(client: Client) -> Deflated:
    """COMPRESS DEFLATE; the tagged OK comes uncompressed, everything after it deflated."""
    client.send(b"z COMPRESS DEFLATE\r\n")
    assert plain_line(client.sock) == b"z OK DEFLATE active\r\n"
    return Deflated(client.sock)


def plain_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """One line read octet by octet, so that nothing deflated after it is taken along."""
    line = b""
    while not line.endswith(b"\n"):
        octet = sock.recv(1)
        assert octet, "connection closed"
        line += octet
    return line


def test_capability_is_advertised(client) -> None:
    assert b" COMPRESS=DEFLATE" in client.ok("c", b"CAPABILITY")[0]


def test_commands_and_literals_both_ways(stack, user, client) -> None:
    deflated = compressed(client)
    assert deflated.command("a", b"NOOP") == [b"a OK NOOP completed\r\n"]
    message = b"Subject: squeezed\r\n\r\n" + b"compressible text " * 5000 + b"\r\n"
    deflated.send(b"b APPEND INBOX {%d}\r\n" % len(message))
    assert deflated.line().startswith(b"+ ")  # the continuation request, deflated too
    deflated.send(message + b"\r\n")
    assert deflated.until("b")[-1].startswith(b"b OK [APPENDUID ")
    deflated.command("s", b"SELECT INBOX")
    lines = deflated.command("f", b"FETCH 1 (BODY.PEEK[])")
    assert lines[0] == b"* 1 FETCH (BODY[] {%d}\r\n" % len(message) + message + b")\r\n"
    assert lines[-1].startswith(b"f OK")
    assert deflated.command("c", b"COMPRESS DEFLATE")[-1].startswith(b"c NO [COMPRESSIONACTIVE]")
    assert deflated.command("l", b"LOGOUT")[0].startswith(b"* BYE")


def test_commands_pipelined_behind_compress_are_read_compressed(client) -> None:
    """RFC 4978 3: the client compresses from the octet after its COMPRESS line, so it may send
    deflated commands before the OK comes back."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    pipelined = deflate.compress(b"a NOOP\r\nb CAPABILITY\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH)
    client.send(b"z COMPRESS DEFLATE\r\n" + pipelined)
    assert plain_line(client.sock) == b"z OK DEFLATE active\r\n"
    deflated = Deflated(client.sock)
    deflated.deflate = deflate
    assert deflated.until("a") == [b"a OK NOOP completed\r\n"]
    assert deflated.until("b")[-1] == b"b OK CAPABILITY completed\r\n"


@pytest.mark.parametrize(
    ("command", "answer"),
    [(b"COMPRESS GZIP", b"a BAD"), (b"COMPRESS", b"a BAD"), (b"COMPRESS DEFLATE extra", b"a BAD")],
)
def test_bad_compress_commands(client, command: bytes, answer: bytes) -> None:
    assert client.command("a", command)[-1].startswith(answer)
    client.ok("b", b"NOOP")  # still uncompressed


def test_not_before_login(stack) -> None:
    client = Client(stack.imap_port)
    try:
        assert client.command("a", b"COMPRESS DEFLATE")[-1].startswith(b"a BAD")
    finally:
        client.close()


def test_a_deflate_bomb_meets_the_line_limit(client) -> None:
    """80 MB of one line, sent as about 80 kB deflated: the server inflates it a slice at a time,
    discards it at the 64 KiB line limit, answers BAD, and serves the next command."""
    deflated = compressed(client)
    chunk = deflated.deflate.compress(b"x" * (1 << 20))
    for _ in range(80):
        deflated.sock.sendall(chunk)
        chunk = deflated.deflate.compress(b"x" * (1 << 20))
    deflated.send(b"\r\n")
    assert deflated.response_line() == b"* BAD Command line too long\r\n"
    assert deflated.command("a", b"NOOP") == [b"a OK NOOP completed\r\n"]


def test_data_that_does_not_inflate_ends_the_connection(client) -> None:
    compressed(client)
    client.sock.sendall(b"\xff" * 64)  # no valid deflate block
    client.sock.settimeout(10)
    assert client.sock.recv(100) == b""


def test_starttls_then_compress(stack, user) -> None:
    """The layers in RFC 4978's order: TLS first (before login), then deflate inside it."""
    raw = socket.create_connection(("127.0.0.1", stack.imap_port), timeout=30)
    try:
        file = raw.makefile("rb")
        assert file.readline().startswith(b"* OK")
        raw.sendall(b"t STARTTLS\r\n")
        assert file.readline().startswith(b"t OK")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls_file = tls.makefile("rb")
        tls.sendall(b'l LOGIN "%s" "%s"\r\n' % (user.encode(), PASSWORD.encode()))
        while not (line := tls_file.readline()).startswith(b"l "):
            pass
        assert line.startswith(b"l OK")
        tls.sendall(b"z COMPRESS DEFLATE\r\n")
        assert plain_line(tls) == b"z OK DEFLATE active\r\n"
        deflated = Deflated(tls)
        assert deflated.command("a", b"NOOP") == [b"a OK NOOP completed\r\n"]
        assert deflated.command("b", b"STARTTLS")[-1].startswith(b"b BAD")  # not after login
    finally:
        raw.close()


def test_mbsync_syncs_over_compress(stack, user, tmp_path) -> None:
    """mbsync (isync 1.4) sends COMPRESS DEFLATE after STARTTLS and login whenever it is offered."""
    from test_imap_real_clients import mbsync_config, without_tuid

    tool = require_tool("mbsync")
    store = stack.mail_store()
    bodies = [b"Subject: m%d\r\n\r\n%s\r\n" % (n, b"line of text\r\n" * 200) for n in range(3)]
    for body in bodies:
        store.append(user, "INBOX", body)
    config = mbsync_config(stack, user, tmp_path)
    result = subprocess.run(
        [tool, "-D", "-c", str(config), "mailpipe:INBOX"],
        env={"HOME": str(tmp_path)},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"COMPRESS DEFLATE" in result.stdout + result.stderr
    synced = sorted(without_tuid(p.read_bytes()) for p in (tmp_path / "Mail" / "INBOX" / "new").iterdir())
    assert synced == sorted(body.replace(b"\r\n", b"\n") for body in bodies)
