"""Lambda's SQS event source mapping, locally: poll a queue, call the handler with batches.

As on AWS: records the handler reports in `batchItemFailures` (or all of them, if
it raises) stay on the queue and come back after their visibility timeout; the
rest are deleted. The poller never changes a record's visibility itself, so one the
handler held back (ChangeMessageVisibility, mailpipe/redelivery.py) comes back when
the handler said. After `maxReceiveCount` receives SQS's redrive policy moves a
record to the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from mailpipe_tools.local.functions import LocalFunction, LocalLambdaContext

log = logging.getLogger(__name__)


@dataclass
class Poll:
    """One receive: the SQS messages (with receipt handles) and the ids the function failed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)


class SqsPoller:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        function: LocalFunction,
        *,
        batch_size: int = 10,
        wait_seconds: int = 1,
        retry_after: int | None = None,
        region: str = "us-east-1",
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._function = function
        self._batch_size = batch_size
        self._wait_seconds = wait_seconds
        # Stands in for the queue's visibility timeout (None keeps the queue's, as Lambda does):
        # the dev stack and tests shorten it so that a record whose batch crashed comes back in
        # seconds, not minutes. It is given at receive time, so the handler can still change it.
        self._retry_after = retry_after
        self._region = region
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poller-{function.logical_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._wait_seconds + 30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("polling %s failed", self._queue_url)
                self._stop.wait(1)

    def poll_once(self) -> Poll:
        """Receive one batch and run the handler on it."""
        receive: dict[str, Any] = {}
        if self._retry_after is not None:
            receive["VisibilityTimeout"] = self._retry_after
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=min(self._batch_size, 10),
            WaitTimeSeconds=self._wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            **receive,
        ).get("Messages", [])
        if not messages:
            return Poll()
        event = {"Records": [self._record(message) for message in messages]}
        failed = self._invoke(event)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return Poll(messages, failed)

    def _invoke(self, event: dict[str, Any]) -> set[str]:
        """Message ids the function did not process."""
        every_id = {record["messageId"] for record in event["Records"]}
        context = LocalLambdaContext(self._function.name, self._function.timeout)
        try:
            with self._function.invocation:
                response = self._function.handler(event, context)
        except Exception:
            log.exception("%s failed on a batch of %d", self._function.logical_id, len(every_id))
            return every_id
        failures = (response or {}).get("batchItemFailures", []) if isinstance(response, dict) else []
        return {f["itemIdentifier"] for f in failures} & every_id

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        body = message["Body"]
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": body,
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn,
            "awsRegion": self._region,
        }
