"""MTA-STS (RFC 8461) for delivery by MX: a domain's published demand for authenticated TLS.

For a recipient domain reached by its MX (the `mx` route; never a smarthost), before any session:

1. `_mta-sts.DOMAIN` TXT: exactly one record starting `v=STSv1` with an `id=` (RFC 8461 3.1;
   several are treated as none).
2. The policy from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (3.3): the certificate must
   verify for that name, redirects are not followed, only `200` with `text/plain` counts, at
   most `MAX_POLICY_BYTES` (64 KB) are read and the whole fetch is bounded by `timeout`.
3. Cached per domain for its `max_age`; fetched again only when the TXT id changes (or the
   cache ends). A failed lookup or fetch keeps a cached policy in force: an attacker who can
   block the fetch must not be able to switch the policy off (5.1).

What a policy does (`apply`):

- `enforce`: only MX hosts matching an `mx:` pattern (4.1: exact, or `*.` for one leftmost
  label) are tried, with TLS required and the certificate verified for the MX host name
  (WebPKI, 4.2). No matching host, or no host with valid TLS, is a **temporary** failure
  (`451 4.7.5`): the retry schedule holds the mail until the domain's set-up is fixed, as
  RFC 8461 5 asks ("MUST NOT deliver" rather than bounce).
- `testing`: delivery as without a policy, the hosts that would fail logged (4.3 wants them
  reported; TLS-RPT reports are not sent yet).
- `none`, or no policy: nothing changes.

The HTTPS connection goes to the address our resolver gives for `mta-sts.DOMAIN` (so tests and
the dev stack can point it at loopback, like every other lookup), on `port` (443), trusting
`ca_file` when set (tests: a CA of their own) or the system's roots.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.resolver

from mailpipe.outbound.mx import Target, host_addresses
from mailpipe.outbound.status import TemporaryFailure

if TYPE_CHECKING:  # smtp_client imports this module
    from mailpipe.outbound.smtp_client import DeliveryOptions

log = logging.getLogger(__name__)

ENV_CA_FILE = "MAILPIPE_MTA_STS_CA_FILE"  # PEM roots to trust for policies and MX certificates
ENV_PORT = "MAILPIPE_MTA_STS_PORT"  # the policy host's HTTPS port (443; tests: a port on loopback)
MAX_POLICY_BYTES = 64 * 1024
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 3.2: at most a year
DEFAULT_TIMEOUT = 10.0
MODES = ("enforce", "testing", "none")
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


class PolicyError(ValueError):
    """A policy (or its TXT record) that RFC 8461 says to treat as absent."""


# What fetching a policy may raise: treated as "no policy" (or the cached one).
FETCH_ERRORS = (PolicyError, OSError, http.client.HTTPException, ssl.SSLError, dns.exception.DNSException)


class MtaStsFailure(TemporaryFailure):
    """Delivery refused by an `enforce` policy: no MX host matches, or none offers verified TLS."""

    default_code = 451
    default_enhanced = "4.7.5"


@dataclass(frozen=True)
class Policy:
    id: str
    mode: str
    mx: tuple[str, ...]
    max_age: int

    def matches(self, host: str) -> bool:
        """RFC 8461 4.1: an exact name, or `*.example.net` matching exactly one more label."""
        name = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, _dot, rest = name.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def parse_policy(text: str, policy_id: str) -> Policy:
    """The policy file's `key: value` lines (3.2); unknown keys ignored, required ones checked."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"policy line without a colon: {line[:80]!r}")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("policy has no 'version: STSv1'")
    mode = (fields.get("mode") or [""])[0].lower()
    if mode not in MODES:
        raise PolicyError(f"policy mode is one of {MODES}, not {mode!r}")
    try:
        max_age = int((fields.get("max_age") or [""])[0])
    except ValueError:
        raise PolicyError("policy has no numeric max_age") from None
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise PolicyError(f"policy max_age {max_age} out of range")
    mx = tuple(value.rstrip(".").lower() for value in fields.get("mx", []) if value)
    if mode != "none" and not mx:
        raise PolicyError("policy names no mx")
    return Policy(policy_id, mode, mx, max_age)


def txt_policy_id(texts: Sequence[str]) -> str:
    """The `id=` of the one `v=STSv1` record among a name's TXT records (3.1), or PolicyError."""
    records = [t for t in texts if t.startswith("v=STSv1;") or t == "v=STSv1"]
    if len(records) != 1:
        raise PolicyError(f"{len(records)} v=STSv1 records")
    tags = {}
    for part in records[0].split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            tags[key.strip()] = value.strip()
    if not _ID.match(tags.get("id", "")):
        raise PolicyError("the v=STSv1 record has no valid id")
    return tags["id"]


