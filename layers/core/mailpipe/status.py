"""What `mailpipe status` reports: which mail ports answer on a host, how deep the queues and
their dead-letter queues are, and how many domains and users the directory holds.

Everything is read, nothing changed. Queues are found from the environment the CLI already
needs (the inbound and outbound queue URLs), their dead-letter queues from their RedrivePolicy,
and the SES events queue, which no variable names, by its name beside the inbound queue's (the
template's physical names share the stack's prefix, on AWS as in the dev stack).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from mailpipe.directory import Directory

# What listens where: the dev stack's defaults (`mailpipe dev`) and the standard ports.
DEV_PORTS = {"smtp": 2525, "submission": 2587, "imap": 1143, "pop3": 1110}
STANDARD_PORTS = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
}
IMPLICIT_TLS = {"submissions", "imaps", "pop3s"}  # silent until the client's TLS hello
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int
    greeting: str | None  # the server's first line; "" if it accepted and said nothing; None: closed


@dataclass(frozen=True)
class QueueDepth:
    name: str
    waiting: int  # visible: ready for a consumer
    in_flight: int  # received, not yet deleted
    delayed: int
    dead_letters: int | None  # in its dead-letter queue; None if it has none


def probe(name: str, host: str, port: int, timeout: float = PROBE_TIMEOUT) -> Listener:
    """Connect, and read the greeting if the protocol sends one first (SMTP, IMAP, POP3 do)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if name in IMPLICIT_TLS:
                return Listener(name, host, port, "")
            try:
                first = conn.recv(512)
            except TimeoutError:
                first = b""
    except OSError:
        return Listener(name, host, port, None)
    return Listener(name, host, port, first.split(b"\r\n", 1)[0].decode("latin-1").strip())


def queue_depth(sqs: Any, name: str, url: str) -> QueueDepth:
    attributes = _attributes(sqs, url, ["All"])
    dead_letters = None
    policy = attributes.get("RedrivePolicy")
    if policy:
        target = json.loads(policy)["deadLetterTargetArn"]
        dlq_url = sqs.get_queue_url(QueueName=target.rsplit(":", 1)[1])["QueueUrl"]
        counts = _attributes(
            sqs, dlq_url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )
        dead_letters = int(counts.get("ApproximateNumberOfMessages", 0)) + int(
            counts.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
    return QueueDepth(
        name,
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        dead_letters,
    )


def ses_events_queue(sqs: Any, inbound_url: str) -> str | None:
    """The SES events queue of the same stack as the inbound queue, if the stack has one."""
    inbound = inbound_url.rstrip("/").rsplit("/", 1)[1]
    for ours, theirs in (("InboundQueue", "SesEventQueue"), ("inbound-queue", "ses-event-queue")):
        if ours in inbound:
            prefix = inbound[: inbound.index(ours)] + theirs
            urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
            return urls[0] if urls else None
    return None


@dataclass(frozen=True)
class DirectoryCounts:
    domains: int
    users: int
    disabled: int
    aliases: int


def directory_counts(directory: Directory) -> DirectoryCounts:
    users = directory.list_users()
    return DirectoryCounts(
        len(directory.list_domains()),
        len(users),
        sum(u.disabled for u in users),
        len(directory.list_aliases()),
    )


def _attributes(sqs: Any, url: str, names: list[str]) -> dict[str, str]:
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"])
