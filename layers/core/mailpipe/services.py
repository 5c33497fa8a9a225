"""The core's objects wired to the resources named in the environment, built once per process."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from mailpipe import aws, dns_resolver
from mailpipe.auth.stored_throttle import StoredThrottle
from mailpipe.auth.tokens import SessionTokens
from mailpipe.changes.relay import Relay
from mailpipe.config import (
    ENV_HOSTNAME,
    ENV_OUTBOUND_QUEUE_URL,
    ENV_OUTBOUND_TABLE,
    ENV_PUSH_ENDPOINT,
    ENV_RETRY_SCHEDULE,
    ENV_SES_CONFIGURATION_SET,
    ENV_TRANSPORTS,
    ConfigError,
    Resources,
    jmap_public_urls,
)
from mailpipe.directory import Directory
from mailpipe.dkim_signing.signer import MessageSigner
from mailpipe.dkim_signing.store import KeyStore
from mailpipe.inbound import InboundDelivery
from mailpipe.jmap.auth import JmapAuth
from mailpipe.jmap.blobs import Uploads
from mailpipe.jmap.downloads import BucketDownloads
from mailpipe.jmap.http import JmapHttp
from mailpipe.jmap.outbox import Outbox
from mailpipe.jmap.push import PushConnections, Pusher
from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
from mailpipe.outbound.mta_sts import MtaSts
from mailpipe.outbound.queue import OutboundQueue
from mailpipe.outbound.reports import DsnReporter
from mailpipe.outbound.schedule import RetrySchedule
from mailpipe.outbound.ses_events import SesEvents
from mailpipe.outbound.smtp_client import DeliveryOptions
from mailpipe.outbound.state import QueueState
from mailpipe.outbound.suppression import SuppressionList
from mailpipe.outbound.transport_map import TransportMap
from mailpipe.poison import PoisonReports
from mailpipe.quota import Quotas
from mailpipe.redelivery import Backoff, RedeliveringBatchProcessor, Redelivery
from mailpipe.spool import Spool
from mailpipe.store import MailStore
from mailpipe.store.pruning import Pruner, PruneReport, everyone


@lru_cache(maxsize=1)
def resources() -> Resources:
    return Resources.from_env()


@lru_cache(maxsize=1)
def directory() -> Directory:
    return Directory(aws.table(resources().directory_table))


@lru_cache(maxsize=1)
def mail_store() -> MailStore:
    return MailStore(aws.table(resources().mailbox_table), aws.client("s3"), resources().mail_bucket)


@lru_cache(maxsize=1)
def mailbox_relay() -> Relay:
    topic_arn = resources().changes_topic_arn
    if not topic_arn:
        raise ConfigError("missing environment: MAILPIPE_CHANGES_TOPIC_ARN")
    return Relay(aws.client("sns"), topic_arn, jmap_pusher())


@lru_cache(maxsize=2)
def quotas(*, read_only: bool = False) -> Quotas:
    """`read_only` for callers whose role may only read the mail store (the recipient check)."""
    return Quotas(directory(), mail_store(), read_only=read_only)


def prune(owner: str | None = None, **options: Any) -> PruneReport:
    """One pruning run (store/pruning.py) over `owner`'s mailboxes, or everyone's."""
    owners = [owner] if owner else everyone([user.address for user in directory().list_users()])
    store = mail_store()
    return Pruner(store.table, delete_bodies=store.delete_bodies_now, **options).run(owners)


@lru_cache(maxsize=1)
def spool() -> Spool:
    res = resources()
    return Spool(aws.client("s3"), aws.client("sqs"), res.mail_bucket, res.inbound_queue_url)


@lru_cache(maxsize=1)
def outbound_queue() -> OutboundQueue | None:
    url = resources().outbound_queue_url
    return OutboundQueue(aws.client("sqs"), url) if url else None


@lru_cache(maxsize=1)
def inbound_delivery() -> InboundDelivery:
    return InboundDelivery(spool(), directory(), mail_store(), outbound_queue(), poison_reports(), quotas())


@lru_cache(maxsize=1)
def poison_reports() -> PoisonReports:
    return PoisonReports(spool(), directory(), os.environ.get(ENV_HOSTNAME, "localhost"))


@lru_cache(maxsize=1)
def outbound_delivery() -> OutboundDelivery:
    """The delivery function's engine, configured from the environment (config.py names the variables)."""
    env = os.environ
    queue = outbound_queue()
    if queue is None or not env.get(ENV_OUTBOUND_TABLE):
        raise ConfigError(f"the outbound function needs {ENV_OUTBOUND_QUEUE_URL} and {ENV_OUTBOUND_TABLE}")
    schedule = RetrySchedule()
    if env.get(ENV_RETRY_SCHEDULE):
        intervals, give_up, warn = env[ENV_RETRY_SCHEDULE].split(";")
        schedule = RetrySchedule.from_text(intervals, give_up, warn)
    resolver = dns_resolver.resolver(env)
    config = OutboundConfig(
        hostname=env.get(ENV_HOSTNAME, "localhost"),
        transports=TransportMap.from_text(env.get(ENV_TRANSPORTS, "")),
        schedule=schedule,
        # Shorter than RFC 5321's minutes-long waits: a function has 150 s (template.yaml) and must
        # record what happened before it ends; a slow server is simply retried later.
        options=DeliveryOptions(timeout=60, connect_timeout=20, budget=120),
        resolver=resolver,
        ses_client=aws.client("sesv2"),
        ses_configuration_set=env.get(ENV_SES_CONFIGURATION_SET) or None,
        sign=MessageSigner(KeyStore(aws.client("secretsmanager"))).sign,
        mta_sts=MtaSts.from_env(resolver, env),
    )
    table = aws.table(env[ENV_OUTBOUND_TABLE])
    return OutboundDelivery(spool(), QueueState(table), queue, config, suppressions=SuppressionList(table))


