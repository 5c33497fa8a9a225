"""Each message's top-level header block, kept in its index item so header fetches read no S3.

Mail clients open a folder by fetching header fields of every message (Thunderbird's
BODY.PEEK[HEADER.FIELDS (...)], Apple Mail, mutt): one ranged S3 GET per message made that cost
seconds per thousand messages (issue 14). So delivery, APPEND and COPY store the header block
(the bytes up to and including its empty line, exactly what the ranged GET read) zlib-compressed
as the binary attribute `header`, when it compresses to at most MAX_PACKED_HEADER; a reader reads
many at once with BatchGetItem and falls back to the ranged GET for messages without it (bigger
headers, or messages stored before it existed and not yet backfilled: store/backfill.py).

The header never goes into StoredMessage. This process keeps the compressed blocks it meets in a
bounded cache by blob key (blob keys name bytes that never change): those of its own APPENDs,
deliveries and COPYs (it has the bytes) and those a snapshot's listing reads (the listing projects
`header` for that: docs/mail-store.md). A folder opened after its listing then reads nothing.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

from botocore.exceptions import ClientError

from mailpipe.mime.offsets import scan_header
from mailpipe.store.cache import BytesLRU
from mailpipe.store.model import MAX_PACKED_HEADER, StoredMessage, _as_bytes, messages_pk, uid_sk

BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
# Compressed headers kept per process: ~0.3-1 KB each, so some 50,000-100,000 messages' worth.
CACHED_HEADER_BYTES = 48 * 1024 * 1024
_PROJECTION = {
    "ProjectionExpression": "#uid, #header, #expunged",
    "ExpressionAttributeNames": {"#uid": "uid", "#header": "header", "#expunged": "expunged"},
}


def header_end(raw: bytes, summary: dict[str, Any] | None = None) -> int:
    """Where the top-level header block of `raw` ends (after its empty line): the summary's
    `body_start`, which is what FETCH's ranged read used, or, without one, the same scan."""
    if summary and "body_start" in summary:
        return int(summary["body_start"])
    return scan_header(raw, 0, [])[1]


def pack_header(header: bytes) -> bytes | None:
    """The header compressed for the item, or None when that exceeds MAX_PACKED_HEADER."""
    packed = zlib.compress(header, 6)
    return packed if len(packed) <= MAX_PACKED_HEADER else None


def unpack_header(packed: Any) -> bytes:
    return zlib.decompress(_as_bytes(packed))


class HeaderReader:
    """Reads headers of many messages of one mailbox: the index first, S3 for the rest."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        read_range: Callable[[StoredMessage, int, int], bytes],
        read_body: Callable[[StoredMessage], bytes],
        pool: Callable[[], Executor],
    ) -> None:
        self._client = client
        self._table_name = table_name
        self._read_range = read_range
        self._read_body = read_body
        self._pool = pool
        self._cache = BytesLRU(CACHED_HEADER_BYTES)

    def keep(self, blob_key: str, packed: Any) -> None:
        """Remember the compressed header block of the message stored at `blob_key`."""
        if packed is not None:
            self._cache.put(blob_key, _as_bytes(packed))

    def cached(self, message: StoredMessage) -> bytes | None:
        """The message's header block if this process holds it, else None (reads nothing)."""
        packed = self._cache.get(message.blob_key)
        return None if packed is None else zlib.decompress(packed)

    def read(self, mailbox_id: str, messages: Sequence[StoredMessage]) -> dict[int, bytes]:
        """The header block of each message, by UID; a message expunged meanwhile (its item a
        tombstone, or its body gone) is left out."""
        found: dict[int, bytes] = {}
        todo: list[StoredMessage] = []
        for message in messages:
            cached = self.cached(message)
            if cached is None:
                todo.append(message)
            else:
                found[message.uid] = cached
        gone: set[int] = set()
        by_uid = {m.uid: m for m in todo}
        chunks = [todo[i : i + BATCH_GET_KEYS] for i in range(0, len(todo), BATCH_GET_KEYS)]
        for items in self._map(lambda chunk: self._batch_get(mailbox_id, chunk), chunks):
            for item in items:
                uid = int(item["uid"])
                if item.get("expunged"):
                    gone.add(uid)
                elif item.get("header") is not None:
                    found[uid] = unpack_header(item["header"])
                    if uid in by_uid:
                        self.keep(by_uid[uid].blob_key, item["header"])
        # No attribute (too big, or not backfilled yet), or the item not seen by this eventually
        # consistent read (a message just stored): the ranged GET that served headers before.
        fallback = [m for m in todo if m.uid not in found and m.uid not in gone]
        for message, header in zip(fallback, self._map(self._from_s3, fallback), strict=True):
            if header is not None:
                found[message.uid] = header
        for message in fallback:
            if message.uid in found:
                # Compressed whatever its size: the bound is the item's, not the cache's.
                self.keep(message.blob_key, zlib.compress(found[message.uid], 6))
        return found

    def _batch_get(self, mailbox_id: str, messages: Sequence[StoredMessage]) -> list[dict[str, Any]]:
        keys = [{"pk": messages_pk(mailbox_id), "sk": uid_sk(m.uid)} for m in messages]
        pending: dict[str, Any] = {self._table_name: {"Keys": keys, **_PROJECTION}}
        items: list[dict[str, Any]] = []
        attempt = 0
        while pending:
            response = self._client.batch_get_item(RequestItems=pending)
            items += response["Responses"].get(self._table_name, [])
            pending = response.get("UnprocessedKeys") or {}
            if pending:  # throttled: DynamoDB asks for a backoff before the rest
                attempt += 1
                time.sleep(min(1.0, 0.01 * 2**attempt))
        return items

    def _from_s3(self, message: StoredMessage) -> bytes | None:
        try:
            if "body_start" in message.summary:
                return self._read_range(message, 0, int(message.summary["body_start"]))
            raw = self._read_body(message)  # a summary too large to store: no offsets
            return raw[: header_end(raw)]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None  # expunged meanwhile: its body is gone
            raise

    def _map(self, function: Callable[[Any], Any], values: Sequence[Any]) -> Iterable[Any]:
        """`function` over `values`, in order: concurrently when there is more than one."""
        if len(values) <= 1:
            return [function(v) for v in values]
        return self._pool().map(function, values)
