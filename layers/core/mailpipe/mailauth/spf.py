"""SPF (RFC 7208): is the client's address allowed to send for a domain?

Written on dnspython's asyncio resolver rather than taken from pyspf: pyspf's lookups are blocking
and go through its own module-level DNS function (so an SMTP session would tie up a thread per
lookup, and our resolver, cache and loopback test server could only be wired in by patching the
module), and checkdmarc checks published records rather than evaluating a client. Here every
lookup is a coroutine on the shared resolver, and the RFC's bounds are enforced in one place: at
most 10 DNS-querying terms (4.6.4), at most 2 void lookups, at most 10 MX or PTR names, and an
overall time limit (4.6.4 asks for at least 20 seconds) after which the result is temperror.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from dataclasses import dataclass

from mailpipe.mailauth.dns import Lookup, TempError

log = logging.getLogger(__name__)

MAX_DNS_TERMS = 10  # RFC 7208 4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4
MAX_NAMES = 10  # RFC 7208 4.6.4: MX and PTR names looked at per term
TIME_LIMIT = 20.0  # RFC 7208 4.6.4: "at least 20 seconds"

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9\-_.]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9\-_.]*)(?::(.*?))?((?:/\d+)?(?://\d+)?)$")
_MACRO = re.compile(r"%\{([slodiphcrtvSLODIPHCRTV])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-|%")
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9\-_]*[A-Za-z0-9_])?$")  # "_spf" labels are common


@dataclass(frozen=True)
class SPFResult:
    result: str  # one of RESULTS
    domain: str  # the domain checked ("" when there was none to check)
    reason: str = ""


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass
class _Budget:
    terms: int = 0
    voids: int = 0

    def term(self) -> None:
        self.terms += 1
        if self.terms > MAX_DNS_TERMS:
            raise _PermError(f"more than {MAX_DNS_TERMS} DNS-querying terms")

    def void(self) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise _PermError(f"more than {MAX_VOID_LOOKUPS} void lookups")


def valid_domain(domain: str) -> bool:
    """A fully qualified name of LDH labels (RFC 7208 4.3): anything else gives "none"."""
    labels = domain.rstrip(".").split(".")
    if len(labels) < 2 or len(domain) > 253:
        return False
    return all(_LABEL.match(label) and len(label) <= 63 for label in labels) and not labels[-1].isdigit()


class SPFChecker:
    def __init__(self, lookup: Lookup, time_limit: float = TIME_LIMIT) -> None:
        self._lookup = lookup
        self._time_limit = time_limit

    async def check(self, ip: str, domain: str, sender: str, helo: str) -> SPFResult:
        """check_host() of RFC 7208 section 4, for `sender` (local@domain) from `ip`."""
        domain = domain.rstrip(".").lower()
        if not valid_domain(domain):
            return SPFResult("none", domain, "no valid domain to check")
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return SPFResult("none", domain, f"client address {ip!r} is not an IP address")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        local, _, _ = sender.rpartition("@")
        context = _Context(address, local or "postmaster", domain, helo, _Budget(), self._lookup)
        try:
            async with asyncio.timeout(self._time_limit):
                result = await context.check_host(domain)
        except TimeoutError:
            result = SPFResult("temperror", domain, f"no answer within {self._time_limit:g}s")
        except _TempError as exc:
            result = SPFResult("temperror", domain, str(exc))
        except _PermError as exc:
            result = SPFResult("permerror", domain, str(exc))
        if result.result in ("temperror", "permerror"):
            log.info("SPF %s for %s from %s: %s", result.result, domain, ip, result.reason)
        return result


class _Context:
    """One evaluation: the inputs every macro can see, and the budget all nested records share."""

    def __init__(
        self,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        local: str,
        sender_domain: str,
        helo: str,
        budget: _Budget,
        lookup: Lookup,
    ) -> None:
        self.ip = ip
        self.local = local
        self.sender_domain = sender_domain
        self.helo = helo
        self.budget = budget
        self.lookup = lookup

    async def _query(self, name: str, rdtype: str) -> list:
        try:
            found = await self.lookup.records(name, rdtype)
        except TempError as exc:
            raise _TempError(str(exc)) from exc
        return found or []

    async def record(self, domain: str) -> str | None:
        try:
            texts = await self.lookup.txt(domain)
        except TempError as exc:
            raise _TempError(str(exc)) from exc
        spf = []
        for text in texts or []:
            decoded = text.decode("ascii", "replace")
            if decoded.lower() == "v=spf1" or decoded.lower().startswith("v=spf1 "):
                spf.append(decoded)
        if len(spf) > 1:
            raise _PermError(f"{domain} publishes {len(spf)} SPF records")
        return spf[0] if spf else None

    async def check_host(self, domain: str) -> SPFResult:
        if not valid_domain(domain):
            return SPFResult("none", domain, "not a valid domain")
        record = await self.record(domain)
        if record is None:
            return SPFResult("none", domain, "no SPF record")
        terms = record.split()[1:]
        redirect: str | None = None
        directives: list[tuple[str, str, str | None, str]] = []
        for term in terms:
            modifier = _MODIFIER.match(term)
            if modifier and ":" not in modifier.group(1):
                name = modifier.group(1).lower()
                if name == "redirect":
                    if redirect is not None:
                        raise _PermError(f"{domain}: two redirect modifiers")
                    redirect = modifier.group(2)
                continue  # exp= and unknown modifiers change no result (6.2, 6.0)
            mechanism = _MECHANISM.match(term)
            if not mechanism or mechanism.group(2).lower() not in _MECHANISMS:
                raise _PermError(f"{domain}: unknown term {term[:60]!r}")
            qualifier, name, argument, cidr = mechanism.groups()
            directives.append((_QUALIFIERS[qualifier or "+"], name.lower(), argument, cidr))
        for result, name, argument, cidr in directives:
            if await self.matches(domain, name, argument, cidr):
                return SPFResult(result, domain, f"matched {name}")
        if redirect is not None:
            self.budget.term()
            target = self.expand(redirect, domain)
            if not valid_domain(target):
                raise _PermError(f"{domain}: redirect to invalid domain {target[:60]!r}")
            outcome = await self.check_host(target)
            if outcome.result == "none":
                raise _PermError(f"{domain}: redirect to {target}, which has no SPF record")
            return SPFResult(outcome.result, domain, f"redirect to {target}: {outcome.reason}")
        return SPFResult("neutral", domain, "no mechanism matched")

    async def matches(self, domain: str, name: str, argument: str | None, cidr: str) -> bool:
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            return self.in_network(name, argument, cidr)
        self.budget.term()  # every other mechanism queries DNS
        target = self.expand(argument, domain) if argument else domain
        if argument is not None and not valid_domain(target):
            raise _PermError(f"{domain}: {name} names invalid domain {target[:60]!r}")
        if name == "include":
            if not argument:
                raise _PermError(f"{domain}: include without a domain")
            outcome = await self.check_host(target)
            if outcome.result in ("temperror",):
                raise _TempError(f"include:{target}: {outcome.reason}")
            if outcome.result in ("permerror", "none"):
                raise _PermError(f"include:{target}: {outcome.result} ({outcome.reason})")
            return outcome.result == "pass"
        v4, v6 = _cidr_lengths(cidr)
        if name == "a":
            return await self.address_match(target, v4, v6, count_void=True)
        if name == "mx":
            exchanges = await self._query(target, "MX")
            if not exchanges:
                self.budget.void()
            if len(exchanges) > MAX_NAMES:
                raise _PermError(f"{target}: more than {MAX_NAMES} MX records")
            for mx in exchanges:
                if await self.address_match(str(mx.exchange).rstrip("."), v4, v6, count_void=False):
                    return True
            return False
        if name == "exists":
            if not argument:
                raise _PermError(f"{domain}: exists without a domain")
            found = await self._query(target, "A")
            if not found:
                self.budget.void()
            return bool(found)
        if name == "ptr":
            return await self.ptr_match(target)
        raise _PermError(f"{domain}: unknown mechanism {name}")

    def in_network(self, name: str, argument: str | None, cidr: str) -> bool:
        text = (argument or "") + cidr
        if not argument or "//" in cidr:
            raise _PermError(f"bad {name}:{text[:60]}")
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise _PermError(f"bad {name}:{text[:60]}") from exc
        if (name == "ip4") != (network.version == 4):
            raise _PermError(f"bad {name}:{text[:60]}")
        return network.version == self.ip.version and self.ip in network

    async def address_match(self, name: str, v4: int, v6: int, *, count_void: bool) -> bool:
        rdtype = "A" if self.ip.version == 4 else "AAAA"
        found = await self._query(name, rdtype)
        if not found and count_void:
            self.budget.void()
        length = v4 if self.ip.version == 4 else v6
        for record in found:
            network = ipaddress.ip_network(f"{record.address}/{length}", strict=False)
            if self.ip in network:
                return True
        return False

    async def ptr_match(self, target: str) -> bool:
        # RFC 7208 5.5 ("do not use"), but still in records: validated names only.
        names = await self._query(dns_reverse_name(self.ip), "PTR")
        rdtype = "A" if self.ip.version == 4 else "AAAA"
        for ptr in names[:MAX_NAMES]:
            host = str(ptr.target).rstrip(".").lower()
            try:
                addresses = await self._query(host, rdtype)
            except _TempError:
                continue  # 5.5: a failed validation lookup just skips that name
            validated = any(ipaddress.ip_address(a.address) == self.ip for a in addresses)
            if validated and (host == target or host.endswith("." + target)):
                return True
        return False

    def expand(self, spec: str, domain: str) -> str:
        """Macro expansion (RFC 7208 7); the "p" macro is "unknown", as 7.3 allows."""

        def replace(match: re.Match[str]) -> str:
            whole = match.group(0)
            if whole == "%%":
                return "%"
            if whole == "%_":
                return " "
            if whole == "%-":
                return "%20"
            if whole == "%":
                raise _PermError(f"bad macro in {spec[:60]!r}")
            letter, digits, reverse, delimiters = match.groups()
            value = self.macro_value(letter.lower(), domain)
            parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
            if reverse:
                parts.reverse()
            if digits:
                if int(digits) == 0:
                    raise _PermError(f"bad macro in {spec[:60]!r}")
                parts = parts[-int(digits) :]
            return ".".join(parts)

        expanded = _MACRO.sub(replace, spec).rstrip(".").lower()
        while len(expanded) > 253 and "." in expanded:  # 7.3: drop labels from the left
            expanded = expanded.split(".", 1)[1]
        return expanded

    def macro_value(self, letter: str, domain: str) -> str:
        if letter == "s":
            return f"{self.local}@{self.sender_domain}"
        if letter == "l":
            return self.local
        if letter == "o":
            return self.sender_domain
        if letter == "d":
            return domain
        if letter == "i":
            if self.ip.version == 4:
                return str(self.ip)
            return ".".join(self.ip.exploded.replace(":", ""))
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "p":
            return "unknown"
        raise _PermError(f"macro %{{{letter}}} is only for explanations")


def dns_reverse_name(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return ip.reverse_pointer


def _cidr_lengths(cidr: str) -> tuple[int, int]:
    v4, v6 = 32, 128
    match = re.match(r"^(?:/(\d+))?(?://(\d+))?$", cidr)
    if not match:
        raise _PermError(f"bad CIDR length {cidr!r}")
    if match.group(1) is not None:
        v4 = int(match.group(1))
    if match.group(2) is not None:
        v6 = int(match.group(2))
    if v4 > 32 or v6 > 128:
        raise _PermError(f"bad CIDR length {cidr!r}")
    return v4, v6
