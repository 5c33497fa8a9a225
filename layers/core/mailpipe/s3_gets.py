"""Whole-object S3 GETs with a SigV4 signature made here, on kept-alive connections; botocore for
anything else.

Opening messages is one S3 GET per body (a FETCH of 300 bodies is 300 GETs), and botocore spends
~1.2-1.6 ms of CPU on each GetObject (measured 2026-12-05 against the dev stack's moto): its event
hooks (~30 emits a call), endpoint rules, a fresh SigV4 signing key per call, urllib3, and the
response's parsing into a dict (a third of that is parsing Last-Modified). A GET of a whole object
needs none of that: a path, four signed headers and an HMAC with the day's signing key, one
request on a socket the thread keeps open, and an answer whose status line and few headers are
read here (http.client's header parsing, the email package's, cost as much as the signing). That
is ~0.13 ms of CPU, so a gateway core reads about ten times as many bodies, and on AWS, where a
GET waits 10-30 ms on S3, more of them can be in flight for the same CPU.

Only the plain success is answered here: 200 with the whole body, its length as announced and its
CRC32 as S3 gives it (asked for, as botocore asks). Anything else (a missing key, a 403 or a
redirect from a bucket in another region, a 5xx, a broken connection twice, a checksum mismatch)
is asked again through botocore, which retries, follows, and raises the ClientError callers
already handle. Where the endpoint botocore would use cannot be read off its request, or a
proxy is configured, or the client has no credentials, every GET goes through botocore.

The endpoint, the addressing style (virtual-hosted on AWS, path-style on an endpoint URL) and the
signing region are botocore's: read once per bucket off a GetObject of a template key, stopped
before it is sent (a presigned URL is not that: botocore presigns for S3's global endpoint). The
credentials are the client's (refreshed by botocore when they expire, e.g. an ECS task role's).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mailpipe import sigv4
from mailpipe.lean_http import KeptConnections, read_head

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_TEMPLATE_KEY = "mailpipe-s3-gets-template"
# Called with ("start" | "end", the botocore client, key) around every ObjectGets.get, whichever
# way it is answered: botocore's events see only the GETs that go through botocore, so whoever
# counts a client's requests (tests do) watches here too.
observers: list[Callable[[str, Any, str], None]] = []


@dataclass(frozen=True)
class Endpoint:
    """Where GETs of one bucket's objects go: scheme, host (as sent in Host), the path before the
    key, and the region the signature is for."""

    scheme: str
    host: str
    hostname: str
    port: int
    prefix: str
    region: str


class ObjectGets:
    """GETs of whole objects of one bucket; thread-safe (each thread keeps its own connection)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._credentials = sigv4.credentials_of(s3)
        self._endpoint = endpoint_of(s3, bucket) if self._credentials is not None else None
        self._signing_keys = sigv4.SigningKeys("s3")
        self._connections = KeptConnections.to(self._endpoint)

    @property
    def endpoint(self) -> Endpoint | None:
        """Where GETs go and for which region they are signed; None: every GET through botocore."""
        return self._endpoint

    @property
    def lean(self) -> bool:
        """Whether GETs are made here (else every one goes through botocore)."""
        return self._endpoint is not None

    def get(self, key: str) -> bytes:
        """The object's bytes; raises botocore's ClientError as get_object does."""
        if not observers:
            return self._get(key)
        for observer in observers:
            observer("start", self._s3, key)
        try:
            return self._get(key)
        finally:
            for observer in observers:
                observer("end", self._s3, key)

    def _get(self, key: str) -> bytes:
        if self._endpoint is not None:
            body = self._lean_get(self._endpoint, key)
            if body is not None:
                return body
        return bytes(self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def _lean_get(self, endpoint: Endpoint, key: str) -> bytes | None:
        """The body, or None when botocore should be asked (anything but a plain success)."""
        assert self._connections is not None
        path = endpoint.prefix + quote(key, safe="/~")
        request = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in self.signed_headers(path)
        )
        answer = self._connections.exchange(request.encode("ascii") + b"\r\n", _response, f"S3 GET of {key}")
        if answer is None:  # no answer, or not a plain 200 with a length (its bytes not read)
            return None
        body, checksum = answer
        if checksum is not None and base64.b64encode(zlib.crc32(body).to_bytes(4, "big")) != checksum:
            log.warning("S3 GET of %s: CRC32 mismatch: asking botocore", key)
            return None
        return body

    def signed_headers(self, path: str, stamp: str | None = None) -> list[tuple[str, str]]:
        """The headers of a GET of `path` (URI-encoded) at `stamp` (now by default), signed."""
        endpoint = self._endpoint
        assert endpoint is not None
        credentials = self._credentials.get_frozen_credentials()  # type: ignore[union-attr]
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        # Signed, in canonical (sorted) order: x-amz-security-token sorts last.
        headers = [
            ("host", endpoint.host),
            ("x-amz-checksum-mode", "ENABLED"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", stamp),
        ]
        if credentials.token:
            headers.append(("x-amz-security-token", credentials.token))
        key = self._signing_keys.get(credentials.secret_key, stamp[:8], endpoint.region)
        authorization = sigv4.authorization(
            "GET", path, headers, EMPTY_SHA256, stamp, endpoint.region, "s3", credentials.access_key, key
        )
        return [*headers, ("authorization", authorization)]


def endpoint_of(s3: Any, bucket: str) -> Endpoint | None:
    """Where `s3` sends a GetObject of `bucket` (endpoint, addressing style: botocore's endpoint
    rules decide) and the region it signs for, read off a GetObject of a template key that is
    stopped before it is sent; None if that request is not of the expected shape or a proxy
    would be used."""
    probed = sigv4.probe(
        s3,
        "before-send.s3.GetObject",
        "s3",
        lambda: s3.get_object(Bucket=bucket, Key=_TEMPLATE_KEY),
        "S3 GETs",
    )
    if probed is None:
        return None
    url = probed.url
    if not url.path.endswith("/" + _TEMPLATE_KEY):
        log.info("S3 GETs through botocore: unexpected request to %s", url._replace(query="").geturl())
        return None
    return Endpoint(
        scheme=url.scheme,
        host=url.netloc,
        hostname=str(url.hostname),
        port=probed.port,
        prefix=url.path.removesuffix(_TEMPLATE_KEY),
        region=probed.region,
    )


def _response(connection: socket.socket) -> tuple[tuple[bytes, bytes | None] | None, bool]:
    """Reads one answer to a GET: ((body, its CRC32 as S3 gave it, if any), whether the
    connection stays open) for a 200 whose length is given; (None, False) for anything else,
    leaving the rest of it unread. Raises OSError, or ValueError for what is not HTTP."""
    head = read_head(connection)
    size = head.content_length()
    if head.status != 200 or size is None:
        return None, False
    body = head.rest
    if len(body) > size:
        raise ValueError("more bytes than Content-Length")
    while len(body) < size:
        chunk = connection.recv(min(size - len(body), 1024 * 1024))
        if not chunk:
            raise ConnectionResetError("closed within the body")
        body += chunk
    checksum = head.headers.get(b"x-amz-checksum-crc32")
    if checksum is not None and (
        head.headers.get(b"x-amz-checksum-type") == b"COMPOSITE" or b"-" in checksum
    ):
        checksum = None  # a multipart upload's checksum of its parts' checksums
    return (bytes(body), checksum), head.keep_alive()
