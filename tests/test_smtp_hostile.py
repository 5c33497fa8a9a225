"""What a hostile client tries on the SMTP gateway: endless lines, parser breakers, harvesting, idling."""

from __future__ import annotations

import logging
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DOMAIN, wait_for, wait_for_inbox

from mailpipe_gateway.smtp.harvest import RejectionLimiter
from mailpipe_gateway.smtp.settings import GatewaySettings


class Errors(logging.Handler):
    """Error records of the gateway's loggers: a hostile client must never cause one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@pytest.fixture
def logged_errors() -> Iterator[list[str]]:
    errors = Errors()
    logging.getLogger("mailpipe_gateway").addHandler(errors)
    try:
        yield errors.records
    finally:
        logging.getLogger("mailpipe_gateway").removeHandler(errors)


@pytest.fixture
def gateway(stack):
    """A gateway of the test's own, counting loopback clients per address like any other."""
    gateways = []

    def build(**settings):
        built = stack.build_gateway(stack.spool(), limit_exempt=(), **settings)
        stack.loop.run(built.start())
        gateways.append(built)
        return built

    yield build
    for built in gateways:
        stack.loop.run(built.stop())


class Session:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.reader = self.sock.makefile("rb")
        self.greeting = self.reader.readline()

    def reply(self) -> bytes:
        """The last line of the next reply ("" once the server has closed)."""
        line = self.reader.readline()
        while line[3:4] == b"-":
            line = self.reader.readline()
        return line

    def send(self, line: bytes) -> bytes:
        self.sock.sendall(line)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident size


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_data_without_line_ends_is_dropped_not_kept(stack, new_user, logged_errors) -> None:
    # The gateway runs in this process (the stack's background loop): its peak RSS is ours.
    bob = new_user()
    session = Session(stack.smtp_port)
    assert session.send(b"EHLO hostile.test\r\n").startswith(b"250 ")
    assert session.send(b"MAIL FROM:<a@remote.test>\r\n").startswith(b"250 ")
    assert session.send(f"RCPT TO:<{bob}>\r\n".encode()).startswith(b"250 ")
    assert session.send(b"DATA\r\n").startswith(b"354 ")
    chunk = b"x" * (1024 * 1024)
    before = rss()
    peak_rss_reset()
    for _ in range(60):
        session.sock.sendall(chunk)
    reply = session.send(b"\r\n.\r\n")
    grown = peak_rss() - before
    assert reply.startswith(b"500 5.5.2 "), reply
    assert grown < 25 * 1024 * 1024, f"60 MB without CRLF grew the gateway by {grown / 2**20:.0f} MB"
    assert session.send(b"NOOP\r\n").startswith(b"250 2.0.0"), "the session goes on"
    session.close()
    assert logged_errors == []


def test_long_lines_within_the_limits_are_still_taken(stack, new_user) -> None:
    # 200 KiB lines arrive in pieces (the reader buffers 64 KiB) and are joined again.
    bob = new_user()
    long_line = b"y" * 200_000
    message = b"Subject: long\r\n\r\n" + long_line + b"\r\n.dot\r\n"  # smtplib stuffs the dot
    client = smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30)
    client.ehlo("client.test")
    client.mail("alice@remote.test")
    client.rcpt(bob)
    code, _ = client.data(message)
    assert code == 250
    client.quit()
    [stored] = wait_for_inbox(stack, bob, 1)
    assert stack.mail_store().read_body(stored).endswith(b"\r\n\r\n" + long_line + b"\r\n.dot\r\n")


def test_message_data_in_memory_is_bounded_across_sessions(stack, gateway, new_user) -> None:
    bob = new_user()
    server = gateway(data_memory=3 * 1024 * 1024)
    lines = b"".join(b"%07d " % n + b"m" * 1000 + b"\r\n" for n in range(2000))  # 2 MB
    first, second = Session(server.port), Session(server.port)
    for session in (first, second):
        session.send(b"EHLO client.test\r\n")
        session.send(b"MAIL FROM:<a@remote.test>\r\n")
        session.send(f"RCPT TO:<{bob}>\r\n".encode())
        assert session.send(b"DATA\r\n").startswith(b"354 ")
    first.sock.sendall(b"Subject: first\r\n\r\n" + lines)
    wait_for(lambda: server.data_budget.used > len(lines))
    second.sock.sendall(b"Subject: second\r\n\r\n" + lines)
    assert second.send(b".\r\n").startswith(b"452 4.3.1 "), "no room left: try again later"
    assert first.send(b".\r\n").startswith(b"250 2.0.0 ")
    assert second.send(b"RSET\r\n").startswith(b"250 ")
    assert server.data_budget.used == 0
    for session in (first, second):
        session.close()
    [stored] = wait_for_inbox(stack, bob, 1)
    assert stored.summary["envelope"]["subject"] == "first"


