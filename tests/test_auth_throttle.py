"""Failed logins are counted per user (as the directory spells it) and client address, once per process
for every protocol; `mailpipe user unlock` lifts a hold on running gateways."""

from __future__ import annotations

import base64
import logging
import os
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from typing import BinaryIO

import pytest
from conftest import PASSWORD
from test_gateway_command import free_port, wait_listening

from mailpipe.auth.throttle import AuthThrottle
from mailpipe_gateway.tls import write_self_signed

FAILED, THROTTLED, OK = "failed", "throttled", "ok"


def respellings(address: str) -> list[str]:
    """Texts the directory authenticates as `address` (all but the last), or throttles with it."""
    local, _, domain = address.partition("@")
    return [
        f"{address}.",
        f"<{address}>",
        f" {address}",
        f"{address}\t",
        f"{local.upper()}@{domain.title()}",
        f"{local}@{domain.upper()}..",
        f"{local}+x@{domain}",
    ]


def plain(login: str, password: str) -> bytes:
    return base64.b64encode(f"\0{login}\0{password}".encode())


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))


def tls(sock: socket.socket) -> tuple[socket.socket, BinaryIO]:
    """Upgraded after STARTTLS/STLS: plaintext logins are only allowed from 127.0.0.1 itself."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    wrapped = context.wrap_socket(sock)
    return wrapped, wrapped.makefile("rb")


def pop3(port: int, login: str, password: str, source: str = "127.0.0.1") -> str:
    with connect(port, source) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        if source != "127.0.0.1":
            sock.sendall(b"STLS\r\n")
            assert reader.readline().startswith(b"+OK")
            sock, reader = tls(sock)
        sock.sendall(b"AUTH PLAIN " + plain(login, password) + b"\r\nQUIT\r\n")
        answer = reader.readline()
    if answer.startswith(b"+OK"):
        return OK
    return THROTTLED if b"too many failed logins" in answer else FAILED


def imap(port: int, login: str, password: str, source: str = "127.0.0.1") -> str:
    with connect(port, source) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        if source != "127.0.0.1":
            sock.sendall(b"t STARTTLS\r\n")
            while not reader.readline().startswith(b"t OK"):
                pass
            sock, reader = tls(sock)
        sock.sendall(b"a AUTHENTICATE PLAIN " + plain(login, password) + b"\r\nz LOGOUT\r\n")
        while not (answer := reader.readline()).startswith(b"a "):
            assert answer, "connection closed"
    if answer.startswith(b"a OK"):
        return OK
    return THROTTLED if b"[UNAVAILABLE]" in answer else FAILED


def submission(port: int, login: str, password: str, source: str = "127.0.0.1") -> str:
    def ehlo() -> None:
        sock.sendall(b"EHLO client.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass

    with connect(port, source) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        ehlo()
        if source != "127.0.0.1":
            sock.sendall(b"STARTTLS\r\n")
            assert reader.readline().startswith(b"220")
            sock, reader = tls(sock)
            ehlo()
        sock.sendall(b"AUTH PLAIN " + plain(login, password) + b"\r\nQUIT\r\n")
        answer = reader.readline()
    return {b"235": OK, b"454": THROTTLED}.get(answer[:3], FAILED)


Attempt = Callable[..., str]
ELSEWHERE = "127.0.0.2"  # another client address: Linux answers all of 127/8 on loopback


@pytest.fixture
def servers(stack):
    """POP3, IMAP and submission sharing one fresh throttle, so this test's failures stay its own."""
    throttle = AuthThrottle()
    pop3_server = stack.build_pop3(throttle=throttle)
    imap_server = stack.build_imap(throttle=throttle)
    submission_server = stack.build_submission(stack.spool(), throttle=throttle)
    started = [pop3_server, imap_server, submission_server]
    for server in started:
        stack.loop.run(server.start())
    yield {pop3: pop3_server.port, imap: imap_server.port, submission: submission_server.port}
    for server in started:
        stack.loop.run(server.stop())


@pytest.mark.parametrize("attempt", [pop3, imap, submission], ids=["pop3", "imap", "submission"])
@pytest.mark.parametrize("known", [True, False], ids=["user", "unknown-user"])
def test_respelt_logins_share_the_users_failures(stack, new_user, servers, attempt: Attempt, known) -> None:
    user = new_user() if known else "nobody-here@example.test"
    port = servers[attempt]
    assert [attempt(port, user, "wrong") for _ in range(5)] == [FAILED] * 5
    # Each respelling used to get five guesses of its own; the right password is refused too.
    for login in respellings(user):
        assert attempt(port, login, PASSWORD) == THROTTLED, login
    assert attempt(port, user, PASSWORD) == THROTTLED


