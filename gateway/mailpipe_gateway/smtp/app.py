"""Assembling the SMTP gateway from its parts; shared by `mailpipe gateway` and the dev stack."""

from __future__ import annotations

from concurrent.futures import Executor

from mailpipe.spool import Spool
from mailpipe_gateway.recipient_check import Lookup, RecipientChecker
from mailpipe_gateway.smtp.handler import InboundHandler
from mailpipe_gateway.smtp.server import SMTPGateway
from mailpipe_gateway.smtp.settings import GatewaySettings
from mailpipe_gateway.tls import server_context


def build_smtp_gateway(
    settings: GatewaySettings, spool: Spool, lookup: Lookup, executor: Executor | None = None
) -> SMTPGateway:
    handler = InboundHandler(
        spool, RecipientChecker(lookup, executor), hostname=settings.hostname, executor=executor
    )
    tls = (
        server_context(settings.tls_cert, settings.tls_key)
        if settings.tls_cert and settings.tls_key
        else None
    )
    return SMTPGateway(handler, settings, tls)