def test_an_endless_command_line_is_refused_and_the_session_goes_on(stack, logged_errors) -> None:
    session = Session(stack.smtp_port)
    for _ in range(8):
        session.sock.sendall(b"N" * (1024 * 1024))
    assert session.send(b"\r\n").startswith(b"500 5.5.2 ")
    assert session.send(b"NOOP\r\n").startswith(b"250 2.0.0")
    session.close()
    assert logged_errors == []


@pytest.mark.parametrize(
    "line",
    [
        b'MAIL FROM:"\r\n',
        b"MAIL FROM:<\r\n",
        b"MAIL FROM:a@\r\n",
        b"MAIL FROM:<a@[>\r\n",
        b"MAIL FROM:<a\x00b@remote.test>\r\n",
        b"MAIL FROM:<a\x1bb@remote.test>\r\n",
        b"MAIL FROM:<a\x7fb@remote.test>\r\n",
        b"MAIL FROM:<a@remote.test> SIZE=\xc2\xb2\r\n",
        b"MAIL FROM:<a@remote.test> SIZE=\xd9\xa1\r\n",
        b"VRFY <\r\n",
        b"VRFY a@\r\n",
        b'VRFY "\r\n',
        b"VRFY <a\x00b@example.test>\r\n",
        b"VRFY \xff\xfe\x80 \xc3\r\n",
    ],
)
def test_parser_breakers_are_syntax_errors(stack, logged_errors, line: bytes) -> None:
    session = Session(stack.smtp_port)
    assert session.send(b"EHLO client.test\r\n").startswith(b"250 ")
    assert session.send(line).startswith(b"501 5.5.4 "), line
    assert session.send(b"NOOP\r\n").startswith(b"250 2.0.0")
    session.close()
    assert logged_errors == []


def test_control_characters_in_recipients_are_refused(stack, new_user, logged_errors) -> None:
    bob = new_user()
    local, domain = bob.split("@")
    session = Session(stack.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"MAIL FROM:<a@remote.test>\r\n").startswith(b"250 ")
    assert session.send(f"RCPT TO:<{local}\x00@{domain}>\r\n".encode()).startswith(b"501 5.5.4 ")
    assert session.send(f"RCPT TO:<{local}\t@{domain}>\r\n".encode()).startswith(b"501 5.5.4 ")
    assert session.send(b"RCPT TO:<\r\n").startswith(b"501 5.5.4 ")
    assert session.send(f"RCPT TO:<{bob}>\r\n".encode()).startswith(b"250 ")
    session.close()
    assert logged_errors == []


def test_vrfy_never_echoes_what_it_cannot_read(stack) -> None:
    session = Session(stack.smtp_port)
    session.send(b"EHLO client.test\r\n")
    assert session.send(b"VRFY bob@example.test\r\n").startswith(b"252 2.5.0 ")
    reply = session.send(b"VRFY <x\r\n")
    assert reply.startswith(b"501 5.5.4 ") and b"<x" not in reply
    session.close()


def test_a_session_making_too_many_errors_is_closed(stack, logged_errors) -> None:
    session = Session(stack.smtp_port)
    session.send(b"EHLO harvester.test\r\n")
    session.send(b"MAIL FROM:<a@remote.test>\r\n")
    # Pipelined, as a harvester sends them: what follows the 20th error must not be looked up.
    session.sock.sendall(b"".join(b"RCPT TO:<guess-%d@%s>\r\n" % (n, DOMAIN.encode()) for n in range(30)))
    replies = [session.reply() for _ in range(21)]
    assert all(reply.startswith(b"550 5.1.1 ") for reply in replies[:20]), replies
    assert replies[20].startswith(b"421 4.7.0 "), replies[20]
    assert session.reply() == b"", "closed after the 421"
    session.close()
    assert logged_errors == []


