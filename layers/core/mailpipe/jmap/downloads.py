"""What GET on the download URL (RFC 8620 6.2) answers: the blob's bytes, or the S3 object a
presigned URL hands out when the bytes are too large for a Lambda response.

A Lambda response is at most 6 MB and API Gateway sends a binary body base64-encoded (4/3 larger),
so a blob over `inline_limit()` (3 MB) is fetched by the client from S3 directly:
- a whole message or an upload is an object of the mail bucket already;
- a MIME part (blob id `B<mailbox>-<uid>-<part>`) is not: it is decoded once and written to
  `downloads/<accountId>/<blobId>` (`BucketDownloads`), and later downloads reuse that object. A
  blob id names immutable bytes (a UID is never reused in a mailbox, a mailbox id never reused),
  so the copy never goes stale; the bucket's lifecycle rule drops it a day after it was written
  (template.yaml), and a copy half that old is written again so a URL handed out never outlives it.

The owner check comes first, always: a part's message is looked up among the signed-in owner's
own mailboxes (jmap/messages.py) before any copy is looked at, and the copy's key carries the
owner's account, so another user's blob id is a 404 whether or not a copy of it exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from mailpipe.config import ENV_JMAP_INLINE_DOWNLOAD
from mailpipe.jmap import ids
from mailpipe.jmap.blobs import is_missing, is_upload_id
from mailpipe.jmap.context import Context
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.messages import locate, part_of

log = logging.getLogger(__name__)

DOWNLOADS_PREFIX = "downloads/"
# Lambda's 6 MB response, less the base64 expansion and the headers: the most that is answered inline.
INLINE_DOWNLOAD = 3 * 1024 * 1024
# template.yaml's ExpireJmapDownloads expires a copy at the first midnight UTC a day after it was
# written; one older than this is written again before its URL is handed out.
COPY_REFRESH = timedelta(hours=12)
PRESIGNED_SECONDS = 300


def inline_limit() -> int:
    """The largest blob answered inline: INLINE_DOWNLOAD, or less if MAILPIPE_JMAP_INLINE_DOWNLOAD
    says so (tests, a gateway with a smaller response limit). Read per download: the dev stack runs
    its functions in the process that sets it."""
    value = os.environ.get(ENV_JMAP_INLINE_DOWNLOAD, "")
    if not value:
        return INLINE_DOWNLOAD
    try:
        return max(0, min(INLINE_DOWNLOAD, int(value)))
    except ValueError:
        log.warning("%s=%r is not a number of bytes: %d", ENV_JMAP_INLINE_DOWNLOAD, value, INLINE_DOWNLOAD)
        return INLINE_DOWNLOAD


@dataclass(frozen=True)
class Inline:
    data: bytes


class BucketDownloads:
    """The mail bucket's side of downloads: presigned GET URLs, and the decoded MIME parts written
    there (one object per account and blob id)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    @staticmethod
    def key(account_id: str, blob_id: str) -> str:
        return f"{DOWNLOADS_PREFIX}{account_id}/{blob_id}"

    def fresh(self, key: str) -> bool:
        """True if the copy exists and is young enough to outlive a presigned URL."""
        try:
            head = self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return False
            raise
        written: datetime = head["LastModified"]
        return datetime.now(UTC) - written < COPY_REFRESH

    def put(self, key: str, data: bytes) -> None:
        # The type and name come with each presigned URL (response-content-*), as for uploads.
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType="application/octet-stream")

    def presigned(self, key: str, content_type: str, disposition: str) -> str:
        """A short-lived GET URL for an object of the mail bucket, answered with these headers."""
        url: str = self._s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": disposition,
            },
            ExpiresIn=PRESIGNED_SECONDS,
        )
        return url


@dataclass(frozen=True)
class InBucket:
    """An object of the mail bucket holding the blob's bytes, for a presigned GET."""

    bucket: BucketDownloads
    key: str

    def url(self, content_type: str, disposition: str) -> str:
        return self.bucket.presigned(self.key, content_type, disposition)


def find_download(context: Context, blob_id: str, bucket: BucketDownloads | None) -> Inline | InBucket | None:
    """How to answer a download of `blob_id` for the signed-in owner; None if it is not theirs
    (or nothing at all). Without `bucket` (none configured) everything is answered inline."""
    limit = inline_limit()
    if is_upload_id(blob_id):
        uploads = context.uploads
        size = uploads.size(context.account_id, blob_id) if uploads else None
        if uploads is None or size is None:
            return None
        if size > limit and bucket is not None:
            return InBucket(bucket, uploads.key(context.account_id, blob_id))
        data = uploads.read(context.account_id, blob_id)
        return Inline(data) if data is not None else None
    ref = ids.parse(blob_id, "B")
    if ref is None:
        return None
    message_ref = MessageRef(ref.mailbox_id, ref.uid)
    found = locate(context, [message_ref]).get(message_ref)
    if found is None:
        return None
    message = found.message
    if ref.part is None:
        if message.size > limit and message.blob_key and bucket is not None:
            return InBucket(bucket, message.blob_key)
        return Inline(context.store.read_body(message))
    key = BucketDownloads.key(context.account_id, blob_id)
    # A part is never larger than its message (decoding only shrinks it): a small message's parts
    # are answered inline without asking S3 for a copy.
    if message.size > limit and bucket is not None and bucket.fresh(key):
        return InBucket(bucket, key)
    part = part_of(context.store.read_body(message), ref.part)
    if part is None:
        return None
    data = part.content()
    if len(data) > limit and bucket is not None:
        bucket.put(key, data)
        log.info("jmap download %s of %s: %d bytes decoded to %s", blob_id, context.owner, len(data), key)
        return InBucket(bucket, key)
    return Inline(data)
