"""Which transport a recipient domain uses: Postfix's transport(5) idea, in `DOMAIN=VALUE` entries.

Why a map: on AWS, Lambda cannot open port 25 to the world, so most mail must go through SES
or a smarthost, while the dev stack (and hosts with port 25 open) deliver by MX; and tests
point one domain at a server on loopback. One table says it per domain.

Values (Postfix notation, `transport:nexthop`):

- `mx` — shorthand for `smtp:` with an empty nexthop: look up the recipient domain's MX.
- `smtp:[host]:port` — connect to `host` (a name or an IP address, `[IPv6:...]` allowed) on
  `port`; the brackets turn the MX lookup off, as in Postfix. This is a smarthost.
- `smtp:host:port` — without brackets, Postfix semantics: `host` is a *domain whose MX
  records* are looked up (with its A/AAAA as the implicit MX), and the exchangers found are
  contacted on `port`. Use brackets to mean "exactly this host".
- `smtp:host` / `smtp:[host]` — the same on port 25. The port may also be a service name
  (`submission` = 587, `smtps`/`submissions` = 465).
- `ses` — Amazon SES (SESv2 `SendEmail` with the raw message); it takes no nexthop.
- `capture:/folder` — nothing leaves: each message is written to the folder as an .eml file
  (capture.py; the dev stack's default).
- An empty transport (`:[host]:port`) means `smtp`, as an empty field means Postfix's
  default transport.

Keys are matched case-insensitively, most specific first, as transport(5) does when
`transport_maps` is *not* in `parent_domain_matches_subdomains` (Postfix's default):

1. `example.com` matches exactly example.com;
2. `.example.com` matches every subdomain of example.com (not example.com itself), the
   nearest parent winning (`.a.example.com` before `.example.com`);
3. `*` matches everything else; without it the map's default (`mx`) applies.

`parent_matches_subdomains=True` gives Postfix's other mode, where `example.com` also
matches its subdomains (checked before `.example.com` at each level). Keys are domains
only; Postfix's `user@domain` keys are not supported (routing here is per domain).
Internationalised domains are compared in their ASCII (IDNA) form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_PORT = 25
_SERVICES = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")


class TransportMapError(ValueError):
    """An entry of the transport map cannot be understood."""


@dataclass(frozen=True)
class Route:
    """Where mail for a domain goes: `transport`, and for smtp the nexthop, port and whether to look up MX.

    `nexthop` None means the recipient's own domain (the plain `mx` case).
    """

    transport: str = "smtp"
    nexthop: str | None = None
    port: int = DEFAULT_PORT
    mx_lookup: bool = True

    def destination(self, recipient_domain: str) -> str:
        """The name to look up (MX if `mx_lookup`, else A/AAAA) or the address to connect to."""
        return self.nexthop if self.nexthop is not None else recipient_domain

    def __str__(self) -> str:
        if self.transport == "capture":
            return f"capture:{self.nexthop}"
        if self.transport != "smtp":
            return self.transport
        if self.nexthop is None and self.port == DEFAULT_PORT:
            return "mx"
        host = self.nexthop or ""
        if not self.mx_lookup:
            host = f"[IPv6:{host}]" if ":" in host else f"[{host}]"
        return f"smtp:{host}" if self.port == DEFAULT_PORT else f"smtp:{host}:{self.port}"


MX = Route()


def parse_route(value: str) -> Route:
    """Parse the right-hand side of an entry: `mx`, `ses`, `smtp:[host]:port`, `smtp:host`, ..."""
    text = value.strip()
    if not text:
        raise TransportMapError("empty transport (use mx for MX delivery)")
    transport, colon, nexthop = text.partition(":")
    transport = transport.strip().lower() or "smtp"
    if transport == "mx":
        if colon:
            raise TransportMapError(f"`mx` takes no nexthop (use smtp:host): {value!r}")
        return MX
    if transport == "ses":
        if nexthop.strip():
            raise TransportMapError(f"`ses` takes no nexthop: {value!r}")
        return Route("ses")
    if transport == "capture":
        if not nexthop.strip():
            raise TransportMapError(f"`capture` needs a folder, capture:/path: {value!r}")
        return Route("capture", nexthop.strip(), mx_lookup=False)
    if transport != "smtp":
        raise TransportMapError(f"unknown transport {transport!r} in {value!r} (mx, smtp, ses or capture)")
    return _parse_nexthop(nexthop.strip(), value)


def _parse_nexthop(nexthop: str, value: str) -> Route:
    if not nexthop:
        return MX
    if nexthop.startswith("["):
        inner, bracket, rest = nexthop[1:].partition("]")
        if not bracket:
            raise TransportMapError(f"unclosed bracket in {value!r}")
        if rest and not rest.startswith(":"):
            raise TransportMapError(f"unexpected text after ']' in {value!r}")
        return Route(
            "smtp", _bracketed_host(inner, value), _port(rest[1:], value) if rest else DEFAULT_PORT, False
        )
    host, colon, port = nexthop.partition(":")
    if ":" in port:
        raise TransportMapError(f"an IPv6 address needs brackets: {value!r}")
    return Route("smtp", _hostname(host, value), _port(port, value) if colon else DEFAULT_PORT, True)


def _bracketed_host(inner: str, value: str) -> str:
    text = inner.strip()
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if ":" in text:
            raise TransportMapError(f"not an IP address: {inner!r} in {value!r}") from None
        return _hostname(text, value)


def _hostname(host: str, value: str) -> str:
    name = _ascii_domain(host)
    if not _HOSTNAME.match(name):
        raise TransportMapError(f"not a host name: {host!r} in {value!r}")
    return name


def _port(text: str, value: str) -> int:
    text = text.strip().lower()
    if text in _SERVICES:
        return _SERVICES[text]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise TransportMapError(f"not a port: {text!r} in {value!r}")
    return int(text)


def _ascii_domain(domain: str) -> str:
    """Lower case, no trailing dot, IDNA A-labels: the one form keys and lookups are compared in."""
    text = domain.strip().rstrip(".").lower()
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise TransportMapError(f"not a domain: {domain!r}") from exc
    return text


def _key(key: str) -> str:
    text = key.strip()
    if text == "*":
        return text
    leading = "." if text.startswith(".") else ""
    name = _ascii_domain(text[len(leading) :])
    if not name or not _HOSTNAME.match(name):
        raise TransportMapError(f"not a domain key: {key!r}")
    return leading + name


class TransportMap:
    """A lookup table from recipient domain to `Route`."""

    def __init__(
        self,
        entries: Iterable[tuple[str, Route]] = (),
        *,
        default: Route = MX,
        parent_matches_subdomains: bool = False,
    ) -> None:
        self._table: dict[str, Route] = {}
        for key, route in entries:
            normal = _key(key)
            if normal in self._table:
                raise TransportMapError(f"two entries for {key!r}")
            self._table[normal] = route
        self.default = self._table.pop("*", default)
        self.parent_matches_subdomains = parent_matches_subdomains

    @classmethod
    def parse(
        cls, specs: Iterable[str], *, default: Route = MX, parent_matches_subdomains: bool = False
    ) -> TransportMap:
        """From `DOMAIN=VALUE` strings (what `--transport` repeats); `*=VALUE` sets the default."""
        entries = []
        for spec in specs:
            key, equals, value = spec.partition("=")
            if not equals or not key.strip():
                raise TransportMapError(f"expected DOMAIN=TRANSPORT, got {spec!r}")
            entries.append((key, parse_route(value)))
        return cls(entries, default=default, parent_matches_subdomains=parent_matches_subdomains)

    @classmethod
    def from_text(
        cls, text: str, *, default: Route = MX, parent_matches_subdomains: bool = False
    ) -> TransportMap:
        """From one string (an environment variable): entries split by newlines, commas or spaces.

        `#` starts a comment that runs to the end of the line.
        """
        specs = []
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            specs.extend(part for part in re.split(r"[,\s]+", line) if part)
        return cls.parse(specs, default=default, parent_matches_subdomains=parent_matches_subdomains)

    def lookup(self, recipient: str) -> Route:
        """The route for an address (`bob@example.com`) or a bare domain."""
        domain = _ascii_domain(recipient.rpartition("@")[2])
        for key in self._candidates(domain):
            route = self._table.get(key)
            if route is not None:
                return route
        return self.default

    def _candidates(self, domain: str) -> Iterator[str]:
        yield domain
        labels = domain.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            if self.parent_matches_subdomains:
                yield parent
            yield "." + parent

    def entries(self) -> list[str]:
        """The map as `DOMAIN=VALUE` strings, the default last as `*=VALUE`."""
        return [f"{key}={route}" for key, route in self._table.items()] + [f"*={self.default}"]

    def __repr__(self) -> str:
        return f"TransportMap({self.entries()!r})"
