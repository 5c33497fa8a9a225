"""BINARY (RFC 3516) over a real socket: decoded parts, their sizes, partials, literal8 both ways,
and UNKNOWN-CTE, against the server on the moto-backed store."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from conftest import PASSWORD
from raw_imap import Client, login

PAYLOAD = bytes(range(256)) * 4  # every octet, NUL included
MESSAGE = (
    b"Subject: binary\r\nFrom: a@example.test\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=C3=BC=C3=9Fe, soft=\r\nbreak\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--b\r\nContent-Type: application/x-thing\r\nContent-Transfer-Encoding: x-unheard-of\r\n\r\n"
    b"whatever\r\n--b--\r\n"
)


@pytest.fixture
def client(stack, new_user) -> Iterator[Client]:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    connection = login(stack.imap_port, owner, PASSWORD)
    connection.ok("a", b"APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE)
    connection.ok("s", b"SELECT INBOX")
    yield connection
    connection.close()


def test_capability_is_advertised(client) -> None:
    assert b" BINARY" in client.ok("c", b"CAPABILITY")[0]


def test_decoded_parts_as_literal8_and_their_sizes(client) -> None:
    lines = client.ok("f", b"FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1] BINARY.SIZE[1])")
    line = lines[0]
    assert b"BINARY[2] ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD in line  # NUL: a literal8
    assert b"BINARY.SIZE[2] %d" % len(PAYLOAD) in line
    text = "Grüße, softbreak".encode()  # the CRLF before the boundary is the boundary's
    assert b"BINARY[1] {%d}\r\n" % len(text) + text in line  # no NUL: a plain literal
    assert b"BINARY.SIZE[1] %d" % len(text) in line
    assert b"\\Seen" not in line  # .PEEK


def test_partial_and_seen(client) -> None:
    lines = client.ok("f", b"FETCH 1 (BINARY[2]<0.3> BINARY.PEEK[2]<1.3>)")
    assert b"BINARY[2]<0> ~{3}\r\n\x00\x01\x02" in lines[0]
    assert b"BINARY[2]<1> {3}\r\n\x01\x02\x03" in lines[0]  # a literal8 only when it holds NUL
    # Without .PEEK it sets \Seen, as BODY[] does (\Recent too: this session saw it first).
    assert re.search(rb"FLAGS \(\\Seen( \\Recent)?\)", lines[0]), lines


def test_an_unknown_transfer_encoding_is_unknown_cte(client) -> None:
    lines = client.command("f", b"FETCH 1 (BINARY.PEEK[3])")
    assert lines[-1].startswith(b"f NO [UNKNOWN-CTE]"), lines
    lines = client.command("g", b"FETCH 1 (BINARY.SIZE[3])")
    assert lines[-1].startswith(b"g NO [UNKNOWN-CTE]"), lines
    client.ok("h", b"FETCH 1 (BODY.PEEK[3])")  # BODY[] sends it as it is


def test_append_of_a_literal8_comes_back_byte_for_byte(client) -> None:
    raw = b"Subject: nul\r\n\r\nbefore \x00 after\r\n"
    client.ok("a", b"APPEND INBOX ~{%d+}\r\n" % len(raw) + raw)
    lines = client.ok("f", b"FETCH 2 (BINARY.PEEK[] BINARY.PEEK[1])")
    assert b"BINARY[] ~{%d}\r\n" % len(raw) + raw in lines[-2]
    assert b"BINARY[1] ~{%d}\r\nbefore \x00 after\r\n" % len(b"before \x00 after\r\n") in lines[-2]
