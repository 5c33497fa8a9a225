"""The DNS resolver every lookup of mailpipe's goes through: MX, SPF, DKIM, DMARC, MTA-STS, blocklists.

One place decides which server answers (`MAILPIPE_DNS_SERVER`, "host:port", so that tests and the
dev stack can point every lookup at a server on loopback; otherwise the system's resolver), how
long a lookup may take, and how answers are cached. A lookup that runs out of time raises
dns.exception.Timeout: callers turn it into a temporary result, never a hung session.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dns.asyncresolver
import dns.resolver

from mailpipe.config import ENV_DNS_SERVER

# A whole lookup (every server and retry) gives up after this long: SMTP sessions wait on it.
LOOKUP_LIFETIME = 5.0
# Answers kept per process (dnspython honours each record's TTL; this bounds the count).
CACHED_ANSWERS = 10_000

_cache = dns.resolver.LRUCache(CACHED_ANSWERS)


def _configure(resolver: dns.resolver.BaseResolver, server: str | None) -> None:
    if server:
        host, _, port = server.rpartition(":")
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
    resolver.lifetime = LOOKUP_LIFETIME
    resolver.timeout = LOOKUP_LIFETIME / 2
    resolver.cache = _cache


def _server(env: Mapping[str, str] | None) -> str | None:
    return (os.environ if env is None else env).get(ENV_DNS_SERVER) or None


def resolver(env: Mapping[str, str] | None = None) -> dns.resolver.Resolver:
    """A blocking resolver (for code that already runs off the event loop, like outbound delivery)."""
    server = _server(env)
    made = dns.resolver.Resolver(configure=server is None)
    _configure(made, server)
    return made


def async_resolver(env: Mapping[str, str] | None = None) -> dns.asyncresolver.Resolver:
    """An asyncio resolver (for lookups made inside an SMTP session), sharing the same cache."""
    server = _server(env)
    made = dns.asyncresolver.Resolver(configure=server is None)
    _configure(made, server)
    return made
