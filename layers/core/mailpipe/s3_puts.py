"""Whole-object S3 PUTs of message bodies with a SigV4 signature made here, on kept-alive
connections; botocore for anything else.

Every APPEND is an S3 PUT, and a MULTIAPPEND one per message. botocore spends ~1 ms of CPU on each
PutObject (py-spy of `mailpipe dev` under APPENDs, 2026-12-06: 40% of the gateway's CPU for a
MULTIAPPENDed message): ~30 event hooks a call, parameter validation, endpoint rules, a fresh
SigV4 signing key, its CRC32 and SHA-256 of the body, urllib3 and http.client. The PUT of a body
in hand needs a path, seven signed headers, one HMAC with the day's key and a status line read
back: ~0.1-0.2 ms, and the GIL the gateway's event loop also needs is held that much less.

The request is the one botocore sends (tests/test_s3_puts.py compares them): the same URL, the
same signed headers (Content-Type, the body's CRC32 as botocore computes it by default, its
SHA-256) and the same Authorization for the same second. Only a plain success is taken here: a
200. Anything else (an error status, a redirect, a broken connection twice, a timeout) is sent
again through botocore, which retries, follows and raises the ClientError callers already
handle: a PUT of the same body under the same key may be repeated. Bodies of CONTINUE_FROM_BYTES
or more go through botocore, which asks `100 Continue` before sending them (mailpipe/aws.py).

The endpoint, addressing style and signing region are botocore's, read once as mailpipe.s3_gets
reads them (s3_gets.endpoint_of, through sigv4.probe: the same URL as a GetObject of the key);
the credentials are the client's, refreshed by botocore.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from mailpipe import sigv4
from mailpipe.aws import CONTINUE_FROM_BYTES
from mailpipe.lean_http import KeptConnections
from mailpipe.s3_gets import Endpoint, endpoint_of

log = logging.getLogger(__name__)

# Called with ("start" | "end", the botocore client, key) around every ObjectPuts.put, whichever
# way it is sent (as s3_gets.observers: tests count a client's requests here too).
observers: list[Callable[[str, Any, str], None]] = []


class ObjectPuts:
    """PUTs of whole objects into one bucket; thread-safe (each thread keeps its own connection)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._credentials = sigv4.credentials_of(s3)
        self._endpoint = endpoint_of(s3, bucket) if self._credentials is not None else None
        self._signing_keys = sigv4.SigningKeys("s3")
        self._connections = KeptConnections.to(self._endpoint)

    @property
    def endpoint(self) -> Endpoint | None:
        """Where PUTs go and for which region they are signed; None: every PUT through botocore."""
        return self._endpoint

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """Stores `body` under `key`; raises botocore's ClientError as put_object does."""
        if not observers:
            return self._put(key, body, content_type)
        for observer in observers:
            observer("start", self._s3, key)
        try:
            return self._put(key, body, content_type)
        finally:
            for observer in observers:
                observer("end", self._s3, key)

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        lean = self._endpoint is not None and 0 < len(body) < CONTINUE_FROM_BYTES
        if lean and self._lean_put(key, body, content_type):
            return
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)

    def _lean_put(self, key: str, body: bytes, content_type: str) -> bool:
        """Whether S3 answered 200 (else botocore should send it)."""
        assert self._endpoint is not None and self._connections is not None
        path = self._endpoint.prefix + quote(key, safe="/~")
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in self.signed_headers(path, body, content_type)
        )
        request = head.encode("ascii") + b"Content-Length: %d\r\n\r\n" % len(body) + body
        return self._connections.send(request, f"S3 PUT of {key}") == 200

    def signed_headers(
        self, path: str, body: bytes, content_type: str, stamp: str | None = None
    ) -> list[tuple[str, str]]:
        """The headers of a PUT of `body` at `path` (URI-encoded) at `stamp` (now by default), signed,
        in canonical (sorted) order, as botocore signs a PutObject: Content-Length is not signed."""
        endpoint = self._endpoint
        assert endpoint is not None
        credentials = self._credentials.get_frozen_credentials()  # type: ignore[union-attr]
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = [
            ("content-type", content_type),
            ("host", endpoint.host),
            ("x-amz-checksum-crc32", base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()),
            ("x-amz-content-sha256", hashlib.sha256(body).hexdigest()),
            ("x-amz-date", stamp),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ]
        if credentials.token:
            headers.append(("x-amz-security-token", credentials.token))
        key = self._signing_keys.get(credentials.secret_key, stamp[:8], endpoint.region)
        payload = dict(headers)["x-amz-content-sha256"]
        authorization = sigv4.authorization(
            "PUT", path, headers, payload, stamp, endpoint.region, "s3", credentials.access_key, key
        )
        return [*headers, ("authorization", authorization)]
