"""Whole-object S3 GETs with a SigV4 signature made here, on kept-alive connections; botocore for
anything else.

Opening messages is one S3 GET per body (a FETCH of 300 bodies is 300 GETs), and botocore spends
~1.2-1.6 ms of CPU on each GetObject (measured 2026-12-05 against the dev stack's moto): its event
hooks (~30 emits a call), endpoint rules, a fresh SigV4 signing key per call, urllib3, and the
response's parsing into a dict (a third of that is parsing Last-Modified). A GET of a whole object
needs none of that: a path, four signed headers and an HMAC with the day's signing key, one
request on a connection the thread keeps. That costs ~0.2 ms, so a gateway core reads about six
times as many bodies, and on AWS, where a GET waits 10-30 ms on S3, more of them can be in flight
for the same CPU.

Only the plain success is answered here: 200 with the whole body, its length as announced and its
CRC32 as S3 gives it (asked for, as botocore asks). Anything else (a missing key, a 403 or a
redirect from a bucket in another region, a 5xx, a broken connection twice, a checksum mismatch)
is asked again through botocore, which retries, follows, and raises the ClientError callers
already handle. Where the endpoint botocore would use cannot be read off a presigned URL, or a
proxy is configured, or the client has no credentials, every GET goes through botocore.

The endpoint, the addressing style (virtual-hosted on AWS, path-style on an endpoint URL) and the
signing region are botocore's: read once per bucket off a GetObject of a template key, stopped
before it is sent (a presigned URL is not that: botocore presigns for S3's global endpoint). The
credentials are the client's (refreshed by botocore when they expire, e.g. an ECS task role's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CONNECT_TIMEOUT = 3.0  # as mailpipe.aws's clients
READ_TIMEOUT = 20.0
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
        self._credentials = getattr(getattr(s3, "_request_signer", None), "_credentials", None)
        self._endpoint = endpoint_of(s3, bucket) if self._credentials is not None else None
        self._local = threading.local()
        self._signing_keys: dict[tuple[str, str], bytes] = {}  # (secret's digest, day) -> key
        self._tls: ssl.SSLContext | None = None
        if self._endpoint is not None and self._endpoint.scheme == "https":
            self._tls = ssl.create_default_context(cafile=_ca_bundle())

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
        path = endpoint.prefix + quote(key, safe="/~")
        for attempt in (1, 2):
            connection, reused = self._connection(endpoint)
            try:
                connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
                for name, value in self._signed_headers(endpoint, path):
                    connection.putheader(name, value)
                connection.endheaders()
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if reused and attempt == 1:
                    continue  # a kept connection the server had closed meanwhile: once more, anew
                log.info("S3 GET of %s failed (%s): asking botocore", key, exc.__class__.__name__)
                return None
            if response.will_close:
                self._drop_connection()
            if response.status != 200:
                return None
            if not _checksum_holds(response, body):
                log.warning("S3 GET of %s: CRC32 mismatch: asking botocore", key)
                return None
            return body
        return None

    def _connection(self, endpoint: Endpoint) -> tuple[http.client.HTTPConnection, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        if self._tls is not None:
            connection = http.client.HTTPSConnection(
                endpoint.hostname, endpoint.port, timeout=CONNECT_TIMEOUT, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=CONNECT_TIMEOUT)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(READ_TIMEOUT)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.connection = connection
        return connection, False

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _signed_headers(self, endpoint: Endpoint, path: str) -> list[tuple[str, str]]:
        credentials = self._credentials.get_frozen_credentials()  # type: ignore[union-attr]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        # Signed, in canonical (sorted) order: x-amz-security-token sorts last.
        headers = [
            ("host", endpoint.host),
            ("x-amz-checksum-mode", "ENABLED"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", stamp),
        ]
        if credentials.token:
            headers.append(("x-amz-security-token", credentials.token))
        authorization = sigv4_authorization(
            path,
            headers,
            stamp,
            endpoint.region,
            credentials.access_key,
            self._signing_key(credentials.secret_key, stamp[:8], endpoint.region),
        )
        return [*headers, ("authorization", authorization)]

    def _signing_key(self, secret: str, day: str, region: str) -> bytes:
        """SigV4's key for the day: four HMACs, made once a day per secret, not per request."""
        slot = (hashlib.sha256(secret.encode()).hexdigest(), day + "/" + region)
        key = self._signing_keys.get(slot)
        if key is None:
            key = signing_key(secret, day, region)
            if len(self._signing_keys) > 16:  # rotated secrets and past days
                self._signing_keys.clear()
            self._signing_keys[slot] = key
        return key


