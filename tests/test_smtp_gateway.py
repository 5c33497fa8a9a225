"""The SMTP gateway on a real socket, spoken to with smtplib, backed by the moto stack."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import time

import pytest
from conftest import DOMAIN, wait_for_inbox

from mailpipe_gateway.connection_limits import ConnectionLimiter

MESSAGE = b"From: alice@remote.test\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n"


def connect(stack) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30)
    client.ehlo("client.remote.test")
    return client


def raw_session(stack, lines: list[bytes]) -> list[bytes]:
    """Send raw command lines one by one; returns each reply (first line of it)."""
    with socket.create_connection(("127.0.0.1", stack.smtp_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        replies = [reader.readline()]
        for line in lines:
            sock.sendall(line)
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            replies.append(reply)
        return replies


def test_the_seed_conversation(stack, new_user) -> None:
    bob = new_user()
    client = smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30)
    code, _ = client.ehlo("client.remote.test")
    assert code == 250
    assert client.mail("alice@remote.test") == (250, b"2.1.0 OK")
    assert client.rcpt(bob) == (250, b"2.1.5 OK")
    code, text = client.rcpt(f"nobody@{DOMAIN}")
    assert code == 550 and text.startswith(b"5.1.1 ")
    code, text = client.data(MESSAGE)
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    client.quit()
    [stored] = wait_for_inbox(stack, bob, 1)
    body = stack.mail_store().read_body(stored)
    assert body.endswith(MESSAGE)
    assert body.startswith(b"Received: from client.remote.test ([127.0.0.1])\r\n\tby mail.example.test")
    assert stored.summary["envelope"]["subject"] == "hello"


def test_ehlo_advertises_the_extensions(stack) -> None:
    client = connect(stack)
    for keyword in ("size", "8bitmime", "smtputf8", "starttls", "enhancedstatuscodes", "pipelining"):
        assert client.has_extn(keyword), keyword
    assert int(client.esmtp_features["size"]) == 40 * 1024 * 1024
    client.quit()


def test_starttls_then_delivery(stack, new_user) -> None:
    bob = new_user()
    client = connect(stack)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client.starttls(context=context)
    client.ehlo("client.remote.test")
    assert not client.has_extn("auth"), "port 25 offers no AUTH, not even after STARTTLS"
    assert client.docmd("AUTH", "PLAIN AGJvYgBwdw==")[0] == 502
    client.sendmail("alice@remote.test", [bob], MESSAGE)
    client.quit()
    [stored] = wait_for_inbox(stack, bob, 1)
    assert b"with ESMTPS id" in stack.mail_store().read_body(stored)


def test_subaddress_and_case_reach_the_user(stack, new_user) -> None:
    bob = new_user()
    local, domain = bob.split("@")
    client = connect(stack)
    refused = client.sendmail("", [f"{local.upper()}+lists@{domain.upper()}"], MESSAGE)
    assert refused == {}
    client.quit()
    assert len(wait_for_inbox(stack, bob, 1)) == 1


def test_relay_is_denied(stack) -> None:
    client = connect(stack)
    client.mail("alice@remote.test")
    code, text = client.rcpt("victim@elsewhere.test")
    assert (code, text[:6]) == (554, b"5.7.1 ")
    client.quit()


def test_postmaster_is_always_accepted(stack) -> None:
    client = connect(stack)
    client.mail("alice@remote.test")
    assert client.rcpt(f"postmaster@{DOMAIN}")[0] == 250
    assert client.rcpt("Postmaster@other.test")[0] == 250
    client.quit()


def test_disabled_user_is_refused(stack, new_user) -> None:
    carol = new_user()
    stack.directory().set_disabled(carol, True)
    client = connect(stack)
    client.mail("alice@remote.test")
    code, text = client.rcpt(carol)
    assert (code, text[:6]) == (550, b"5.2.1 ")
    client.quit()


def test_oversize_is_refused_at_mail_from(stack) -> None:
    client = connect(stack)
    code, text = client.mail("alice@remote.test", [f"SIZE={50 * 1024 * 1024}"])
    assert (code, text[:6]) == (552, b"5.3.4 ")
    client.quit()


def test_mail_loop_is_refused(stack, new_user) -> None:
    bob = new_user()
    looped = b"".join(b"Received: from hop%d by hop%d\r\n" % (i, i) for i in range(101)) + MESSAGE
    client = connect(stack)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@remote.test", [bob], looped)
    assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.4.6")
    client.quit()


def test_too_many_recipients(stack, new_user) -> None:
    bob = new_user()
    client = connect(stack)
    client.mail("alice@remote.test")
    for _ in range(100):
        assert client.rcpt(bob)[0] == 250
    code, text = client.rcpt(bob)
    assert (code, text[:6]) == (452, b"4.5.3 ")
    client.quit()


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"FROB\r\n", b"500 5.5.2"),
        (b"MAIL FROM alice\r\n", b"501 5.5.4"),
        (b"RCPT TO:<bob@example.test>\r\n", b"503 5.5.1"),
        (b"DATA\r\n", b"503 5.5.1"),
        (b"MAIL FROM:<" + b"a" * 600 + b"@x.test>\r\n", b"500 5.5.2"),
        (b"MAIL FROM:<\xff@x.test>\r\n", b"553 5.1.7"),
        (b"MAIL FROM:<a@x.test> BODY=FOO\r\n", b"501 5.5.4"),
        (b"\x00\x01\r\n", b"500 5.5.2"),
        (b"AUTH PLAIN AGJvYgBwdw==\r\n", b"502 5.5.1"),
    ],
)
def test_malformed_commands_get_the_right_5xx(stack, line: bytes, code: bytes) -> None:
    replies = raw_session(stack, [b"EHLO client.test\r\n", line, b"NOOP\r\n", b"QUIT\r\n"])
    assert replies[0].startswith(b"220 ")
    assert replies[2].startswith(code), replies[2]
    assert replies[3].startswith(b"250 2.0.0"), "the session survives a bad command"
    assert replies[4].startswith(b"221 2.0.0")


@pytest.mark.parametrize(
    ("address", "code"),
    [
        (b"<nobody>", b"553 5.1.3"),
        (b"<@example.test>", b"501 5.5.4"),  # the parser cannot read it: a syntax error
        (b"<a@b@>", b"501 5.5.4"),
        (b"<bob@example.test", b"501 5.5.4"),
        (b"<>", b"553 5.1.3"),
        (b"<\xff\xfe@example.test>", b"553 5.1.3"),
    ],
)
def test_malformed_recipient_addresses(stack, address: bytes, code: bytes) -> None:
    commands = [b"EHLO client.test\r\n", b"MAIL FROM:<a@remote.test>\r\n", b"RCPT TO:" + address + b"\r\n"]
    replies = raw_session(stack, commands)
    assert replies[3].startswith(code), replies[3]


def test_pipelined_commands(stack, new_user) -> None:
    bob = new_user()
    with socket.create_connection(("127.0.0.1", stack.smtp_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO pipe.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        sock.sendall(
            f"MAIL FROM:<a@remote.test>\r\nRCPT TO:<{bob}>\r\nRCPT TO:<no-such@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        replies = [reader.readline() for _ in range(4)]
        assert [r[:3] for r in replies] == [b"250", b"250", b"550", b"354"]
        sock.sendall(MESSAGE + b".\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0")
        assert reader.readline().startswith(b"221")
    assert len(wait_for_inbox(stack, bob, 1)) == 1


def test_a_message_whose_summary_overflows_an_item_is_still_stored(stack, new_user) -> None:
    bob = new_user()
    to = ",\r\n ".join(f"r{n:06d}-{n * 7919 % 100003:05x}@x{n % 997}.test" for n in range(100_000))
    message = f"To: {to}\r\nSubject: big header\r\n\r\nbody\r\n".encode()
    client = connect(stack)
    client.sendmail("alice@remote.test", [bob], message)
    client.quit()
    # Summarising a 100,000-address header is the inbound function's costliest work in the suite:
    # on two loaded cores (a second pytest process beside it) it has taken over a minute.
    [stored] = wait_for_inbox(stack, bob, 1, timeout=240)
    assert stored.summary == {"size": stored.size, "too_large": True}
    assert stack.mail_store().read_body(stored).endswith(message)


def test_oversize_data_is_refused_and_the_session_goes_on(stack, new_user) -> None:
    bob = new_user()
    gateway = stack.build_gateway(stack.spool(), max_message_size=10_000)
    stack.loop.run(gateway.start())
    try:
        client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
        client.ehlo("client.test")
        assert client.esmtp_features["size"] == "10000"
        client.mail("alice@remote.test")
        client.rcpt(bob)
        code, text = client.data(MESSAGE + b"x" * 20_000 + b"\r\n")
        assert (code, text[:6]) == (552, b"5.3.4 ")
        client.sendmail("alice@remote.test", [bob], MESSAGE)
        client.quit()
    finally:
        stack.loop.run(gateway.stop())
    [stored] = wait_for_inbox(stack, bob, 1)
    assert stack.mail_store().read_body(stored).endswith(MESSAGE)


def test_smtputf8_addresses(stack) -> None:
    user = "jösé@example.test"
    stack.directory().add_user(user, "pw")
    message = "From: ana@remote.test\r\nTo: jösé@example.test\r\nSubject: olá\r\n\r\nçà\r\n".encode()
    client = connect(stack)
    client.sendmail("ana@remote.test", ["JÖSÉ@example.test"], message, mail_options=["SMTPUTF8"])
    client.quit()
    [stored] = wait_for_inbox(stack, user, 1)
    body = stack.mail_store().read_body(stored)
    assert body.endswith(message)
    assert b"with UTF8SMTP id" in body


def test_connection_limits(stack) -> None:
    gateway = stack.build_gateway(stack.spool(), max_connections=3)
    stack.loop.run(gateway.start())
    try:
        held = [connect_raw(gateway.port) for _ in range(3)]
        assert all(greeting.startswith(b"220 ") for _, greeting in held)
        _, refused = connect_raw(gateway.port)
        assert refused.startswith(b"421 4.7.0")
        held[0][0].close()
        deadline = time.monotonic() + 10
        while gateway.limiter.open_sessions >= 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        sock, greeting = connect_raw(gateway.port)
        assert greeting.startswith(b"220 ")
        for s in [sock] + [s for s, _ in held[1:]]:
            s.close()
    finally:
        stack.loop.run(gateway.stop())


def test_per_address_limit_spares_loopback_only() -> None:
    limiter = ConnectionLimiter(max_total=100, max_per_ip=2)
    assert limiter.acquire("192.0.2.1") and limiter.acquire("192.0.2.1")
    assert not limiter.acquire("192.0.2.1")
    assert limiter.acquire("192.0.2.2")
    assert all(limiter.acquire("127.0.0.1") for _ in range(10))
    limiter.release("192.0.2.1")
    assert limiter.acquire("192.0.2.1")


def connect_raw(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, sock.makefile("rb").readline()


def test_stop_lets_a_transaction_finish_then_closes_idle_sessions(stack, new_user) -> None:
    bob = new_user()
    gateway = stack.build_gateway(stack.spool())
    stack.loop.run(gateway.start())
    busy = smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
    busy.ehlo("busy.test")
    busy.mail("alice@remote.test")
    busy.rcpt(bob)
    stopping = asyncio.run_coroutine_threadsafe(gateway.stop(grace=3), stack.loop.loop)
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gateway.port), timeout=2)
    assert busy.data(MESSAGE)[0] == 250, "a transaction in flight completes during the grace period"
    stopping.result(timeout=10)
    code, text = busy.noop()  # the 421 the server sent on closing is what the client reads next
    assert (code, text[:6]) == (421, b"4.3.2 ")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        busy.noop()
    assert len(wait_for_inbox(stack, bob, 1)) == 1
