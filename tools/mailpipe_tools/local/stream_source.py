"""Lambda's DynamoDB stream event source mapping, locally: read a table's stream, call the handler.

As on AWS: the stream is read shard by shard from the starting position (LATEST: what is written
from now on), records that pass the mapping's filter (FilterCriteria) are handed to the handler in
batches of at most `batch_size`, in order, and a batch the handler raised on is tried again before
the shard moves on; after `max_attempts` it is logged and skipped (AWS would describe it on the
on-failure destination). moto has no long poll for streams, so the shards are read every
`interval` seconds (100-200 ms keeps a change's trip to an IDLE-ing client well under a second).

GetRecords is read as the JSON it is, not through botocore's parser: the stream's records are
already in the shape Lambda hands on (DynamoDB JSON, binary values in base64, as on AWS), and
botocore turned each record's images into Python values (base64 decoded, dates parsed) only for
them to be turned back. In the `mailpipe dev` process that parsing held the GIL 11% of the time
under bench/imap.py (py-spy --gil, 2026-12-05): time the IMAP gateway's event loop, in the same
process, waited. The shard list and iterators still go through botocore.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from mailpipe_tools.local import event_pattern
from mailpipe_tools.local.functions import LocalFunction, LocalLambdaContext

log = logging.getLogger(__name__)

# How often the shard list is read again (new shards appear when DynamoDB splits or rolls a shard).
DESCRIBE_EVERY_SECONDS = 5.0
GET_RECORDS_TARGET = "DynamoDBStreams_20120810.GetRecords"


class StreamReadError(RuntimeError):
    """GetRecords was answered with an error (an expired iterator, a trimmed shard, ...)."""


class StreamPoller:
    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        function: LocalFunction,
        *,
        batch_size: int = 100,
        starting_position: str = "LATEST",
        filters: tuple[Mapping[str, Any], ...] = (),
        interval: float = 0.15,
        max_attempts: int = 3,
        region: str = "us-east-1",
    ) -> None:
        for pattern in filters:
            event_pattern.check(pattern)
        self._streams = streams
        self._stream_arn = stream_arn
        self._function = function
        self._batch_size = batch_size
        self._starting_position = starting_position
        self._filters = filters
        self._interval = interval
        self._max_attempts = max_attempts
        self._region = region
        # shard id -> its next iterator (None once a closed shard is read to its end)
        self._iterators: dict[str, str | None] = {}
        # shard id -> the sequence number of the last record handed on (to renew a lost iterator)
        self._last_sequence: dict[str, str] = {}
        self._described_at: float | None = None
        self._connection: http.client.HTTPConnection | None = None  # kept for GetRecords
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{function.logical_id}", daemon=True)

    def start(self) -> None:
        """Reads the shard list and positions the iterators before returning: a write made after
        start() returned reaches the handler."""
        self._describe(first=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._connection is not None:
            self._connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.poll_once()
            except Exception:
                log.exception("reading the stream %s failed", self._stream_arn)
                busy = False
                self._stop.wait(1)
            if not busy:
                self._stop.wait(self._interval)

    def poll_once(self) -> bool:
        """Reads every open shard once and runs the handler on what passed the filter; True if a
        shard may have more to read at once."""
        now = time.monotonic()
        if self._described_at is None or now - self._described_at >= DESCRIBE_EVERY_SECONDS:
            self._describe(first=False)
        busy = False
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None or self._stop.is_set():
                continue
            try:
                page = self._get_records(iterator)
            except Exception as exc:
                # An expired or forgotten iterator: start again after the last record handed on.
                log.info("stream shard %s: renewing its iterator (%s)", shard_id, exc)
                self._iterators[shard_id] = self._renewed(shard_id)
                continue
            records = page.get("Records", [])
            if records:
                self._deliver(records)
                self._last_sequence[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                busy = busy or len(records) >= 1000
            self._iterators[shard_id] = page.get("NextShardIterator")
        return busy

    def _get_records(self, iterator: str) -> dict[str, Any]:
        """GetRecords' answer, decoded from its JSON only; a request botocore would sign alike."""
        endpoint = urlsplit(self._streams.meta.endpoint_url)
        request = AWSRequest(
            method="POST",
            url=f"{endpoint.scheme}://{endpoint.netloc}/",
            data=json.dumps({"ShardIterator": iterator, "Limit": 1000}).encode(),
            headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": GET_RECORDS_TARGET},
        )
        # botocore offers no public handle on a client's credentials.
        credentials = self._streams._request_signer._credentials
        SigV4Auth(credentials, "dynamodb", self._streams.meta.region_name).add_auth(request)
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=30)
            try:
                self._connection.request("POST", "/", body=request.body, headers=dict(request.headers))
                response = self._connection.getresponse()
                answer = response.read()
                break
            except (OSError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        if response.status != 200:
            # moto answers an iterator it forgot with a 500 and a page of text, not JSON.
            raise StreamReadError(f"GetRecords: {response.status} {answer[:200]!r}")
        page: dict[str, Any] = json.loads(answer)
        return page

    def _describe(self, first: bool) -> None:
        stream = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        self._described_at = time.monotonic()
        for shard in stream.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self._iterators:
                continue
            # Shards there at start begin at the starting position; a shard that appears later is
            # read from its beginning, or its first records would be lost.
            position = self._starting_position if first else "TRIM_HORIZON"
            self._iterators[shard_id] = self._streams.get_shard_iterator(
                StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType=position
            )["ShardIterator"]

    def _renewed(self, shard_id: str) -> str | None:
        last = self._last_sequence.get(shard_id)
        kwargs: dict[str, Any] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last}
            if last
            else {"ShardIteratorType": "LATEST"}
        )
        try:
            return self._streams.get_shard_iterator(StreamArn=self._stream_arn, ShardId=shard_id, **kwargs)[
                "ShardIterator"
            ]
        except Exception:
            log.exception("stream shard %s: cannot renew its iterator; it is no longer read", shard_id)
            return None

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        """Hands the records that pass the filter to the handler in batches, in order."""
        passed = [self._lambda_record(r) for r in records if self._passes(r)]
        for start in range(0, len(passed), self._batch_size):
            self._invoke_with_retries(passed[start : start + self._batch_size])

    def _invoke_with_retries(self, batch: list[dict[str, Any]]) -> bool:
        """True once the handler took the batch; False if it failed `max_attempts` times (the batch
        is then logged and skipped, as AWS would after its retries)."""
        for attempt in range(1, self._max_attempts + 1):
            context = LocalLambdaContext(self._function.name, self._function.timeout)
            try:
                with self._function.invocation:
                    self._function.handler({"Records": batch}, context)
                return True
            except Exception:
                log.exception(
                    "%s failed on %d stream records (attempt %d of %d)",
                    self._function.logical_id,
                    len(batch),
                    attempt,
                    self._max_attempts,
                )
                if self._stop.wait(0.2 * attempt):
                    break
        log.error(
            "%s: %d stream records skipped after %d attempts",
            self._function.logical_id,
            len(batch),
            self._max_attempts,
        )
        return False

    def _passes(self, record: Mapping[str, Any]) -> bool:
        return not self._filters or any(event_pattern.matches(p, record) for p in self._filters)

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as Lambda hands it: the stream's record plus its source ARN."""
        change = dict(record.get("dynamodb", {}))
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, float):  # the stream's JSON has fractions; Lambda's whole seconds
            change["ApproximateCreationDateTime"] = int(created)
        return {**record, "dynamodb": change, "eventSourceARN": self._stream_arn, "awsRegion": self._region}