def signing_key(secret: str, day: str, region: str, service: str = "s3") -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sigv4_authorization(
    path: str, headers: list[tuple[str, str]], stamp: str, region: str, access_key: str, key: bytes
) -> str:
    """The Authorization header of a GET of `path` (already URI-encoded, S3 style: not encoded
    twice) with no query and an empty payload, signing `headers` (lower-case names, sorted)."""
    names = ";".join(name for name, _ in headers)
    canonical = "\n".join(
        ["GET", path, "", *(f"{name}:{value.strip()}" for name, value in headers), "", names, EMPTY_SHA256]
    )
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, Signature={signature}"


class _Captured(Exception):
    def __init__(self, url: str, authorization: str) -> None:
        super().__init__(url)
        self.url, self.authorization = url, authorization


_probing = threading.local()


def _capture(request: Any, **_: Any) -> None:
    """botocore's before-send hook: stops the probe's GetObject (only it) with what it would send."""
    if getattr(_probing, "active", False):
        authorization = request.headers.get("Authorization", b"")  # bytes, once signed
        if isinstance(authorization, bytes):
            authorization = authorization.decode("ascii", errors="replace")
        raise _Captured(request.url, authorization)


def endpoint_of(s3: Any, bucket: str) -> Endpoint | None:
    """Where `s3` sends a GetObject of `bucket` (endpoint, addressing style: botocore's endpoint
    rules decide) and the region it signs for, read off a GetObject of a template key that is
    stopped before it is sent; None if that request is not of the expected shape or a proxy
    would be used."""
    s3.meta.events.register("before-send.s3.GetObject", _capture, unique_id="mailpipe-s3-gets-probe")
    _probing.active = True
    try:
        s3.get_object(Bucket=bucket, Key=_TEMPLATE_KEY)
    except _Captured as captured:
        url, authorization = captured.url, captured.authorization
    except Exception as exc:  # any failure here only means: use botocore
        log.info("S3 GETs through botocore: no request to read the endpoint from (%s)", exc)
        return None
    else:
        return None
    finally:
        _probing.active = False
    parts = urlsplit(url)
    scope = re.search(r"Credential=[^/,]+/\d{8}/([^/,]+)/s3/aws4_request", authorization)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.username
        or not parts.path.endswith("/" + _TEMPLATE_KEY)
        or not authorization.startswith("AWS4-HMAC-SHA256 ")
        or scope is None
    ):
        log.info("S3 GETs through botocore: unexpected request to %s", parts._replace(query="").geturl())
        return None
    if getproxies().get(parts.scheme) and not proxy_bypass(parts.hostname):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Endpoint(
        scheme=parts.scheme,
        host=parts.netloc,
        hostname=parts.hostname,
        port=port,
        prefix=parts.path.removesuffix(_TEMPLATE_KEY),
        region=scope[1],
    )


def _checksum_holds(response: http.client.HTTPResponse, body: bytes) -> bool:
    """Whether the body has the CRC32 S3 gave for it (other algorithms are left to TLS, as botocore
    without its C runtime leaves CRC64NVME)."""
    given = response.getheader("x-amz-checksum-crc32")
    if given is None or response.getheader("x-amz-checksum-type") == "COMPOSITE" or "-" in given:
        return True  # none, or a multipart upload's checksum of its parts' checksums
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode() == given


def _ca_bundle() -> str | None:
    from botocore.httpsession import get_cert_path

    return get_cert_path(True)