class MtaSts:
    """Policies looked up, fetched and cached for a process; `apply` is what delivery calls."""

    def __init__(
        self,
        resolver: dns.resolver.Resolver,
        *,
        ca_file: str | None = None,
        port: int = 443,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._ca_file = ca_file
        self._port = port
        self._timeout = timeout
        self._clock = clock
        self._cache: dict[str, tuple[Policy, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, resolver: dns.resolver.Resolver, env: Mapping[str, str] | None = None) -> MtaSts:
        env = os.environ if env is None else env
        return cls(resolver, ca_file=env.get(ENV_CA_FILE) or None, port=int(env.get(ENV_PORT) or 443))

    def tls_context(self) -> ssl.SSLContext:
        """Verifying TLS for MX hosts and policy hosts: the system's roots, or `ca_file`."""
        return ssl.create_default_context(cafile=self._ca_file)

    def apply(
        self, domain: str, targets: list[Target], options: DeliveryOptions
    ) -> tuple[list[Target], DeliveryOptions]:
        """The hosts to try and the delivery options under `domain`'s policy; MtaStsFailure when none."""
        policy = self.policy(domain)
        if policy is None or policy.mode == "none":
            return targets, options
        matching = [target for target in targets if policy.matches(target.host)]
        others = [target.host for target in targets if target not in matching]
        if policy.mode == "testing":
            if others:
                log.warning("MTA-STS testing policy of %s: MX %s would be refused", domain, ", ".join(others))
            return targets, options
        if not matching:
            raise MtaStsFailure(
                f"MTA-STS policy of {domain} (enforce) matches none of its MX hosts ({', '.join(others)})"
            )
        if others:
            log.warning("MTA-STS policy of %s: skipping MX %s", domain, ", ".join(others))
        return matching, replace(options, tls="required", tls_context=self.tls_context())

    def policy(self, domain: str) -> Policy | None:
        """The policy in force for `domain`: cached while its id holds, else fetched; None when none."""
        domain = domain.rstrip(".").lower()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(domain)
        if cached is not None and now >= cached[1]:
            cached = None
        try:
            policy_id = txt_policy_id(self._txt(f"_mta-sts.{domain}"))
        except (PolicyError, dns.exception.DNSException) as exc:
            if cached is None:
                log.debug("no MTA-STS policy for %s: %s", domain, exc)
            return cached[0] if cached else None
        if cached is not None and cached[0].id == policy_id:
            return cached[0]
        try:
            policy = parse_policy(self._fetch(domain), policy_id)
        except FETCH_ERRORS as exc:
            log.warning(
                "MTA-STS policy of %s not fetched (%s)%s",
                domain,
                exc,
                "; the cached one holds" if cached else "",
            )
            return cached[0] if cached else None
        with self._lock:
            self._cache[domain] = (policy, now + policy.max_age)
        return policy

    def _txt(self, name: str) -> list[str]:
        try:
            answer = self._resolver.resolve(name + ".", "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]

    def fetch(self, domain: str, policy_id: str) -> Policy:
        """The policy served for `domain` now, uncached; PolicyError (or OSError, ...) says why not."""
        return parse_policy(self._fetch(domain.rstrip(".").lower()), policy_id)

    def _fetch(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        addresses, failures = host_addresses(dns.name.from_text(host), self._resolver, (4, 6))
        if not addresses:
            raise PolicyError(f"{host} has no address" + (f" ({'; '.join(failures)})" if failures else ""))
        deadline = self._clock() + self._timeout
        connection = _PinnedHTTPS(host, addresses[0], self._port, self.tls_context(), self._timeout)
        try:
            connection.request("GET", "/.well-known/mta-sts.txt", headers={"Accept": "text/plain"})
            response = connection.getresponse()
            if response.status != 200:  # 3xx included: redirects MUST NOT be followed (3.3)
                raise PolicyError(f"https://{host}/.well-known/mta-sts.txt answered {response.status}")
            kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "text/plain":
                raise PolicyError(f"policy served as {kind or 'no type'}, not text/plain")
            body = b""
            while len(body) <= MAX_POLICY_BYTES:
                if self._clock() > deadline:
                    raise PolicyError("policy fetch took too long")
                chunk = response.read(8192)
                if not chunk:
                    break
                body += chunk
            if len(body) > MAX_POLICY_BYTES:
                raise PolicyError(f"policy larger than {MAX_POLICY_BYTES} bytes")
        finally:
            connection.close()
        return body.decode("utf-8", "replace")


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to `address` (our resolver's answer) while TLS verifies and SNI names `host`."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
