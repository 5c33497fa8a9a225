"""Message bodies from S3: one at a time or many concurrently, with a bounded cache of recent ones.

A client that opens a message usually fetches it more than once (BODYSTRUCTURE first, then a
part, then BODY[] to display or index it), and a SEARCH TEXT reads every body: the cache spares
those repeated GETs; bodies over CACHED_BODY_LIMIT are not kept, so one big attachment does
not push out hundreds of ordinary messages. A body this process APPENDs is kept too (`keep`): the
client that saves a draft or a sent message usually reads it back soon, and the bytes are in hand.
A FETCH finds a kept body without leaving the event loop (`cached`).

Whole bodies are read by mailpipe.s3_gets (a signed GET on a kept connection, ~0.13-0.25 ms of
CPU against botocore's ~1.3 ms); ranges, rare, through botocore.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from mailpipe.lazy import Lazy
from mailpipe.s3_gets import ObjectGets
from mailpipe.store.cache import BytesLRU
from mailpipe.store.model import StoredMessage

CACHED_BODY_BYTES = 32 * 1024 * 1024
CACHED_BODY_LIMIT = 2 * 1024 * 1024


class BodyReader:
    def __init__(self, s3: Any, bucket: str, pool: Callable[[], Executor]) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._pool = pool
        self._gets = Lazy(lambda: ObjectGets(s3, bucket))  # made at the first read
        self._cache = BytesLRU(CACHED_BODY_BYTES, CACHED_BODY_LIMIT)

    def cached(self, message: StoredMessage) -> bytes | None:
        """The body if the cache holds it (no request, no wait: for the event loop)."""
        return self._cache.get(message.blob_key)

    def keep(self, blob_key: str, body: bytes) -> None:
        """This process stored `body` under `blob_key`: keep it for the reads that follow."""
        self._cache.put(blob_key, body)

    def forget(self, blob_keys: list[str]) -> None:
        """These bodies are being deleted: this process serves them no more."""
        for key in blob_keys:
            self._cache.discard(key)

    def read(self, message: StoredMessage) -> bytes:
        body = self._cache.get(message.blob_key)
        if body is None:
            body = self._gets().get(message.blob_key)
            self._cache.put(message.blob_key, body)
        return body

    def read_range(self, message: StoredMessage, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        body = self._cache.get(message.blob_key)
        if body is not None:
            return body[start:end]
        response = self._s3.get_object(
            Bucket=self._bucket, Key=message.blob_key, Range=f"bytes={start}-{end - 1}"
        )
        return bytes(response["Body"].read())

    def read_ahead(self, message: StoredMessage) -> Future[bytes]:
        """The body, read on the store's reader threads: for a caller that will want it soon."""
        return self._pool().submit(self.read, message)
