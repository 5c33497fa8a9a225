"""How many sessions one listener holds open, in all and per client address.

Shared by the SMTP gateway (per port) and the access gateway (per protocol: IMAP's and POP3's
plain and implicit-TLS ports count together).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping

DEFAULT_MAX_CONNECTIONS = 1000
# Postfix's smtpd_client_connection_count_limit default.
DEFAULT_MAX_CONNECTIONS_PER_IP = 50
# Like Postfix's $mynetworks exception: local clients (health checks, our own tools)
# are not counted per address (they still count toward the total).
DEFAULT_EXEMPT = ("127.0.0.0/8", "::1/128")
EXEMPT_ENV = "MAILPIPE_LIMIT_EXEMPT"


def exempt_from_env(env: Mapping[str, str], name: str = EXEMPT_ENV) -> tuple[str, ...]:
    """The networks per-address limits skip, from MAILPIPE_LIMIT_EXEMPT (comma-separated; empty: none);
    or another such list of networks, from the variable `name`."""
    return tuple(net.strip() for net in env.get(name, ",".join(DEFAULT_EXEMPT)).split(",") if net.strip())


class ConnectionLimiter:
    def __init__(
        self,
        max_total: int = DEFAULT_MAX_CONNECTIONS,
        max_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
        exempt: Iterable[str] = DEFAULT_EXEMPT,
    ) -> None:
        self._max_total = max_total
        self._max_per_ip = max_per_ip
        self._exempt = networks(exempt)
        self._open: Counter[str] = Counter()
        self._total = 0

    def acquire(self, ip: str) -> bool:
        """Take a slot for a new session from `ip`; False if it would exceed a limit."""
        if self._total >= self._max_total:
            return False
        if not is_exempt(ip, self._exempt) and self._open[ip] >= self._max_per_ip:
            return False
        self._open[ip] += 1
        self._total += 1
        return True

    def release(self, ip: str) -> None:
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]
        self._total -= 1

    @property
    def open_sessions(self) -> int:
        return self._total


Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def networks(texts: Iterable[str]) -> Networks:
    return [ipaddress.ip_network(text) for text in texts]


def is_exempt(ip: str, exempt: Networks) -> bool:
    """True if `ip` is in one of the `exempt` networks (limits per client address skip it)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in exempt)
