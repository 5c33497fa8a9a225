"""DNS blocklists on port 25: a loopback DNS server (tests/dns_zone.py) holds the lists; clients
connect from 127.0.0.x addresses, with only 127.0.0.1 trusted."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest
from conftest import PASSWORD, wait_for_inbox
from dns_zone import serving

from mailpipe.config import ENV_DNS_SERVER
from mailpipe_gateway.smtp.dnsbl import reversed_name, zones_from_env
from mailpipe_gateway.smtp.settings import GatewaySettings

LISTED, CLEAN = "127.0.0.2", "127.0.0.3"

ZONE = """
2.0.0.127.bl.test.        60 IN A   127.0.0.2
2.0.0.127.bl.test.        60 IN TXT "listed for testing"
1.0.0.127.bl.test.        60 IN A   127.0.0.2
2.0.0.127.second.test.    60 IN A   127.0.0.4
2.0.0.127.refusing.test.  60 IN A   127.255.255.254
2.0.0.127.rewriting.test. 60 IN A   192.0.2.80
"""
MESSAGE = b"From: alice@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def dns() -> Iterator[tuple[int, object]]:
    with serving(ZONE) as server:
        yield server


@pytest.fixture
def gateway_with(stack, dns, monkeypatch):
    """Builds a port-25 gateway asking `zones`, trusting 127.0.0.1 only, resolving on loopback."""
    port, _ = dns
    monkeypatch.setenv(ENV_DNS_SERVER, f"127.0.0.1:{port}")
    started = []

    def build(*zones: str, resolver: str | None = None, submission: bool = False):
        if resolver:
            monkeypatch.setenv(ENV_DNS_SERVER, resolver)
        make = stack.build_submission if submission else stack.build_gateway
        gateway = make(stack.spool(), dnsbl_zones=zones, dnsbl_exempt=("127.0.0.1/32",))
        stack.loop.run(gateway.start())
        started.append(gateway)
        return gateway

    yield build
    for gateway in started:
        stack.loop.run(gateway.stop())


def session(port: int, source: str) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
    client.ehlo("client.remote.test")
    return client


def rcpt_reply(port: int, source: str, rcpt: str) -> tuple[int, bytes]:
    client = session(port, source)
    try:
        assert client.mail("alice@remote.test")[0] == 250
        return client.rcpt(rcpt)
    finally:
        client.quit()


def queried(dns, zone: str) -> list[str]:
    return [name for name, _ in dns[1].queries if name.endswith(f".{zone}.")]


def test_a_listed_client_is_refused_at_rcpt_naming_the_list(gateway_with, dns, new_user, caplog) -> None:
    gateway = gateway_with("bl.test")
    with caplog.at_level("WARNING", logger="mailpipe_gateway.smtp.dnsbl"):
        client = session(gateway.port, LISTED)
        assert client.mail("alice@remote.test")[0] == 250
        for _ in range(3):
            code, text = client.rcpt(new_user())
            assert code == 554
            assert text == b"5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test"
        client.quit()
    assert queried(dns, "bl.test").count("2.0.0.127.bl.test.") == 1, "one lookup per session"
    assert any("127.0.0.2 is listed in bl.test" in r.getMessage() for r in caplog.records)


def test_an_unlisted_client_delivers(stack, gateway_with, new_user) -> None:
    bob = new_user()
    gateway = gateway_with("bl.test")
    client = session(gateway.port, CLEAN)
    client.sendmail("alice@remote.test", [bob], MESSAGE)
    client.quit()
    [stored] = wait_for_inbox(stack, bob, 1)
    assert stack.mail_store().read_body(stored).endswith(MESSAGE)


def test_trusted_networks_are_never_looked_up(gateway_with, dns, new_user) -> None:
    gateway = gateway_with("bl.test")
    before = len(queried(dns, "bl.test"))
    assert rcpt_reply(gateway.port, "127.0.0.1", new_user())[0] == 250, "127.0.0.1 is listed, but trusted"
    assert len(queried(dns, "bl.test")) == before


def test_every_zone_is_asked_and_the_listing_one_named(gateway_with, new_user) -> None:
    gateway = gateway_with("nothing.test", "second.test")
    code, text = rcpt_reply(gateway.port, LISTED, new_user())
    assert (code, text) == (554, b"5.7.1 Service unavailable; client [127.0.0.2] blocked using second.test")


@pytest.mark.parametrize(
    ("zone", "logged"),
    [
        ("refusing.test", "refused our query"),  # Spamhaus' 127.255.255.254: a public resolver
        ("rewriting.test", "not a listing"),  # a resolver answering NXDOMAIN with an address
        ("lists.servfail.test", "lookup failed (NoNameservers)"),
    ],
)
def test_answers_that_are_not_listings(gateway_with, new_user, caplog, zone: str, logged: str) -> None:
    gateway = gateway_with(zone)
    with caplog.at_level("WARNING", logger="mailpipe_gateway.smtp.dnsbl"):
        assert rcpt_reply(gateway.port, LISTED, new_user())[0] == 250
    assert any(logged in r.getMessage() and zone in r.getMessage() for r in caplog.records)


def test_a_resolver_that_never_answers_means_not_listed(gateway_with, new_user, caplog) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        gateway = gateway_with("silent.test", resolver=f"127.0.0.1:{silent.getsockname()[1]}")
        with caplog.at_level("WARNING", logger="mailpipe_gateway.smtp.dnsbl"):
            assert rcpt_reply(gateway.port, LISTED, new_user())[0] == 250
    assert any("lookup failed" in r.getMessage() and "silent.test" in r.getMessage() for r in caplog.records)


def test_submission_is_never_checked(gateway_with, dns, new_user) -> None:
    alice = new_user()
    gateway = gateway_with("bl.test", submission=True)
    client = session(gateway.port, LISTED)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client.starttls(context=context)
    client.ehlo("client.remote.test")
    client.login(alice, PASSWORD)
    assert client.mail(alice)[0] == 250
    assert client.rcpt("friend@elsewhere.test")[0] == 250
    client.quit()


def test_reversed_names() -> None:
    assert reversed_name("192.0.2.1") == "1.2.0.192"
    assert reversed_name("::ffff:192.0.2.1") == "1.2.0.192"
    assert reversed_name("2001:db8::1") == ".".join("1" + "0" * 23 + "8bd01002")
    assert reversed_name("unknown") is None


def test_settings_from_the_environment() -> None:
    assert GatewaySettings.from_env({}).dnsbl_zones == ()
    assert zones_from_env(" zen.spamhaus.org., ,bl.example.") == ("zen.spamhaus.org", "bl.example")
    settings = GatewaySettings.from_env(
        {"MAILPIPE_DNSBL_ZONES": "zen.spamhaus.org", "MAILPIPE_DNSBL_EXEMPT": "10.0.0.0/8"}
    )
    assert (settings.dnsbl_zones, settings.dnsbl_exempt) == (("zen.spamhaus.org",), ("10.0.0.0/8",))
    assert GatewaySettings.from_env({}).dnsbl_exempt == ("127.0.0.0/8", "::1/128")
