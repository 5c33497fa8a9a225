"""The SMTP gateway's settings, from the environment the ECS task definition (or `mailpipe dev`) sets."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mailpipe_gateway.connection_limits import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP
from mailpipe_gateway.tls import certificate_from_env

DEFAULT_MAX_MESSAGE_SIZE = 40 * 1024 * 1024


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
        )
