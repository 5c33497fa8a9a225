"""The dev stack's plain S3 PutObject, made on moto's S3 backend without moto's request path.

Every APPEND is an S3 PUT, and a MULTIAPPEND one per message. moto's request path costs a PUT
about as much CPU as storing it: Flask's request context, moto's routing of the URL to a service,
the key parsed from the URL several times, the headers walked for ACLs, tags, object lock and
encryption that a plain PUT never sends, a request id of random characters, and the answer rebuilt
through werkzeug (2026-12-05: 1.6 ms of moto's CPU per PUT of a corpus message, 1.0 ms here, on
the two cores the gateway shares with it; bench/README.md, "APPEND after the quota fix").

A PUT of a whole object as the mail store and the spool make it (a body of known length, at most
a CRC32 checksum, which is checked here, and Content-Type) is stored through the same
S3Backend.put_object moto's path calls (so notifications, bucket encryption defaults and the
stored key are moto's), with the same answer. Everything else (query strings such as ?acl or
multipart parts, copies, metadata, tags, ACLs, conditions, lock headers, other checksums, chunked
bodies, `Expect`, versioned, locked or CORS-configured buckets, keys with "%", a checksum that
does not match) goes to moto as before. The request is still counted, as a request and as a
change (moto_server.RequestCounter and _ChangeCounter sit in front).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Iterable
from typing import Any

from mailpipe_tools.local.provision import ACCOUNT
from mailpipe_tools.local.s3_reads import BOTOCORE_HEADERS, path_style_host, s3_signed

# The request headers a plain PutObject from botocore carries (Content-Type and Content-Length are
# not HTTP_ in WSGI). Any other changes what is stored or answered: moto handles that request.
_PLAIN_HEADERS = BOTOCORE_HEADERS | {"HTTP_X_AMZ_SDK_CHECKSUM_ALGORITHM", "HTTP_X_AMZ_CHECKSUM_CRC32"}
# Bodies signed as sent (not aws-chunked: its framing is moto's to take apart).
_STREAMING = "STREAMING-"


class PlainObjectWrites:
    """WSGI middleware: stores path-style PUTs of a whole S3 object itself, passes on the rest."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = _plain_put(environ) if environ.get("REQUEST_METHOD") == "PUT" else None
        if target is None:
            return self._app(environ, start_response)
        bucket, key_name, length = target
        body = environ["wsgi.input"].read(length)
        headers = _store(environ, bucket, key_name, body) if len(body) == length else None
        if headers is None:
            # Read already: moto reads the body from what is put back.
            environ["wsgi.input"] = io.BytesIO(body)
            return self._app(environ, start_response)
        start_response("200 OK", headers)
        return [b""]


def _plain_put(environ: dict[str, Any]) -> tuple[Any, str, int] | None:
    """The bucket, key and body length of a plain PutObject; None: moto should take it."""
    if environ.get("QUERY_STRING") or not s3_signed(environ.get("HTTP_AUTHORIZATION", "")):
        return None
    if any(name.startswith("HTTP_") and name not in _PLAIN_HEADERS for name in environ):
        return None
    if environ.get("HTTP_X_AMZ_CONTENT_SHA256", "").startswith(_STREAMING):
        return None
    algorithm = environ.get("HTTP_X_AMZ_SDK_CHECKSUM_ALGORITHM")
    has_value = "HTTP_X_AMZ_CHECKSUM_CRC32" in environ
    if algorithm not in (None, "CRC32") or (algorithm is not None) != has_value:
        return None  # another algorithm, or a checksum in a trailer: moto's
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if length <= 0 or not path_style_host(environ.get("HTTP_HOST", "")):
        return None
    # WSGI gives the path's bytes, unquoted, as latin-1 text; keys are UTF-8.
    try:
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", errors="strict")
    except UnicodeError:
        return None
    bucket_name, _, key_name = path.removeprefix("/").partition("/")
    if not key_name or "%" in key_name:
        # moto's path unquotes a key once more ("%41" is stored as "A"), and so do its HEAD and
        # DELETE: such a key is left to it, to be found again by them.
        return None
    from moto.s3.models import s3_backends

    bucket = s3_backends[ACCOUNT]["aws"].buckets.get(bucket_name)
    if bucket is None or bucket.is_versioned or bucket.versioning_status is not None:
        return None
    if bucket.object_lock_enabled or bucket.cors:
        return None
    return bucket, key_name, length


def _store(environ: dict[str, Any], bucket: Any, key_name: str, body: bytes) -> list[tuple[str, str]] | None:
    """Stores the object as moto's S3Response.put_object does for such a request; its answer's
    headers, or None if the checksum does not match (moto answers that request)."""
    from moto.s3.models import s3_backends
    from moto.s3.utils import metadata_from_headers
    from werkzeug.datastructures import EnvironHeaders

    checksum = environ.get("HTTP_X_AMZ_CHECKSUM_CRC32")
    if checksum is not None and checksum != _crc32(body):
        return None
    backend = s3_backends[ACCOUNT]["aws"]
    key = backend.put_object(bucket.name, key_name, body, storage="STANDARD", checksum_value=checksum)
    key.set_metadata(metadata_from_headers(EnvironHeaders(environ)))
    key.set_acl(bucket.acl)
    key.website_redirect_location = None
    if checksum is not None:
        key.checksum_algorithm = "CRC32"
    backend.put_object_tagging(key, {})
    # What moto's S3Response.put_object answers, in its order.
    headers: dict[str, str] = {}
    if checksum is not None:
        headers["x-amz-checksum-crc32"] = checksum
    headers.update(key.response_dict)
    headers.pop("content-length", None)
    headers.pop("x-amz-sdk-checksum-algorithm", None)
    headers["Access-Control-Allow-Origin"] = "*"  # what moto's app (flask-cors) adds to every answer
    headers["Content-Type"] = "text/html; charset=utf-8"  # werkzeug's, for moto's empty body
    headers["Content-Length"] = "0"
    return [(name, str(value)) for name, value in headers.items()]


def _crc32(body: bytes) -> str:
    return base64.b64encode(binascii.crc32(body).to_bytes(4, "big")).decode()
