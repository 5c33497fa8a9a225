"""Connection caps on the access gateway's IMAP and POP3 listeners, as the SMTP gateway has them."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest
from conftest import wait_for

from mailpipe_gateway.access import AccessSettings, access_servers
from mailpipe_gateway.connection_limits import ConnectionLimiter
from mailpipe_gateway.listeners import executor_runner
from mailpipe_gateway.tls import server_context, write_self_signed

GREETING = {"pop3": b"+OK ", "imap": b"* OK "}
REFUSAL = {
    "pop3": b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
    "imap": b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
}


@pytest.fixture(autouse=True)
def _warnings(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mailpipe_gateway.listeners")


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock, sock.makefile("rb").readline()


def refused(port: int, protocol: str) -> bool:
    sock, first = connect(port)
    with sock:
        return first == REFUSAL[protocol] and sock.recv(1) == b""  # and then closed


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_per_address_cap_when_loopback_is_not_exempt(stack, protocol, caplog) -> None:
    limiter = ConnectionLimiter(max_total=100, max_per_ip=2, exempt=())
    server = getattr(stack, f"build_{protocol}")(limiter=limiter)
    stack.loop.run(server.start())
    try:
        held = [connect(server.port) for _ in range(2)]
        assert all(greeting.startswith(GREETING[protocol]) for _, greeting in held)
        assert refused(server.port, protocol)
        assert "refused connection from 127.0.0.1: too many connections" in caplog.text
        held.pop()[0].close()
        wait_for(lambda: limiter.open_sessions < 2)  # the slot comes back when the session ends
        sock, greeting = connect(server.port)
        assert greeting.startswith(GREETING[protocol])
        for s in [sock] + [s for s, _ in held]:
            s.close()
    finally:
        stack.loop.run(server.stop())


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_total_cap_counts_loopback_too(stack, protocol) -> None:
    limiter = ConnectionLimiter(max_total=3, max_per_ip=1)  # loopback exempt from the per-address cap
    server = getattr(stack, f"build_{protocol}")(limiter=limiter)
    stack.loop.run(server.start())
    try:
        held = [connect(server.port) for _ in range(3)]
        assert all(greeting.startswith(GREETING[protocol]) for _, greeting in held)
        assert refused(server.port, protocol)
        for s, _ in held:
            s.close()
    finally:
        stack.loop.run(server.stop())


def test_caps_come_from_the_environment_per_protocol_over_both_ports(stack, tmp_path) -> None:
    settings = AccessSettings.from_env(
        {
            "MAILPIPE_ACCESS_HOST": "127.0.0.1",
            **{f"MAILPIPE_{name}_PORT": "0" for name in ("IMAP", "IMAPS", "POP3", "POP3S")},
            "MAILPIPE_MAX_CONNECTIONS": "10",
            "MAILPIPE_MAX_CONNECTIONS_PER_IP": "1",
            "MAILPIPE_LIMIT_EXEMPT": "",
        }
    )
    assert (settings.max_connections, settings.max_connections_per_ip) == (10, 1)
    assert settings.limit_exempt == ()
    assert AccessSettings.from_env({}).limit_exempt == ("127.0.0.0/8", "::1/128")
    tls = server_context(*write_self_signed(tmp_path, "mail.example.test"))
    servers = access_servers(settings, stack.access_parts(), tls, executor_runner(stack.executor))
    for server in servers:
        stack.loop.run(server.start())
    try:
        held = []
        for server, protocol in zip(servers, ["imap", "pop3"], strict=True):
            held.append(connect(server.ports[0]))
            assert held[-1][1].startswith(GREETING[protocol])
            assert refused(server.ports[0], protocol)  # the plain port, over the per-address cap
            tls_port = server.ports[1]  # the implicit-TLS port shares the cap
            client = tls_client().wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=30))
            with client:
                assert client.makefile("rb").readline() == REFUSAL[protocol]
        for s, _ in held:
            s.close()
    finally:
        for server in servers:
            stack.loop.run(server.stop())
