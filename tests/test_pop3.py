"""The POP3 gateway with Python's poplib and curl, on the dev stack's store."""

from __future__ import annotations

import base64
import poplib
import socket
import ssl
import subprocess

import pytest
from conftest import PASSWORD, require_tool

from mailpipe.mime.lines import crlf_lines

MESSAGE = b"From: a@remote.test\r\nSubject: pop\r\n\r\nline one\r\n.starts with a dot\r\nlast\r\n"
BARE_LF = b"From: a@remote.test\nSubject: bare\n\nlf only\n"


@pytest.fixture
def mailbox(stack, new_user):
    """A user with two messages in INBOX."""
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.append(owner, "INBOX", MESSAGE)
    store.append(owner, "INBOX", BARE_LF)
    return owner


def login(stack, owner: str, port: int | None = None) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port or stack.pop3_port, timeout=30)
    client.user(owner)
    client.pass_(PASSWORD)
    return client


def test_capabilities(stack) -> None:
    client = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
    capa = client.capa()
    for name in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "STLS", "USER", "SASL"):
        assert name in capa, name
    assert capa["SASL"] == ["PLAIN"]
    client.quit()


def test_stat_list_retr_top_with_crlf_sizes_and_dot_stuffing(stack, mailbox) -> None:
    client = login(stack, mailbox)
    sizes = [len(MESSAGE), len(BARE_LF.replace(b"\n", b"\r\n"))]
    assert client.stat() == (2, sum(sizes))
    _, listing, _ = client.list()
    assert listing == [b"1 %d" % sizes[0], b"2 %d" % sizes[1]]
    _, lines, _ = client.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == MESSAGE  # poplib undoes the dot-stuffing
    _, lines, _ = client.retr(2)
    assert lines == crlf_lines(BARE_LF)
    _, top, _ = client.top(1, 1)
    assert top == [b"From: a@remote.test", b"Subject: pop", b"", b"line one"]
    client.quit()


def test_dot_stuffing_on_the_wire(stack, mailbox) -> None:
    with socket.create_connection(("127.0.0.1", stack.pop3_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"USER {mailbox}\r\nPASS {PASSWORD}\r\nRETR 1\r\n".encode())
        assert [reader.readline()[:3] for _ in range(3)] == [b"+OK"] * 3
        body = b"".join(iter(lambda: reader.readline(), b".\r\n"))
        assert b"\r\n..starts with a dot\r\n" in body


def test_dele_applies_only_at_quit(stack, mailbox) -> None:
    client = login(stack, mailbox)
    client.dele(1)
    with pytest.raises(poplib.error_proto, match="no such message"):
        client.retr(1)
    assert client.stat()[0] == 1
    client.rset()
    assert client.stat()[0] == 2
    client.dele(2)
    client.quit()
    _, left = stack.mail_store().list_messages(mailbox, "INBOX")
    assert [m.uid for m in left] == [1]


def test_a_dropped_session_deletes_nothing(stack, mailbox) -> None:
    client = login(stack, mailbox)
    client.dele(1)
    client.close()  # drop the connection without QUIT
    client = login_when_unlocked(stack, mailbox)
    assert client.stat()[0] == 2
    client.quit()


def login_when_unlocked(stack, owner: str) -> poplib.POP3:
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            return login(stack, owner)
        except poplib.error_proto as exc:
            if b"IN-USE" not in exc.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_uidl_is_stable_across_sessions(stack, mailbox) -> None:
    first = login(stack, mailbox)
    uids = first.uidl()[1]
    first.dele(1)
    first.quit()
    second = login(stack, mailbox)
    assert second.uidl()[1] == [b"1 " + uids[1].split()[1]]
    second.quit()


def test_in_use(stack, mailbox) -> None:
    first = login(stack, mailbox)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        login(stack, mailbox)
    first.quit()
    login(stack, mailbox).quit()


def test_login_right_after_quit_finds_the_maildrop_free(stack, mailbox) -> None:
    # The lease is released before QUIT's +OK (RFC 1939 6), so a client that logs in again at once
    # is never told [IN-USE] by its own closed session; many rounds, as the release once raced it.
    # The next client has said USER already, so its PASS follows the +OK by one round trip only.
    client = login(stack, mailbox)
    for _ in range(40):
        following = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
        following.user(mailbox)
        client.quit()
        following.pass_(PASSWORD)
        client = following
    client.quit()


def test_wrong_password_then_throttled(stack, mailbox) -> None:
    pop3 = stack.build_pop3()
    stack.loop.run(pop3.start())
    try:
        for _ in range(5):
            client = poplib.POP3("127.0.0.1", pop3.port, timeout=30)
            client.user(mailbox)
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\] invalid"):
                client.pass_("wrong")
            client.quit()
        client = poplib.POP3("127.0.0.1", pop3.port, timeout=30)
        client.user(mailbox)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] too many failed logins"):
            client.pass_(PASSWORD)
    finally:
        stack.loop.run(pop3.stop())


def test_auth_plain_with_and_without_initial_response(stack, mailbox) -> None:
    token = base64.b64encode(f"\0{mailbox}\0{PASSWORD}".encode()).decode()
    client = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
    assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    client.quit()
    with socket.create_connection(("127.0.0.1", stack.pop3_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"AUTH PLAIN\r\n")
        assert reader.readline().startswith(b"+ ")
        sock.sendall(token.encode() + b"\r\n")
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"+OK")


