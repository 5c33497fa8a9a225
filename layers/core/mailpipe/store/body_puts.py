"""Message bodies into S3: the PUT of every APPENDed message (mailpipe.s3_puts, botocore's for
anything but a plain success), made ready at the first one (a Lambda may never store one)."""

from __future__ import annotations

import threading
from typing import Any

from mailpipe.s3_puts import ObjectPuts

CONTENT_TYPE = "message/rfc822"


class BodyPuts:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._puts: ObjectPuts | None = None
        self._making = threading.Lock()  # a MULTIAPPEND's first PUTs start together: one makes it

    def put(self, blob_key: str, raw: bytes) -> None:
        """Stores `raw` under `blob_key`; raises botocore's ClientError as put_object does."""
        if self._puts is None:
            with self._making:
                if self._puts is None:
                    self._puts = ObjectPuts(self._s3, self._bucket)
        self._puts.put(blob_key, raw, CONTENT_TYPE)
