"""Give messages stored before headers were kept in the index their `header` attribute.

`mailpipe store backfill-headers` runs this. It finds live message items without `header`,
reads each one's header block from S3 (the ranged GET header fetches used to make) and writes it
with a conditional UpdateItem: only if the item still exists, is not a tombstone and still has no
header. So it is safe to run twice, or twice at once, or while mail is delivered and expunged;
messages whose header compresses beyond MAX_PACKED_HEADER are left to S3, as new ones are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from mailpipe.dynamo import query_all
from mailpipe.store.headers import header_end, pack_header
from mailpipe.store.model import MAILBOX_PREFIX, UID_PREFIX, messages_pk, owner_pk, unpack_summary

THREADS = 8  # S3 reads and writes in flight: the work is latency, not CPU
Outcome = Literal["written", "too_large", "gone"]
Progress = Callable[[int, int], None]  # (items done, items found at the start)


@dataclass
class BackfillReport:
    found: int = 0  # message items without a header when counted at the start
    written: int = 0
    too_large: int = 0  # left to S3
    gone: int = 0  # expunged or given a header by someone else meanwhile

    @property
    def done(self) -> int:
        return self.written + self.too_large + self.gone


class HeaderBackfill:
    def __init__(self, table: Any, s3: Any, bucket: str) -> None:
        self._table = table
        self._s3 = s3
        self._bucket = bucket

    def run(self, owner: str | None = None, progress: Progress | None = None) -> BackfillReport:
        """Backfill every message (of `owner`'s mailboxes, if given), telling `progress` as it goes."""
        report = BackfillReport()
        for read, kwargs in self._reads(owner):
            report.found += sum(page["Count"] for page in _paginate(read, {**kwargs, "Select": "COUNT"}))
        if progress:
            progress(0, report.found)
        with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="backfill") as pool:
            for read, kwargs in self._reads(owner):
                projected = {**kwargs, "ProjectionExpression": "pk, sk, blob_key, summary"}
                for page in _paginate(read, projected):
                    for outcome in pool.map(self._backfill, page["Items"]):
                        setattr(report, outcome, getattr(report, outcome) + 1)
                    if progress:
                        progress(report.done, max(report.found, report.done))
        return report

    def _reads(self, owner: str | None) -> Iterator[tuple[Callable[..., Any], dict[str, Any]]]:
        """The Scan, or the Query of each of `owner`'s mailboxes, that finds live message items
        without a header (filtered after the read: DynamoDB has no index of what is missing)."""
        wanted = {
            "FilterExpression": Attr("sk").begins_with(UID_PREFIX)
            & Attr("header").not_exists()
            & Attr("expunged").not_exists()
        }
        if owner is None:
            yield self._table.scan, wanted
            return
        mailboxes = query_all(
            self._table, Key("pk").eq(owner_pk(owner)) & Key("sk").begins_with(MAILBOX_PREFIX)
        )
        for mailbox in mailboxes:
            messages = Key("pk").eq(messages_pk(mailbox["mailbox_id"])) & Key("sk").begins_with(UID_PREFIX)
            yield self._table.query, {**wanted, "KeyConditionExpression": messages}

    def _backfill(self, item: dict[str, Any]) -> Outcome:
        summary = unpack_summary(item.get("summary"))
        try:
            if "body_start" in summary:
                end = int(summary["body_start"])
                header = self._get(item["blob_key"], f"bytes=0-{end - 1}") if end > 0 else b""
            else:  # a summary too large to store has no offsets: scan the body
                raw = self._get(item["blob_key"])
                header = raw[: header_end(raw)]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return "gone"
            raise
        packed = pack_header(header)
        if packed is None:
            return "too_large"
        try:
            self._table.update_item(
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #h = :h",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#h)"
                " AND attribute_not_exists(expunged)",
                ExpressionAttributeNames={"#h": "header"},
                ExpressionAttributeValues={":h": packed},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return "gone"
            raise
        return "written"

    def _get(self, key: str, byte_range: str | None = None) -> bytes:
        extra = {"Range": byte_range} if byte_range else {}
        return bytes(self._s3.get_object(Bucket=self._bucket, Key=key, **extra)["Body"].read())


def _paginate(operation: Callable[..., Any], kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each page's response, to the last."""
    while True:
        response = operation(**kwargs)
        yield response
        if "LastEvaluatedKey" not in response:
            return
        kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}