def test_errors_are_forgiven_once_a_message_is_delivered(gateway, new_user) -> None:
    bob = new_user()
    server = gateway(max_errors=3)
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
    client.ehlo("client.test")
    for _ in range(2):
        client.mail("alice@remote.test")
        assert client.rcpt(f"nobody-{_}@{DOMAIN}")[0] == 550
        assert client.rcpt(f"nobody-else-{_}@{DOMAIN}")[0] == 550
        assert client.rcpt(bob)[0] == 250
        assert client.data(b"Subject: hi\r\n\r\nhi\r\n")[0] == 250
    client.mail("alice@remote.test")
    client.rcpt(f"x1@{DOMAIN}")
    client.rcpt(f"x2@{DOMAIN}")
    assert client.rcpt(f"x3@{DOMAIN}")[0] == 550
    assert client.noop()[0] == 421
    client.close()


def test_our_own_failures_do_not_count_as_the_clients_errors(gateway, new_user) -> None:
    bob = new_user()
    server = gateway(max_errors=2, data_memory=1024)  # every message is refused: no room
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
    client.ehlo("client.test")
    for _ in range(3):
        client.mail("alice@remote.test")
        client.rcpt(bob)
        code, text = client.data(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
        assert (code, text[:6]) == (452, b"4.3.1 ")
    assert client.noop()[0] == 250, "still open after three 452s from our side"
    client.quit()


def test_rejected_recipients_are_rate_limited_per_client_address(gateway, new_user) -> None:
    bob = new_user()
    server = gateway(max_rejected_recipients=5)
    for n in range(5):  # in several sessions: the count is per address, not per session
        client = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
        client.ehlo("harvester.test")
        client.mail("a@remote.test")
        assert client.rcpt(f"guess-{n}@{DOMAIN}")[0] == 550
        client.quit()
    client = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
    client.ehlo("harvester.test")
    client.mail("a@remote.test")
    code, text = client.rcpt(f"guess-6@{DOMAIN}")
    assert (code, text[:6]) == (450, b"4.7.1 ")
    # Not even a real user is looked up now (it would be accepted if it were).
    assert client.rcpt(bob)[0] == 450
    client.quit()


def test_loopback_is_exempt_from_the_rejection_limit_by_default(stack, new_user) -> None:
    server = stack.build_gateway(stack.spool(), max_rejected_recipients=2)
    stack.loop.run(server.start())
    try:
        client = smtplib.SMTP("127.0.0.1", server.port, timeout=30)
        client.ehlo("monitor.test")
        client.mail("a@remote.test")
        assert [client.rcpt(f"guess-{n}@{DOMAIN}")[0] for n in range(5)] == [550] * 5
        client.quit()
    finally:
        stack.loop.run(server.stop())


def test_rejection_limiter_window() -> None:
    now = [0.0]
    limiter = RejectionLimiter(max_rejected=3, window=60, exempt=["10.0.0.0/8"], clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("192.0.2.1")
        limiter.rejected("192.0.2.1")
        now[0] += 1
    assert limiter.blocked("192.0.2.1")
    assert not limiter.blocked("192.0.2.2")
    for _ in range(10):
        limiter.rejected("10.1.2.3")
    assert not limiter.blocked("10.1.2.3")
    now[0] += 60
    assert not limiter.blocked("192.0.2.1"), "the window has passed"


def test_idle_sessions_get_a_421_before_the_close(gateway) -> None:
    server = gateway(session_timeout=0.5)
    session = Session(server.port)
    assert session.greeting.startswith(b"220 ")
    reply = session.reply()  # nothing sent: the next line is the server's timeout notice
    assert reply.startswith(b"421 4.4.2 mail.example.test "), reply
    assert session.reply() == b""
    session.close()


def test_the_limits_are_set_from_the_environment() -> None:
    defaults = GatewaySettings.from_env({"MAILPIPE_HOSTNAME": "mx.test"})
    assert defaults.limit_exempt == ("127.0.0.0/8", "::1/128") and defaults.max_errors == 20
    settings = GatewaySettings.from_env(
        {
            "MAILPIPE_HOSTNAME": "mx.test",
            "MAILPIPE_LIMIT_EXEMPT": "10.0.0.0/8, 192.0.2.0/24",
            "MAILPIPE_SMTP_MAX_ERRORS": "5",
            "MAILPIPE_MAX_REJECTED_RECIPIENTS": "7",
            "MAILPIPE_REJECTED_RECIPIENTS_WINDOW": "60",
            "MAILPIPE_SMTP_DATA_MEMORY": "1000000",
        }
    )
    assert settings.limit_exempt == ("10.0.0.0/8", "192.0.2.0/24")
    assert (settings.max_errors, settings.max_rejected_recipients) == (5, 7)
    assert (settings.rejected_recipients_window, settings.data_memory) == (60.0, 1_000_000)
