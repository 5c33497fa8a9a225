"""DKIM verification for the tests: dkimpy, its key lookups answered by the loopback DNS server."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dkim
import dns.exception
import dns.resolver

from mailpipe import dns_resolver
from mailpipe.dkim_signing.keys import DkimKey


def zone_of(keys: Iterable[DkimKey]) -> str:
    """The keys' TXT records as zone text for tests/dns_zone.serving."""
    return "\n".join(key.zone_line() for key in keys) + "\n"


def txt_lookup(port: int) -> Callable[..., bytes | None]:
    """A dkimpy `dnsfunc` asking the DNS server on 127.0.0.1:`port` (never real DNS)."""
    resolver = dns_resolver.resolver({"MAILPIPE_DNS_SERVER": f"127.0.0.1:{port}"})
    resolver.cache = None  # each test's zone is its own; no answers from an earlier one

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii"), "TXT")
        except dns.exception.DNSException:
            return None
        return b"".join(b"".join(rr.strings) for rr in answer)

    return lookup


def verified_signatures(message: bytes, port: int) -> list[tuple[bytes, bytes, bool]]:
    """(d=, s=, verifies) for each DKIM-Signature of `message`, top first."""
    signer = dkim.DKIM(message)
    results = []
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    for index in range(count):
        checker = dkim.DKIM(message)
        ok = checker.verify(idx=index, dnsfunc=txt_lookup(port))
        results.append((checker.domain, checker.selector, bool(ok)))
    return results
