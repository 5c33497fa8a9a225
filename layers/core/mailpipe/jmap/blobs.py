"""Uploaded blobs (RFC 8620 6.1): bytes a client POSTs to the upload URL, to import as an Email
or attach to a draft, kept in the mail bucket under `uploads/<accountId>/<blobId>`.

The object key carries the account, and a blob is only ever read under the signed-in user's own
account: another user's blob id is simply not there (404, `blobNotFound`). The bucket's lifecycle
rule removes uploads after a day (template.yaml), which RFC 8620 6.1 allows for blobs that no
object references (an imported Email has its own copy of the bytes).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

UPLOADS_PREFIX = "uploads/"
_UPLOAD_ID = re.compile(r"U[0-9a-f]{32}")


def is_missing(exc: ClientError) -> bool:
    """True if S3 said the key is not there. The functions' roles have no s3:ListBucket on the mail
    bucket (it would list every user's keys), and without it S3 answers a missing key 403, not 404."""
    code = exc.response.get("Error", {}).get("Code")
    return code in ("NoSuchKey", "404", "NotFound", "403", "AccessDenied")


def is_upload_id(blob_id: object) -> bool:
    return isinstance(blob_id, str) and _UPLOAD_ID.fullmatch(blob_id) is not None


@dataclass(frozen=True)
class Uploaded:
    blob_id: str
    type: str
    size: int

    def response(self, account_id: str) -> dict[str, Any]:
        return {"accountId": account_id, "blobId": self.blob_id, "type": self.type, "size": self.size}


class Uploads:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    @staticmethod
    def key(account_id: str, blob_id: str) -> str:
        return f"{UPLOADS_PREFIX}{account_id}/{blob_id}"

    def put(self, account_id: str, data: bytes, content_type: str) -> Uploaded:
        blob_id = "U" + secrets.token_hex(16)
        # The client's type is kept as metadata, not as the object's Content-Type: a type such as
        # application/x-www-form-urlencoded (what many HTTP clients send by default) makes S3
        # emulators read the body as a form, and a download names its own type anyway.
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self.key(account_id, blob_id),
            Body=data,
            ContentType="application/octet-stream",
            Metadata={"type": content_type},
        )
        return Uploaded(blob_id, content_type, len(data))

    def size(self, account_id: str, blob_id: str) -> int | None:
        if not is_upload_id(blob_id):
            return None
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key(account_id, blob_id))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def read(self, account_id: str, blob_id: str) -> bytes | None:
        if not is_upload_id(blob_id):
            return None
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self.key(account_id, blob_id))
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return obj["Body"].read()  # type: ignore[no-any-return]