@pytest.mark.parametrize("attempt", [pop3, imap, submission], ids=["pop3", "imap", "submission"])
def test_an_attacker_elsewhere_does_not_lock_the_user_out(stack, new_user, servers, attempt: Attempt) -> None:
    user = new_user()
    port = servers[attempt]
    assert [attempt(port, user, "wrong", ELSEWHERE) for _ in range(5)] == [FAILED] * 5
    assert attempt(port, user, PASSWORD, ELSEWHERE) == THROTTLED
    assert attempt(port, user, PASSWORD) == OK  # the real user, from their own address


def test_an_address_trying_many_users_is_held_back(stack, new_user, servers) -> None:
    users = [new_user() for _ in range(5)]
    for user in users:
        assert [pop3(servers[pop3], user, "wrong", "127.0.0.3") for _ in range(4)] == [FAILED] * 4
    assert pop3(servers[pop3], new_user(), PASSWORD, "127.0.0.3") == THROTTLED
    assert pop3(servers[pop3], users[0], PASSWORD) == OK


@pytest.mark.parametrize("attempt", [pop3, imap, submission], ids=["pop3", "imap", "submission"])
def test_mailpipe_user_unlock_lifts_the_hold_on_running_gateways(
    stack, new_user, servers, attempt: Attempt, caplog
) -> None:
    from test_cli import mailpipe

    user = new_user()
    port = servers[attempt]
    assert [attempt(port, user, "wrong") for _ in range(5)] == [FAILED] * 5
    assert attempt(port, user, PASSWORD) == THROTTLED
    caplog.set_level(logging.WARNING, logger="mailpipe.auth.throttle")
    unlocked = mailpipe(stack, "user", "unlock", user)
    assert unlocked.returncode == 0, unlocked.stderr
    assert attempt(port, user, PASSWORD) == OK
    assert f"auth unlocked: user={user} forgotten=5" in caplog.messages
    # Failures after the unlock count afresh.
    assert [attempt(port, user, "wrong") for _ in range(5)] == [FAILED] * 5
    assert attempt(port, user, PASSWORD) == THROTTLED


def test_failures_count_across_protocols_in_the_stack(stack, new_user) -> None:
    # The stack's own listeners, wired as `mailpipe dev` runs them: one throttle for the process.
    user = new_user()
    ports = [(pop3, stack.pop3_port), (imap, stack.imap_port), (submission, stack.submission_port)]
    for attempt, port in ports[:2] * 2 + ports[2:]:
        assert attempt(port, user, "wrong") == FAILED
    assert [attempt(port, user, PASSWORD) for attempt, port in ports] == [THROTTLED] * 3


def test_failed_logins_are_logged_for_fail2ban(stack, new_user, servers, caplog) -> None:
    user = new_user()
    caplog.set_level(logging.WARNING, logger="mailpipe.auth.throttle")
    pop3(servers[pop3], f"<{user.upper()}>", "wrong")
    imap(servers[imap], "x\r\nauth failed: client=192.0.2.9 protocol=imap user=y", "wrong")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auth failed")]
    assert lines == [
        f"auth failed: client=127.0.0.1 protocol=pop3 user={user}",
        # The attacker's text stays on one line and after the client.
        "auth failed: client=127.0.0.1 protocol=imap user=x\\x0d\\x0aauth\\x20failed:\\x20client=192.0.2.9"
        "\\x20protocol=imap\\x20user=y",
    ]


def test_mailpipe_gateway_counts_failures_on_587_and_465_together(stack, new_user, tmp_path) -> None:
    user = new_user()
    cert, key = write_self_signed(tmp_path, "smtp.example.test")
    ports = {"SMTP": free_port(), "SUBMISSION": free_port(), "SUBMISSIONS": free_port()}
    env = {
        **os.environ,
        **stack.environment,
        "MAILPIPE_SMTP_HOST": "127.0.0.1",
        **{f"MAILPIPE_{name}_PORT": str(port) for name, port in ports.items()},
        "MAILPIPE_TLS_CERT_PEM": cert.read_text(),
        "MAILPIPE_TLS_KEY_PEM": key.read_text(),
    }
    env.pop("MAILPIPE_VALIDATE_FUNCTION", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailpipe_tools.cli", "gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def auth(port_name: str, password: str) -> int:
        if port_name == "SUBMISSIONS":
            client = smtplib.SMTP_SSL("127.0.0.1", ports[port_name], context=context, timeout=30)
        else:
            client = smtplib.SMTP("127.0.0.1", ports[port_name], timeout=30)
            client.starttls(context=context)
        with client:
            client.ehlo("client.test")
            return client.docmd("AUTH", "PLAIN " + plain(user, password).decode())[0]

    try:
        for port in ports.values():
            wait_listening(process, port)
        assert [auth(name, "wrong") for name in ["SUBMISSION", "SUBMISSIONS"] * 2 + ["SUBMISSION"]] == [
            535
        ] * 5
        assert auth("SUBMISSIONS", PASSWORD) == 454
    finally:
        process.terminate()
        process.wait(timeout=30)
