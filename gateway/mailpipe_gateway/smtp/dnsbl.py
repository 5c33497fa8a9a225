"""DNS blocklists (RFC 5782) for the public port: is the client's address listed in a zone?

The client's address, reversed (1.2.3.4 -> 4.3.2.1; IPv6 by nibbles), is looked up as an A record
under each zone, all zones at once, through mailpipe's resolver (mailpipe.dns_resolver: bounded in
time, cached). An answer in 127.0.0.0/8 means listed, except 127.255.255.0/24, which Spamhaus-style
lists use to say "query refused" (a public resolver, too many queries): that is logged and counts as
not listed, as does a timeout, SERVFAIL, or any answer outside 127/8 (a resolver that rewrites
NXDOMAIN into an address of its own must not block the world).

Where it bites: at RCPT, as Postfix's `reject_rbl_client` does with its default smtpd_delay_reject.
A client refused at the greeting often reconnects at once and its operator learns nothing; a
refusal per recipient reaches the sender's bounce with our text and the list's name, and our log
line names sender and recipient. The lookup is made once per session, at the first RCPT.

Trusted networks (MAILPIPE_DNSBL_EXEMPT; loopback by default, like Postfix's permit_mynetworks
before reject_rbl_client) are never looked up, and the submission listeners have no blocklists:
an authenticated user is not judged by the address they send from.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailpipe_gateway.connection_limits import is_exempt, networks

log = logging.getLogger(__name__)

ZONES_ENV = "MAILPIPE_DNSBL_ZONES"
EXEMPT_ENV = "MAILPIPE_DNSBL_EXEMPT"

LISTED = ipaddress.ip_network("127.0.0.0/8")
REFUSED = ipaddress.ip_network("127.255.255.0/24")  # Spamhaus: .252 typo, .254 public resolver, .255 limit


def zones_from_env(value: str) -> tuple[str, ...]:
    return tuple(zone.strip().strip(".").lower() for zone in value.split(",") if zone.strip().strip("."))


def reversed_name(ip: str) -> str | None:
    """The address as a blocklist query label sequence (without the zone), or None if not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    pointer = address.reverse_pointer
    return pointer.rsplit(".in-addr.arpa", 1)[0].rsplit(".ip6.arpa", 1)[0]


class Blocklists:
    def __init__(
        self, zones: Sequence[str], resolver: dns.asyncresolver.Resolver, exempt: Iterable[str] = ()
    ) -> None:
        self.zones = tuple(zones)
        self._resolver = resolver
        self._exempt = networks(exempt)

    async def listing(self, ip: str) -> str | None:
        """The first zone (in configured order) that lists `ip`, or None."""
        name = reversed_name(ip)
        if name is None or is_exempt(ip, self._exempt) or not self.zones:
            return None
        answers = await asyncio.gather(*(self._query(f"{name}.{zone}.", ip, zone) for zone in self.zones))
        for zone, listed in zip(self.zones, answers, strict=True):
            if listed:
                return zone
        return None

    async def _query(self, qname: str, ip: str, zone: str) -> bool:
        try:
            answer = await self._resolver.resolve(qname, "A", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return False
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL (NoNameservers), malformed
            log.warning("blocklist %s for %s: lookup failed (%s): not listed", zone, ip, type(exc).__name__)
            return False
        addresses = [ipaddress.ip_address(record.address) for record in answer]
        if any(address in REFUSED for address in addresses):
            log.warning("blocklist %s refused our query for %s (%s): not listed", zone, ip, addresses[0])
            return False
        if not any(address in LISTED for address in addresses):
            log.warning("blocklist %s answered %s for %s, not a listing", zone, addresses[0], ip)
            return False
        return True

    async def refusal(self, session: Any) -> str | None:
        """The reply refusing this session's client, or None; looked up once per session."""
        if not hasattr(session, "dnsbl_zone"):
            ip = _peer(session)
            session.dnsbl_zone = await self.listing(ip)
            if session.dnsbl_zone:
                log.warning("client %s is listed in %s", ip, session.dnsbl_zone)
        if session.dnsbl_zone:
            return (
                f"554 5.7.1 Service unavailable; client [{_peer(session)}] blocked using {session.dnsbl_zone}"
            )
        return None


def _peer(session: Any) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")
