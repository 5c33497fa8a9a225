"""The one resolver every lookup goes through: MAILPIPE_DNS_SERVER or the system's, bounded in time."""

from __future__ import annotations

import asyncio
import socket

import dns.exception
import pytest
from dns_zone import serving

from mailpipe import dns_resolver

ZONE = """
example.test.  60 IN MX 10 mx.example.test.
example.test.  60 IN TXT "v=spf1 -all"
"""


def test_lookups_go_to_the_configured_server() -> None:
    with serving(ZONE) as (port, zone):
        env = {"MAILPIPE_DNS_SERVER": f"127.0.0.1:{port}"}
        answer = dns_resolver.resolver(env).resolve("example.test", "MX")
        assert [str(r.exchange) for r in answer] == ["mx.example.test."]
        txt = asyncio.run(dns_resolver.async_resolver(env).resolve("example.test", "TXT"))
        assert [r.strings for r in txt] == [(b"v=spf1 -all",)]
        assert ("example.test.", "MX") in zone.queries and ("example.test.", "TXT") in zone.queries


def test_without_a_server_the_system_resolver_is_used() -> None:
    # Outbound delivery once got no resolver at all unless MAILPIPE_DNS_SERVER was set, so the
    # mx transport could never look anything up on AWS.
    resolver = dns_resolver.resolver({})
    assert resolver.nameservers, "the system's resolver configuration"
    assert resolver.lifetime == dns_resolver.LOOKUP_LIFETIME


def test_a_silent_server_gives_a_timeout_within_the_lifetime() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # reads nothing, answers nothing
        silent.bind(("127.0.0.1", 0))
        env = {"MAILPIPE_DNS_SERVER": f"127.0.0.1:{silent.getsockname()[1]}"}
        resolver = dns_resolver.resolver(env)
        resolver.lifetime = 0.5
        with pytest.raises(dns.exception.Timeout):
            resolver.resolve("slow.example.test", "TXT")