def test_no_plaintext_login_without_tls_off_loopback(stack, mailbox) -> None:
    pop3 = stack.build_pop3(plaintext_loopback=False)
    stack.loop.run(pop3.start())
    try:
        client = poplib.POP3("127.0.0.1", pop3.port, timeout=30)
        capa = client.capa()
        assert "USER" not in capa and "STLS" in capa
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.user(mailbox)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.stls(context)
        assert "USER" in client.capa()
        client.user(mailbox)
        client.pass_(PASSWORD)
        assert client.stat()[0] == 2
        client.quit()
    finally:
        stack.loop.run(pop3.stop())


def test_bad_commands(stack, mailbox) -> None:
    with socket.create_connection(("127.0.0.1", stack.pop3_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        exchange = [
            (b"STAT", b"-ER"),
            (b"FROB", b"-ER"),
            (b"USER", b"-ER"),
            (f"USER {mailbox}".encode(), b"+OK"),
            (f"PASS {PASSWORD}".encode(), b"+OK"),
            (b"RETR 99", b"-ER"),
            (b"RETR x", b"-ER"),
            (b"TOP 1", b"-ER"),
            (b"DELE 0", b"-ER"),
            (b"X" * 2000, b"-ER"),
            (b"NOOP", b"+OK"),
        ]
        sock.sendall(b"".join(command + b"\r\n" for command, _ in exchange))
        assert [reader.readline()[:3] for _ in exchange] == [reply for _, reply in exchange]


def test_users_see_only_their_own_mail(stack, mailbox, new_user) -> None:
    other = new_user()
    client = login(stack, other)
    assert client.stat() == (0, 0)
    with pytest.raises(poplib.error_proto):
        client.retr(1)
    client.quit()


def test_curl_pop3(stack, mailbox) -> None:
    curl = require_tool("curl")
    base = f"pop3://127.0.0.1:{stack.pop3_port}"

    def run(*args: str) -> bytes:
        result = subprocess.run(
            [curl, "-sS", "--user", f"{mailbox}:{PASSWORD}", *args], capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert run(base + "/").splitlines() == [b"1 %d" % len(MESSAGE), b"2 %d" % (len(BARE_LF) + 4)]
    assert run(base + "/1") == MESSAGE
    assert run(base + "/", "-X", "UIDL").splitlines()[0].startswith(b"1 ")
    assert run(base + "/", "-X", "TOP 1 0").splitlines() == [b"From: a@remote.test", b"Subject: pop", b""]


def exchange(port: int, lines: list[bytes]) -> list[bytes]:
    """Sends `lines` pipelined on a fresh connection; the first line of each answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"".join(line + b"\r\n" for line in lines))
        return [reader.readline() for _ in lines]


def test_message_numbers_are_ascii_digits_only(stack, mailbox) -> None:
    # int() takes any Unicode digit: Arabic-Indic one was message 1, superscript two crashed the session.
    one, two, nine = "\u0661", "\u00b2", "\uff19"  # ARABIC-INDIC ONE, SUPERSCRIPT TWO, FULLWIDTH NINE
    hostile = [f"RETR {two}", f"LIST 1{two}", f"UIDL 2{two}", f"RETR {one}", f"DELE {one}"]
    hostile += [f"TOP 1 {two}", f"TOP {one} 1", f"LIST {nine}"]
    lines = [f"USER {mailbox}", f"PASS {PASSWORD}", *hostile, "LIST 1", "STAT"]
    answers = exchange(stack.pop3_port, [line.encode() for line in lines])
    assert [a[:3] for a in answers] == [b"+OK"] * 2 + [b"-ER"] * len(hostile) + [b"+OK"] * 2
    assert all(b"ASCII digits" in answer for answer in answers[2 : 2 + len(hostile)])
    assert answers[-1] == b"+OK 2 %d\r\n" % (len(MESSAGE) + len(BARE_LF) + 4)  # DELE deleted nothing


def tls_client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize("filler", [0, 65536 - len(b"STLS\r\n")], ids=["one-packet", "64KiB-boundary"])
def test_commands_pipelined_after_stls_are_discarded(stack, filler: int) -> None:
    # A man in the middle appends CAPA to the client's STLS; the server must not answer it inside
    # TLS as if the client had sent it there (RFC 2595 3.1, CVE-2011-0411). With `filler`, lines of
    # junk put STLS at the end of the first 64 KiB, so the injected line arrives in a later read.
    junk = b"".join(b"X" * 998 + b"\r\n" for _ in range(filler // 1000))
    junk += b"Y" * (filler - len(junk) - 2) + b"\r\n" if filler else b""
    with socket.create_connection(("127.0.0.1", stack.pop3_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(junk + b"STLS\r\nCAPA\r\n")
        while not (line := reader.readline()).startswith(b"+OK begin TLS"):
            assert line.startswith(b"-ERR"), line
        with tls_client_context().wrap_socket(sock) as tls:
            tls.sendall(b"QUIT\r\n")
            assert tls.makefile("rb").readline().endswith(b" mailpipe POP3 signing off\r\n")


def test_a_line_without_end_is_cut_off_before_login(stack) -> None:
    # What a client may make the server hold is bounded by the line limit (2,048 octets), not 64 KiB.
    with socket.create_connection(("127.0.0.1", stack.pop3_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"USER " + b"x" * 3000)
        assert reader.readline() == b"-ERR line too long\r\n"
        assert reader.readline() == b""  # and the session is over
