"""The core's objects wired to the resources named in the environment, built once per process."""

from __future__ import annotations

from functools import lru_cache

from mailpipe import aws
from mailpipe.config import Resources
from mailpipe.directory import Directory
from mailpipe.inbound import InboundDelivery
from mailpipe.outbound.queue import OutboundQueue
from mailpipe.spool import Spool
from mailpipe.store import MailStore


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
def spool() -> Spool:
    res = resources()
    return Spool(aws.client("s3"), aws.client("sqs"), res.mail_bucket, res.inbound_queue_url)


@lru_cache(maxsize=1)
def outbound_queue() -> OutboundQueue | None:
    url = resources().outbound_queue_url
    return OutboundQueue(aws.client("sqs"), url) if url else None


@lru_cache(maxsize=1)
def inbound_delivery() -> InboundDelivery:
    return InboundDelivery(spool(), directory(), mail_store(), outbound_queue())
