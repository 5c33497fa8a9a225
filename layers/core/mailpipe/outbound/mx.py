"""Where to deliver mail for a domain: the MX lookup of RFC 5321 5.1, with dnspython.

The answer is a list of `Target`s (a host and its addresses) in the order to try them:

- MX records by preference, lowest first. Records of equal preference are **shuffled** (with
  the `rng` passed in, so tests can fix it): RFC 5321 5.1 says the client MUST randomise them
  to spread load across equal exchangers.
- No MX records (the name exists, NODATA): the domain's own A/AAAA, the "implicit MX" of
  RFC 5321 5.1, marked `implicit=True`.
- A null MX (RFC 7505: `MX 0 .`): the domain accepts no mail, so it fails at once with
  `556 5.1.10` and no A/AAAA fallback. Any MX set made only of "." exchanges is treated so; a
  "." among real exchangers (forbidden by RFC 7505 3) is ignored and the others are used.
- NXDOMAIN: the domain does not exist, `550 5.1.2` (permanent).
- SERVFAIL, timeouts, no reachable name server: `451 4.4.3` (temporary; the retry schedule
  takes over, as Postfix defers on a DNS "try again").
- MX hosts without an address are skipped; if none has one the failure is temporary
  (`451 4.4.3` when a lookup failed temporarily, `451 4.4.4` "unable to route" otherwise):
  misconfigured exchangers are usually fixed within the days the schedule allows.
- If one of `local_hosts` (this MTA's own names) is an exchanger, it and every exchanger of
  equal or higher preference are dropped (RFC 5321 5.1), so a backup MX never sends mail to
  itself; if nothing is left it is `554 5.4.6`, Postfix's "mail for ... loops back to myself".

CNAMEs need nothing special: a recursive server answers with the chain and dnspython follows
it within the answer. The resolver is always passed in (tests point one at a DNS server on
loopback); this module never reads the system's resolver configuration.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import groupby

import dns.exception
import dns.name
import dns.resolver

from mailpipe.outbound.status import PermanentFailure, TemporaryFailure

_RDTYPE_BY_VERSION = {4: "A", 6: "AAAA"}


@dataclass(frozen=True)
class Target:
    """One host to connect to: its name (lower case, no trailing dot) and its addresses."""

    host: str
    preference: int
    addresses: tuple[str, ...]
    implicit: bool = False


class NullMX(PermanentFailure):
    """The domain publishes a null MX (RFC 7505): it accepts no mail."""

    default_code = 556
    default_enhanced = "5.1.10"


class DomainNotFound(PermanentFailure):
    """NXDOMAIN, or a domain that exists with neither MX nor address records."""

    default_code = 550
    default_enhanced = "5.1.2"


class InvalidDomain(PermanentFailure):
    """The recipient domain is not a valid DNS name."""

    default_code = 553
    default_enhanced = "5.1.3"


class MailLoopsBack(PermanentFailure):
    """This MTA is the best exchanger for the domain: delivering would send the mail to ourselves."""

    default_code = 554
    default_enhanced = "5.4.6"


class DnsTemporaryFailure(TemporaryFailure):
    """SERVFAIL, a timeout, or no name server answered."""

    default_code = 451
    default_enhanced = "4.4.3"


class NoReachableHost(TemporaryFailure):
    """There are exchangers, but none of them has an address."""

    default_code = 451
    default_enhanced = "4.4.4"


def resolve_targets(
    domain: str,
    resolver: dns.resolver.Resolver,
    *,
    rng: random.Random | None = None,
    ip_versions: Sequence[int] = (4, 6),
    local_hosts: Collection[str] = (),
) -> list[Target]:
    """The hosts to try for `domain`, best first; raises a `DeliveryError` subclass when there are none.

    `ip_versions` chooses which address records are looked up and their order in
    `Target.addresses` (IPv4 first by default: a Lambda function in a default VPC has no
    IPv6 route; pass `(4,)` there to skip the AAAA queries altogether).
    """
    for version in ip_versions:
        if version not in _RDTYPE_BY_VERSION:
            raise ValueError(f"ip_versions takes 4 and 6, not {version!r}")
    literal = _address_literal(domain)
    if literal is not None:
        return [Target(literal, 0, (literal,), implicit=True)]
    name = _dns_name(domain)
    shown = _text(name)
    try:
        answer = resolver.resolve(name, "MX")
        records = [(int(rr.preference), rr.exchange) for rr in answer]
    except dns.resolver.NXDOMAIN as exc:
        raise DomainNotFound(f"Host or domain name not found: {shown} does not exist") from exc
    except dns.resolver.NoAnswer:
        records = []
    except dns.exception.DNSException as exc:
        raise DnsTemporaryFailure(f"DNS lookup of MX for {shown} failed: {_why(exc)}") from exc

    if not records:
        return [_implicit_mx(name, resolver, ip_versions)]
    exchangers = [(pref, host) for pref, host in records if host != dns.name.root]
    if not exchangers:
        raise NullMX(f"Domain {shown} does not accept mail (null MX)")

    best: dict[str, int] = {}
    for pref, host in exchangers:
        text = _text(host)
        best[text] = min(pref, best.get(text, pref))
    ordered = sorted(best.items(), key=lambda item: item[1])
    ordered = _drop_self(shown, ordered, local_hosts)

    rng = rng or random.Random()
    shuffled: list[tuple[str, int]] = []
    for _pref, group in groupby(ordered, key=lambda item: item[1]):
        members = list(group)
        rng.shuffle(members)
        shuffled.extend(members)

    targets: list[Target] = []
    temporary: list[str] = []
    for host, pref in shuffled:
        addresses, failures = host_addresses(dns.name.from_text(host), resolver, ip_versions)
        temporary.extend(failures)
        if addresses:
            targets.append(Target(host, pref, addresses))
    if targets:
        return targets
    if temporary:
        raise DnsTemporaryFailure(
            f"No MX host for {shown} could be resolved: {'; '.join(temporary)}",
        )
    hosts = ", ".join(host for host, _pref in shuffled)
    raise NoReachableHost(f"No MX host for {shown} has an address ({hosts})")


def _implicit_mx(name: dns.name.Name, resolver: dns.resolver.Resolver, ip_versions: Sequence[int]) -> Target:
    """RFC 5321 5.1: no MX at all, so the domain itself is the exchanger, with preference 0."""
    shown = _text(name)
    addresses, failures = host_addresses(name, resolver, ip_versions)
    if addresses:
        return Target(shown, 0, addresses, implicit=True)
    if failures:
        raise DnsTemporaryFailure(f"DNS lookup of {shown} failed: {'; '.join(failures)}")
    raise DomainNotFound(f"Host or domain name not found: {shown} has no MX and no address record")


def host_addresses(
    name: dns.name.Name, resolver: dns.resolver.Resolver, ip_versions: Sequence[int]
) -> tuple[tuple[str, ...], list[str]]:
    """The host's addresses in `ip_versions` order, and a note for each lookup that failed temporarily.

    A family that fails temporarily does not hide the other: a host whose AAAA lookup times
    out is still reachable over IPv4.
    """
    found: list[str] = []
    failures: list[str] = []
    for version in ip_versions:
        rdtype = _RDTYPE_BY_VERSION[version]
        try:
            answer = resolver.resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            failures.append(f"{_text(name)} {rdtype}: {_why(exc)}")
            continue
        for rr in answer:
            if rr.address not in found:
                found.append(rr.address)
    return tuple(found), failures


def _drop_self(
    domain: str, ordered: list[tuple[str, int]], local_hosts: Collection[str]
) -> list[tuple[str, int]]:
    local = {host.strip().rstrip(".").lower() for host in local_hosts}
    mine = [pref for host, pref in ordered if host in local]
    if not mine:
        return ordered
    kept = [(host, pref) for host, pref in ordered if pref < min(mine)]
    if not kept:
        raise MailLoopsBack(f"Mail for {domain} loops back to myself")
    return kept


def _address_literal(domain: str) -> str | None:
    """`[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 4.1.3): deliver there, no DNS."""
    text = domain.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError as exc:
        raise InvalidDomain(f"Not an address literal: {domain}") from exc


def _dns_name(domain: str) -> dns.name.Name:
    text = domain.strip().rstrip(".")
    if not text:
        raise InvalidDomain("Empty domain")
    try:
        return dns.name.from_text(text)  # absolute: the resolver's search list never applies
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise InvalidDomain(f"Not a valid domain name: {domain}") from exc


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _why(exc: dns.exception.DNSException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no name server answered (SERVFAIL or refused)"
    return type(exc).__name__
