"""The access gateway: IMAP and POP3 listeners over the mail store, configured from the environment.

`python -m mailpipe_gateway access` runs this on ECS (ports 143/993 and 110/995); the dev stack builds
the same servers on its own ports. Without a certificate it refuses to start: passwords
never cross the network in clear text.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from mailpipe import aws
from mailpipe.auth.throttle import AuthThrottle
from mailpipe.changes.feed import ChangeFeed
from mailpipe.config import Resources
from mailpipe.directory import Directory
from mailpipe.store import MailMemory, MailStore
from mailpipe.store.locks import Leases
from mailpipe_gateway.connection_limits import (
    DEFAULT_EXEMPT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    ConnectionLimiter,
    exempt_from_env,
)
from mailpipe_gateway.imap.server import IMAPServer
from mailpipe_gateway.imap.state import IMAPContext
from mailpipe_gateway.pop3.server import POP3Server
from mailpipe_gateway.pop3.session import POP3Context
from mailpipe_gateway.tls import certificate_from_env, server_context

Runner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class AccessSettings:
    host: str = "0.0.0.0"
    imap_port: int | None = 143
    imaps_port: int | None = 993
    pop3_port: int | None = 110
    pop3s_port: int | None = 995
    hostname: str = "localhost"
    # Per protocol (IMAP, POP3), each counting its plain and implicit-TLS ports together.
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    # Networks not counted per address; an empty MAILPIPE_LIMIT_EXEMPT exempts none.
    limit_exempt: tuple[str, ...] = DEFAULT_EXEMPT

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AccessSettings:
        env = os.environ if environ is None else environ

        def port(name: str, default: int) -> int | None:
            value = env.get(name, str(default)).strip()
            return int(value) if value else None  # an empty value turns the listener off

        return cls(
            host=env.get("MAILPIPE_ACCESS_HOST", "0.0.0.0"),
            imap_port=port("MAILPIPE_IMAP_PORT", 143),
            imaps_port=port("MAILPIPE_IMAPS_PORT", 993),
            pop3_port=port("MAILPIPE_POP3_PORT", 110),
            pop3s_port=port("MAILPIPE_POP3S_PORT", 995),
            hostname=env.get("MAILPIPE_HOSTNAME", "localhost"),
            max_connections=int(env.get("MAILPIPE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
            max_connections_per_ip=int(
                env.get("MAILPIPE_MAX_CONNECTIONS_PER_IP", DEFAULT_MAX_CONNECTIONS_PER_IP)
            ),
            limit_exempt=exempt_from_env(env),
        )

    def limiter(self) -> ConnectionLimiter:
        """A fresh limiter with these limits (one per protocol)."""
        return ConnectionLimiter(self.max_connections, self.max_connections_per_ip, self.limit_exempt)


def tls_from_env(environ: dict[str, str] | None = None) -> ssl.SSLContext:
    """The server certificate from the environment (see tls.certificate_from_env); required here."""
    files = certificate_from_env(environ)
    if files is None:
        raise ValueError(
            "the access gateway needs a certificate: MAILPIPE_TLS_CERT/KEY or MAILPIPE_TLS_CERT_PEM/KEY_PEM"
        )
    return server_context(*files)


@dataclass
class AccessParts:
    """What IMAP and POP3 sessions share in one process."""

    directory: Directory
    store: MailStore
    memory: MailMemory  # what the process knows of the store, kept current by the change feed
    leases: Leases
    throttle: AuthThrottle
    # One per process, shared by its IMAP sessions; not started here (see change_feed).
    changes: ChangeFeed | None = None

    @classmethod
    def from_resources(cls, resources: Resources, changes: ChangeFeed | None = None) -> AccessParts:
        table = aws.table(resources.mailbox_table)
        store = MailStore(table, aws.client("s3"), resources.mail_bucket)
        return cls(
            directory=Directory(aws.table(resources.directory_table)),
            store=store,
            memory=MailMemory(store),
            leases=Leases(table),
            throttle=AuthThrottle(),
            changes=changes,
        )

    def __post_init__(self) -> None:
        if self.changes is not None:
            # Memory is trusted while the feed is healthy (it says so when it starts).
            self.memory.follow(self.changes)

    def close(self) -> None:
        """The servers on these parts have stopped: the feed (which may outlive them, as the dev
        stack's does) lets go of this memory, and the bodies EXPUNGE left to delete are deleted."""
        if self.changes is not None:
            self.memory.unfollow(self.changes)
        # Bodies of expunged messages still waiting: deleted now (if S3 fails, pruning will).
        self.store.finish_body_deletes()


def change_feed(resources: Resources) -> ChangeFeed | None:
    """The process's change feed on the resources' changes topic (MAILPIPE_CHANGES_TOPIC_ARN), not
    yet started; None without one. Its owner starts it before the listeners open and closes it
    after they stop (close deletes its queue and subscription)."""
    if not resources.changes_topic_arn:
        return None
    return ChangeFeed(aws.long_poll_client("sqs"), aws.client("sns"), resources.changes_topic_arn)


def access_server(
    protocol: Literal["imap", "pop3"],
    parts: AccessParts,
    tls: ssl.SSLContext,
    run: Runner,
    *,
    host: str,
    port: int | None,
    hostname: str,
    implicit_tls_port: int | None = None,
    plaintext_loopback: bool = False,
    limiter: ConnectionLimiter | None = None,
) -> IMAPServer | POP3Server:
    """An IMAP or POP3 server on the shared parts (a port set to None is not opened).

    Without `limiter` it has one with the default limits, as the SMTP gateway does.
    """
    common: dict[str, Any] = {
        "directory": parts.directory,
        "store": parts.store,
        "throttle": parts.throttle,
        "hostname": hostname,
        "tls_context": tls,
        "run": run,
        "plaintext_loopback": plaintext_loopback,
    }
    if protocol == "imap":
        context = IMAPContext(memory=parts.memory, changes=parts.changes, **common)
        return IMAPServer(context, host, port, implicit_tls_port=implicit_tls_port, limiter=limiter)
    return POP3Server(
        POP3Context(memory=parts.memory, leases=parts.leases, **common),
        host,
        port,
        implicit_tls_port=implicit_tls_port,
        limiter=limiter,
    )


def access_servers(
    settings: AccessSettings, parts: AccessParts, tls: ssl.SSLContext, run: Runner
) -> list[Any]:
    """The listeners the settings ask for (a port set to None is not opened)."""
    servers: list[Any] = []
    for protocol, plain, implicit in (
        ("imap", settings.imap_port, settings.imaps_port),
        ("pop3", settings.pop3_port, settings.pop3s_port),
    ):
        if plain is None and implicit is None:
            continue
        servers.append(
            access_server(
                protocol,
                parts,
                tls,
                run,
                host=settings.host,
                port=plain,
                hostname=settings.hostname,
                implicit_tls_port=implicit,
                limiter=settings.limiter(),
            )
        )
    return servers
