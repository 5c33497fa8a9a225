"""Growing back-off for SQS records a function could not process yet.

Lambda's SQS event source leaves a failed record on the queue, and it comes back once its
visibility timeout ends: with the queue's 180 s, every record received during an outage of
S3 or DynamoDB would use up its receives in minutes and go to the dead-letter queue. Instead,
each failed record is hidden for a time that doubles with each receive (ApproximateReceiveCount)
up to a cap, so a queue's `maxReceiveCount` buys days of retries (`Backoff.window`).

A record received again (count > 1) is hidden *before* it is processed: if the function then
times out or dies, the record still comes back after the back-off rather than after the
queue's visibility timeout. Only a function that never starts (a broken deployment) falls back
to the queue's timeout; its records reach the dead-letter queue, which raises an alarm, and
`mailpipe queue redrive` puts them back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

log = logging.getLogger(__name__)

ENV_REDELIVERY_BACKOFF = "MAILPIPE_REDELIVERY_BACKOFF"  # "FIRST;CAP" in seconds, e.g. "60;39600"

# SQS refuses a visibility timeout that ends more than 12 hours after the message was received;
# 11 hours leaves room for the time the function spent before asking.
MAX_HOLD_SECONDS = 11 * 3600


@dataclass(frozen=True)
class Backoff:
    """How long a record is hidden after its n-th receive failed: `first` doubled per receive, capped."""

    first: int = 60
    cap: int = MAX_HOLD_SECONDS

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.cap <= MAX_HOLD_SECONDS:
            raise ValueError(f"back-off wants 0 <= first <= cap <= {MAX_HOLD_SECONDS}, got {self}")

    def delay(self, receive_count: int) -> int:
        exponent = min(max(receive_count, 1) - 1, 32)
        return min(self.first * 2**exponent, self.cap)

    def window(self, max_receives: int) -> int:
        """Seconds from a record's first receive until SQS moves it to the dead-letter queue."""
        return sum(self.delay(n) for n in range(1, max_receives + 1))

    @classmethod
    def from_text(cls, text: str) -> Backoff:
        first, _, cap = text.partition(";")
        return cls(int(first), int(cap or MAX_HOLD_SECONDS))

    @classmethod
    def from_env(cls) -> Backoff:
        text = os.environ.get(ENV_REDELIVERY_BACKOFF)
        return cls.from_text(text) if text else cls()


def queue_url(sqs: Any, queue_arn: str) -> str:
    """A queue's URL from its ARN, on the endpoint the client talks to (AWS or moto alike)."""
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return f"{sqs.meta.endpoint_url.rstrip('/')}/{account}/{name}"


def receive_count(record: dict[str, Any]) -> int:
    try:
        return int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


class Redelivery:
    def __init__(self, sqs: Any, backoff: Backoff) -> None:
        self._sqs = sqs
        self.backoff = backoff

    def hold(self, record: dict[str, Any]) -> bool:
        """Hide the record for its back-off; False if SQS would not (it then returns after the
        queue's visibility timeout, which is no worse than not asking)."""
        seconds = self.backoff.delay(receive_count(record))
        try:
            self._sqs.change_message_visibility(
                QueueUrl=queue_url(self._sqs, record["eventSourceARN"]),
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=seconds,
            )
        except Exception:
            log.warning("could not hold record %s for %d s", record.get("messageId"), seconds, exc_info=True)
            return False
        return True


class RedeliveringBatchProcessor(BatchProcessor):
    """Powertools' SQS BatchProcessor (partial batch failures) that also holds failed records back.

    `redelivery` is called once per batch, so a changed back-off setting applies at once.
    """

    def __init__(self, redelivery: Callable[[], Redelivery]) -> None:
        super().__init__(event_type=EventType.SQS)
        self._redelivery = redelivery
        self._current: Redelivery | None = None

    def _prepare(self) -> None:
        super()._prepare()
        self._current = self._redelivery()

    def _process_record(self, record: dict):  # type: ignore[no-untyped-def]
        redelivery = self._current or self._redelivery()
        held = receive_count(record) > 1 and redelivery.hold(record)
        result = super()._process_record(record)
        if result[0] == "fail" and not held:
            redelivery.hold(record)
        return result
