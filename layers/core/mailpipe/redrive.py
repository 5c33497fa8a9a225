"""Putting dead-lettered envelopes back on their queue: `mailpipe queue redrive`.

A receive, send, delete loop rather than SQS's StartMessageMoveTask: it works on moto as on
AWS, and a message leaves the dead-letter queue only after its copy is on the source queue
(a failure in between leaves a duplicate, which the functions recognise, never a loss).
The copy is a new SQS message: its 14-day retention starts again.

Before sending, the envelope's spool object is touched (spool.py), so the lifecycle backstop
counts its age from the redrive: the object outlives the envelope that needs it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from mailpipe.redelivery import queue_url
from mailpipe.spool import Spool

log = logging.getLogger(__name__)

# Long enough to send and delete a batch; a message whose send failed is retried by the next run.
RECEIVE_VISIBILITY_SECONDS = 60


@dataclass
class RedriveResult:
    moved: int = 0
    failed: int = 0  # still in the dead-letter queue: sending or touching failed
    without_object: int = 0  # moved, but the spool has no object for them (they will fail again)


def dead_letter_queue_url(sqs: Any, source_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise ValueError(f"{source_url} has no dead-letter queue")
    return queue_url(sqs, json.loads(policy)["deadLetterTargetArn"])


def redrive(sqs: Any, source_url: str, spool: Spool) -> RedriveResult:
    """Move every message of the source queue's dead-letter queue back to the source queue."""
    dlq = dead_letter_queue_url(sqs, source_url)
    result = RedriveResult()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return result
        ready = []
        for message in messages:
            try:
                if not _touch(spool, message["Body"]):
                    result.without_object += 1
            except Exception:
                log.warning("could not touch the spool object of %s", message["MessageId"], exc_info=True)
                result.failed += 1
                continue
            ready.append(message)
        if not ready:
            continue
        entries = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                **({"MessageAttributes": m["MessageAttributes"]} if m.get("MessageAttributes") else {}),
            }
            for i, m in enumerate(ready)
        ]
        sent = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        done = [ready[int(entry["Id"])] for entry in sent.get("Successful", [])]
        result.failed += len(sent.get("Failed", []))
        if done:
            sqs.delete_message_batch(
                QueueUrl=dlq,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
            result.moved += len(done)


def _touch(spool: Spool, body: str) -> bool:
    """Touch the spool object the envelope (inbound or outbound, both carry s3_key) names."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    key = data.get("s3_key") if isinstance(data, dict) else None
    return isinstance(key, str) and spool.touch(key)
