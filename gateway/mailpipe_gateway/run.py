"""The gateways as processes (the container's commands): configured from the environment, drained on SIGTERM.

`python -m mailpipe_gateway smtp` runs the SMTP gateway (25, and submission on 587/465 when
their ports are set); `python -m mailpipe_gateway access` runs IMAP and POP3.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from mailpipe import aws, heap
from mailpipe.auth.throttle import AuthThrottle
from mailpipe.config import Resources
from mailpipe.services import directory, quotas, spool
from mailpipe_gateway.access import AccessParts, AccessSettings, access_servers, change_feed, tls_from_env
from mailpipe_gateway.listeners import executor_runner
from mailpipe_gateway.loop_watch import LoopWatch
from mailpipe_gateway.recipient_check import Lookup, directory_lookup, lambda_lookup
from mailpipe_gateway.smtp.app import build_smtp_gateway, build_submission_gateway
from mailpipe_gateway.smtp.settings import GatewaySettings

log = logging.getLogger("mailpipe")

# ECS sends SIGTERM and kills 30 s later: sessions in flight get this long to finish first.
SHUTDOWN_GRACE_SECONDS = 25


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_smtp_gateway() -> None:
    settings = GatewaySettings.from_env()
    lookup: Lookup
    if settings.validate_function:
        lookup = lambda_lookup(aws.client("lambda"), settings.validate_function)
    else:
        # No function to invoke (a bench against moto, say): the function's check, in-process.
        lookup = directory_lookup(directory(), quotas(read_only=True))

    async def serve() -> None:
        watch = LoopWatch.from_env()
        await watch.start()
        executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mailpipe-io")
        gateways = [build_smtp_gateway(settings, spool(), lookup, executor)]
        throttle = AuthThrottle()  # 587 and 465 count failed logins together
        # Submission listeners, when their ports are set: 587 (STARTTLS) and 465 (implicit TLS).
        for variable, implicit_tls in (
            ("MAILPIPE_SUBMISSION_PORT", False),
            ("MAILPIPE_SUBMISSIONS_PORT", True),
        ):
            if os.environ.get(variable):
                gateways.append(
                    build_submission_gateway(
                        replace(settings, port=int(os.environ[variable])),
                        spool(),
                        lookup,
                        directory(),
                        executor,
                        implicit_tls=implicit_tls,
                        throttle=throttle,
                    )
                )
        for gateway in gateways:
            await gateway.start()
            log.info("SMTP listener on %s:%d", settings.host, gateway.port)
        heap.settle()  # start-up's objects are not walked by every full collection from now on
        await _until_stopped()
        await asyncio.gather(*(gateway.stop(grace=SHUTDOWN_GRACE_SECONDS) for gateway in gateways))
        executor.shutdown(wait=False, cancel_futures=True)
        await watch.stop()

    asyncio.run(serve())


def run_access_gateway() -> None:
    settings = AccessSettings.from_env()
    tls = tls_from_env()
    resources = Resources.from_env()
    parts = AccessParts.from_resources(resources, changes=change_feed(resources))

    async def serve() -> None:
        watch = LoopWatch.from_env()
        await watch.start()
        executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mailpipe-io")
        if parts.changes is not None:
            # Subscribed before the first session: a change committed after this is heard of.
            await asyncio.to_thread(parts.changes.start)
        servers = access_servers(settings, parts, tls, executor_runner(executor))
        for server in servers:
            await server.start()
            log.info("%s on %s:%s", type(server).__name__, settings.host, server.ports)
        heap.settle()  # start-up's objects are not walked by every full collection from now on
        await _until_stopped()
        for server in servers:
            await server.stop()
        await asyncio.to_thread(parts.close)  # deletes the bodies EXPUNGE left waiting: S3 requests
        if parts.changes is not None:
            await asyncio.to_thread(parts.changes.close)  # its queue and subscription go with it
        executor.shutdown(wait=False, cancel_futures=True)
        await watch.stop()

    asyncio.run(serve())