@lru_cache(maxsize=1)
def ses_events() -> SesEvents:
    """The ses-events function's engine: SES bounces and complaints into the queue state."""
    env = os.environ
    if not env.get(ENV_OUTBOUND_TABLE):
        raise ConfigError(f"the ses-events function needs {ENV_OUTBOUND_TABLE}")
    table = aws.table(env[ENV_OUTBOUND_TABLE])
    reports = DsnReporter(spool(), env.get(ENV_HOSTNAME, "localhost"))
    return SesEvents(QueueState(table), SuppressionList(table), reports)


@lru_cache(maxsize=1)
def suppressions() -> SuppressionList:
    """`mailpipe queue suppressed|unsuppress`: the addresses mail is no longer sent to."""
    if not os.environ.get(ENV_OUTBOUND_TABLE):
        raise ConfigError(f"set {ENV_OUTBOUND_TABLE} (and AWS_ENDPOINT_URL for the dev stack)")
    return SuppressionList(aws.table(os.environ[ENV_OUTBOUND_TABLE]))


def sqs_batch_processor() -> RedeliveringBatchProcessor:
    """Powertools' partial-batch processor for an SQS-triggered function, with the growing back-off."""
    return RedeliveringBatchProcessor(lambda: Redelivery(aws.client("sqs"), Backoff.from_env()))


@lru_cache(maxsize=1)
def jmap_http() -> JmapHttp:
    res = resources()
    # Sending goes through the spool, as SMTP submission does; submissions are recorded in the
    # mailbox table beside the user's mailboxes; uploads are kept in the mail bucket.
    outbox = Outbox(
        directory(), spool(), aws.table(res.mailbox_table), os.environ.get(ENV_HOSTNAME, "localhost")
    )
    uploads = Uploads(aws.client("s3"), res.mail_bucket)
    # Large downloads by presigned URL, large MIME parts decoded into the bucket (jmap/downloads.py).
    downloads = BucketDownloads(aws.client("s3"), res.mail_bucket)
    public_url, websocket_url = jmap_public_urls(os.environ)
    table_name = res.jmap_table
    if not table_name:  # Basic only, throttled in memory
        return JmapHttp(
            directory(),
            mail_store(),
            outbox=outbox,
            uploads=uploads,
            downloads=downloads,
            public_url=public_url,
        )
    table = aws.table(table_name)
    auth = JmapAuth(directory(), StoredThrottle(table), SessionTokens(table, directory()))
    return JmapHttp(
        directory(),
        mail_store(),
        auth=auth,
        connections=PushConnections(table),
        websocket_url=websocket_url,
        public_url=public_url,
        outbox=outbox,
        uploads=uploads,
        downloads=downloads,
    )


def jmap_pusher() -> Pusher | None:
    """StateChange to the owners' WebSocket connections, if the JMAP table and the WebSocket API's
    management endpoint are configured (read each time: the dev stack sets it once it serves)."""
    table_name = resources().jmap_table
    if not table_name:
        return None
    return Pusher(PushConnections(aws.table(table_name)), mail_store(), _push_management)


def _push_management() -> Any | None:
    endpoint = os.environ.get(ENV_PUSH_ENDPOINT)
    return aws.client("apigatewaymanagementapi", endpoint) if endpoint else None
