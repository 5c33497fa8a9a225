"""Assembling the SMTP gateway from its parts; shared by the container (run.py) and the dev stack."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Executor

import dns.asyncresolver

from mailpipe.auth.throttle import AuthThrottle
from mailpipe.config import ENV_DNS_SERVER
from mailpipe.directory import Directory
from mailpipe.dns_resolver import async_resolver
from mailpipe.mailauth.authenticate import Authenticator
from mailpipe.spool import Spool
from mailpipe_gateway.auth.login import Logins
from mailpipe_gateway.listeners import executor_runner
from mailpipe_gateway.recipient_check import Lookup, RecipientChecker
from mailpipe_gateway.smtp.authentication import InboundAuthentication
from mailpipe_gateway.smtp.dnsbl import Blocklists
from mailpipe_gateway.smtp.handler import InboundHandler
from mailpipe_gateway.smtp.harvest import RejectionLimiter
from mailpipe_gateway.smtp.rspamd_client import RspamdClient
from mailpipe_gateway.smtp.server import SMTPGateway
from mailpipe_gateway.smtp.settings import GatewaySettings
from mailpipe_gateway.smtp.spam_filter import SpamFilter
from mailpipe_gateway.smtp.submission import SubmissionHandler, SubmissionSMTP
from mailpipe_gateway.tls import server_context


def build_smtp_gateway(
    settings: GatewaySettings, spool: Spool, lookup: Lookup, executor: Executor | None = None
) -> SMTPGateway:
    handler = InboundHandler(
        spool,
        RecipientChecker(lookup, executor),
        hostname=settings.hostname,
        executor=executor,
        rejections=rejection_limiter(settings),
        spam_filter=spam_filter(settings),
        blocklists=Blocklists(settings.dnsbl_zones, async_resolver(), settings.dnsbl_exempt)
        if settings.dnsbl_zones
        else None,
        authentication=(
            InboundAuthentication(
                Authenticator(inbound_resolver(settings), executor), settings.hostname, executor
            )
            if settings.authenticate_inbound
            else None
        ),
    )
    tls = (
        server_context(settings.tls_cert, settings.tls_key)
        if settings.tls_cert and settings.tls_key
        else None
    )
    return SMTPGateway(handler, settings, tls)


def spam_filter(settings: GatewaySettings) -> SpamFilter | None:
    if not settings.rspamd_url:
        return None
    return SpamFilter(RspamdClient(settings.rspamd_url, settings.rspamd_timeout), settings.hostname)


def inbound_resolver(settings: GatewaySettings) -> dns.asyncresolver.Resolver:
    return async_resolver({ENV_DNS_SERVER: settings.dns_server} if settings.dns_server else None)


def rejection_limiter(settings: GatewaySettings) -> RejectionLimiter:
    return RejectionLimiter(
        settings.max_rejected_recipients, settings.rejected_recipients_window, settings.limit_exempt
    )


def build_submission_gateway(
    settings: GatewaySettings,
    spool: Spool,
    lookup: Lookup,
    directory: Directory,
    executor: Executor | None = None,
    *,
    implicit_tls: bool = False,
    plaintext_loopback: bool = False,
    throttle: AuthThrottle | None = None,
) -> SMTPGateway:
    """Port 587 (or 465 with `implicit_tls`): AUTH against the directory, then mail to anywhere."""
    logins = Logins(directory, throttle or AuthThrottle(), executor_runner(executor))

    async def owned_addresses(user: str) -> set[str]:
        return await asyncio.get_running_loop().run_in_executor(executor, directory.owned_addresses, user)

    handler = SubmissionHandler(
        spool,
        RecipientChecker(lookup, executor),
        hostname=settings.hostname,
        executor=executor,
        owned_addresses=owned_addresses,
        rejections=rejection_limiter(settings),
        spam_filter=spam_filter(settings),
    )
    tls = (
        server_context(settings.tls_cert, settings.tls_key)
        if settings.tls_cert and settings.tls_key
        else None
    )
    protocol = functools.partial(
        SubmissionSMTP,
        logins=logins,
        plaintext_loopback=plaintext_loopback,
        implicit_tls=implicit_tls,
    )
    return SMTPGateway(handler, settings, tls, protocol=protocol, implicit_tls=implicit_tls)
