"""The SMTP gateway's settings, from the environment the ECS task definition (or `mailpipe dev`) sets."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mailpipe_gateway.connection_limits import (
    DEFAULT_EXEMPT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    exempt_from_env,
)
from mailpipe_gateway.smtp.budget import DEFAULT_DATA_MEMORY
from mailpipe_gateway.smtp.dnsbl import EXEMPT_ENV as DNSBL_EXEMPT_ENV
from mailpipe_gateway.smtp.dnsbl import ZONES_ENV as DNSBL_ZONES_ENV
from mailpipe_gateway.smtp.dnsbl import zones_from_env
from mailpipe_gateway.smtp.harvest import DEFAULT_MAX_REJECTED, DEFAULT_WINDOW
from mailpipe_gateway.smtp.protocol import DEFAULT_MAX_ERRORS
from mailpipe_gateway.smtp.rspamd_client import DEFAULT_TIMEOUT as DEFAULT_RSPAMD_TIMEOUT
from mailpipe_gateway.tls import certificate_from_env

DEFAULT_MAX_MESSAGE_SIZE = 40 * 1024 * 1024
SESSION_TIMEOUT = 300.0  # RFC 5321 4.5.3.2.7: the server timeout is at least 5 minutes


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 25
    hostname: str = "localhost"
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    tls_cert: Path | None = None
    tls_key: Path | None = None
    validate_function: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    # Client networks the per-address limits (connections, rejected recipients) do not count.
    limit_exempt: tuple[str, ...] = DEFAULT_EXEMPT
    max_errors: int = DEFAULT_MAX_ERRORS
    max_rejected_recipients: int = DEFAULT_MAX_REJECTED
    rejected_recipients_window: float = DEFAULT_WINDOW
    session_timeout: float = SESSION_TIMEOUT
    # Message data all sessions in DATA may hold at once (see budget.py).
    data_memory: int = DEFAULT_DATA_MEMORY
    # The spam filter (spam_filter.py): rspamd's normal worker, e.g. http://127.0.0.1:11333; None: off.
    rspamd_url: str | None = None
    rspamd_timeout: float = DEFAULT_RSPAMD_TIMEOUT
    # DNS blocklists asked about port 25's clients (dnsbl.py), and the networks never looked up.
    dnsbl_zones: tuple[str, ...] = ()
    dnsbl_exempt: tuple[str, ...] = DEFAULT_EXEMPT
    # SPF, DKIM, DMARC and ARC on port 25 (smtp/authentication.py); off only for measurements.
    authenticate_inbound: bool = True
    # "HOST:PORT" of the DNS server for those checks; None: MAILPIPE_DNS_SERVER, else the system's.
    dns_server: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environ is None else environ
        cert, key = certificate_from_env(env) or (None, None)
        return cls(
            host=env.get("MAILPIPE_SMTP_HOST", "0.0.0.0"),
            port=int(env.get("MAILPIPE_SMTP_PORT", "25")),
            hostname=env.get("MAILPIPE_HOSTNAME") or socket.getfqdn(),
            max_message_size=int(env.get("MAILPIPE_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE)),
            tls_cert=cert,
            tls_key=key,
            validate_function=env.get("MAILPIPE_VALIDATE_FUNCTION") or None,
            max_connections=int(env.get("MAILPIPE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
            max_connections_per_ip=int(
                env.get("MAILPIPE_MAX_CONNECTIONS_PER_IP", DEFAULT_MAX_CONNECTIONS_PER_IP)
            ),
            limit_exempt=exempt_from_env(env),
            max_errors=int(env.get("MAILPIPE_SMTP_MAX_ERRORS", DEFAULT_MAX_ERRORS)),
            max_rejected_recipients=int(env.get("MAILPIPE_MAX_REJECTED_RECIPIENTS", DEFAULT_MAX_REJECTED)),
            data_memory=int(env.get("MAILPIPE_SMTP_DATA_MEMORY", DEFAULT_DATA_MEMORY)),
            rejected_recipients_window=float(env.get("MAILPIPE_REJECTED_RECIPIENTS_WINDOW", DEFAULT_WINDOW)),
            rspamd_url=env.get("MAILPIPE_RSPAMD_URL") or None,
            rspamd_timeout=float(env.get("MAILPIPE_RSPAMD_TIMEOUT", DEFAULT_RSPAMD_TIMEOUT)),
            dnsbl_zones=zones_from_env(env.get(DNSBL_ZONES_ENV, "")),
            dnsbl_exempt=exempt_from_env(env, DNSBL_EXEMPT_ENV),
            authenticate_inbound=env.get("MAILPIPE_INBOUND_AUTH", "on").lower() not in ("off", "0", "false"),
        )
