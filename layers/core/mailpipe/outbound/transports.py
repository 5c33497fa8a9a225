"""What every transport shares: the recipients it is given, the result per recipient, and SMTP hosts.

The delivery function hands one message and the recipients of one destination domain to a
transport (`smtp_client.deliver` or `ses.deliver_ses`) and gets back one `RecipientResult`
per recipient, in the same order. A result is never an exception: a failure that concerns
the whole destination (DNS, no server reachable) is copied onto every recipient, so the
caller has a single shape to act on: 2xx delivered, 4xx retry (`schedule`), 5xx bounce (`dsn`).

`route_targets` turns a transport map `Route` into the hosts to try: the MX lookup of
`mx.resolve_targets` for `mx` and `smtp:host:port`, or exactly the named host for
`smtp:[host]:port` (its A/AAAA, no MX), as Postfix's brackets mean.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import dns.exception
import dns.name
import dns.resolver

from mailpipe.outbound.dsn import RecipientStatus
from mailpipe.outbound.mx import (
    DnsTemporaryFailure,
    InvalidDomain,
    NoReachableHost,
    Target,
    host_addresses,
    resolve_targets,
)
from mailpipe.outbound.status import SmtpStatus
from mailpipe.outbound.transport_map import Route

NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY")
LOCAL_DIAGNOSTIC = "X-mailpipe"
MAX_TEXT = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Recipient:
    """One envelope recipient and its RFC 3461 DSN parameters, as the submitter gave them.

    `notify` is `("NEVER",)` or some of SUCCESS, FAILURE, DELAY; None means the parameter was
    absent. `orcpt` is the original recipient, xtext-decoded (`rfc822;bob@example.org`), as
    `dsn.RecipientStatus.original_recipient` takes it; transports encode it again for the wire.
    """

    address: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None

    def __post_init__(self) -> None:
        if self.notify is not None:
            values = tuple(value.upper() for value in self.notify)
            if values != ("NEVER",) and (not values or set(values) - set(NOTIFY_VALUES)):
                raise ValueError(f"NOTIFY is NEVER or some of {NOTIFY_VALUES}, not {self.notify!r}")
            object.__setattr__(self, "notify", values)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class RecipientResult:
    """What became of one recipient: `status` (2xx delivered, 4xx retry, 5xx bounce) and who said so.

    `remote_mta` is the host whose session decided the result (None when no server was
    reached). `diagnostic_type` is `smtp` when `status` is that server's own reply (code,
    enhanced code and text; `x.0.0` stands in when the server sent no enhanced code) and
    `X-mailpipe` when the text is ours ("connect to ... refused"), the distinction RFC 3464's
    Diagnostic-Code makes. `remote_dsn` is True when the server that accepted the recipient
    advertised DSN, so that it, not we, reports further; when False and NOTIFY asked for
    SUCCESS, the caller owes the sender a "relayed" DSN (RFC 3461 4.2).
    """

    address: str
    status: SmtpStatus
    remote_mta: str | None = None
    diagnostic_type: str = LOCAL_DIAGNOSTIC
    remote_dsn: bool = False

    @property
    def delivered(self) -> bool:
        return self.status.code < 400

    @property
    def temporary(self) -> bool:
        return self.status.temporary

    @property
    def permanent(self) -> bool:
        return self.status.permanent

    @property
    def diagnostic(self) -> str:
        """The Diagnostic-Code text: the whole reply for a server's answer, our text otherwise."""
        return self.status.reply if self.diagnostic_type == "smtp" else self.status.text

    def dsn_status(
        self,
        *,
        original_recipient: str | None = None,
        action: str | None = None,
        last_attempt: datetime | None = None,
        will_retry_until: datetime | None = None,
    ) -> RecipientStatus:
        """This result as a per-recipient block of an RFC 3464 report (`dsn.build_dsn`)."""
        return RecipientStatus(
            final_recipient=self.address,
            status=self.status.enhanced,
            action=action,
            original_recipient=original_recipient,
            remote_mta=self.remote_mta,
            diagnostic=self.diagnostic,
            diagnostic_type=self.diagnostic_type,
            last_attempt=last_attempt,
            will_retry_until=will_retry_until,
        )


def route_targets(
    route: Route,
    domain: str,
    resolver: dns.resolver.Resolver | None,
    *,
    rng: random.Random | None = None,
    ip_versions: Sequence[int] = (4, 6),
    local_hosts: Collection[str] = (),
) -> list[Target]:
    """The SMTP hosts to try for `domain` by `route`, best first; raises `DeliveryError` when none.

    A bracketed nexthop is a host we chose ourselves (a smarthost): when its name does not
    resolve, that is our configuration, not the sender's mistake, so the failure is
    temporary (`451 4.4.4`) and the retry schedule leaves time to fix it.
    """
    if route.transport != "smtp":
        raise ValueError(f"route {route} is not an SMTP route")
    name = route.destination(domain)
    literal = _ip(name)
    if literal is not None:
        return [Target(literal, 0, (literal,), implicit=True)]
    if resolver is None:
        raise ValueError(f"a resolver is needed to find {name}")
    if route.mx_lookup:
        return resolve_targets(name, resolver, rng=rng, ip_versions=ip_versions, local_hosts=local_hosts)
    return [_host_target(name, resolver, ip_versions)]


def _host_target(host: str, resolver: dns.resolver.Resolver, ip_versions: Sequence[int]) -> Target:
    try:
        qname = dns.name.from_text(host.rstrip("."))
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise InvalidDomain(f"Not a valid host name: {host}") from exc
    found, failures = host_addresses(qname, resolver, ip_versions)
    if found:
        return Target(host, 0, tuple(found), implicit=True)
    if failures:
        raise DnsTemporaryFailure(f"DNS lookup of relay host {host} failed: {'; '.join(failures)}")
    raise NoReachableHost(f"Relay host {host} has no address record")


def _ip(text: str) -> str | None:
    inner = text.strip().strip("[]")
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    """A text for a result: one line, no control characters, at most `limit` characters.

    Results end up in DSNs and DynamoDB items, and remote servers choose what they say.
    """
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def ascii_address(address: str) -> str | None:
    """The address for a peer without SMTPUTF8: the domain as IDNA (xn--); None for a non-ASCII local part."""
    if address.isascii():
        return address
    local, _at, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None
