"""The dev stack's plain S3 GetObject, answered from moto's S3 backend without moto's request path.

Opening messages reads one S3 object per body (a FETCH of 300 bodies is 300 GETs). moto spends
~0.9 ms of CPU on each: Flask's request context, moto's routing of the URL to a service, the
parsing of the key from the URL three times, a request id made of random characters, response
headers rebuilt through werkzeug: more than the gateway's botocore spends on building, signing
and parsing the request, on a machine whose two cores the gateway and moto share
(bench/open_mailbox.py, 2026-12-05). A GetObject of a whole object, as the mail store makes it,
is answered here from the same FakeKey moto would answer from, with the same status, body and
headers (ETag, Last-Modified, Content-Length, metadata, the checksum when asked for);
everything else (ranges, conditions, versions, ?acl and other sub-resources, missing keys and
the errors they get, any header this does not know) goes to moto as before. The request is
still counted (moto_server.RequestCounter sits in front).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from mailpipe_tools.local.provision import ACCOUNT

# The headers botocore puts on every signed S3 request; each fast path adds the few its
# operation carries. Any other header changes the answer: moto answers that request.
BOTOCORE_HEADERS = frozenset(
    {
        "HTTP_HOST",
        "HTTP_USER_AGENT",
        "HTTP_ACCEPT",
        "HTTP_ACCEPT_ENCODING",
        "HTTP_CONNECTION",
        "HTTP_AUTHORIZATION",
        "HTTP_X_AMZ_DATE",
        "HTTP_X_AMZ_CONTENT_SHA256",
        "HTTP_X_AMZ_SECURITY_TOKEN",
        "HTTP_AMZ_SDK_INVOCATION_ID",
        "HTTP_AMZ_SDK_REQUEST",
    }
)
# A plain GetObject's headers; one with a Range, If-*, SSE-C keys, a CORS Origin or a request
# payer goes to moto.
_PLAIN_HEADERS = BOTOCORE_HEADERS | {"HTTP_X_AMZ_CHECKSUM_MODE"}


class PlainObjectReads:
    """WSGI middleware: answers path-style GETs of a whole S3 object itself, passes on the rest."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = _plain_get(environ) if environ.get("REQUEST_METHOD") == "GET" else None
        if answer is None:
            return self._app(environ, start_response)
        headers, body = answer
        start_response("200 OK", headers)
        return [body]


def _plain_get(environ: dict[str, Any]) -> tuple[list[tuple[str, str]], bytes] | None:
    """The headers and body of the object a plain GetObject asks for; None: moto should answer."""
    if environ.get("QUERY_STRING") or not s3_signed(environ.get("HTTP_AUTHORIZATION", "")):
        return None
    if any(name.startswith("HTTP_") and name not in _PLAIN_HEADERS for name in environ):
        return None
    if not path_style_host(environ.get("HTTP_HOST", "")):
        return None
    # WSGI gives the path's bytes, unquoted, as latin-1 text; keys are UTF-8.
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", errors="strict")
    key = _plain_key(path)
    if key is None:
        return None
    key.advance()
    # What moto's S3Response.get_object puts in, in its order.
    headers: dict[str, str] = {}
    if key.version_id != "null":
        headers["x-amz-version-id"] = str(key.version_id)
    headers.update(key.response_dict)
    if environ.get("HTTP_X_AMZ_CHECKSUM_MODE") == "ENABLED" and key.checksum_algorithm:
        headers[f"x-amz-checksum-{key.checksum_algorithm.lower()}"] = key.checksum_value
        if key.checksum_type:
            headers["x-amz-checksum-type"] = key.checksum_type
    headers.update(key.metadata)
    headers["Accept-Ranges"] = "bytes"
    headers["Access-Control-Allow-Origin"] = "*"  # what moto's app (flask-cors) adds to every answer
    body = key.value
    headers["content-length"] = str(len(body))
    return [(name, str(value)) for name, value in headers.items()], body


def plain_get_request(request: Any, max_bytes: int) -> bool:
    """Whether waitress's parsed `request` is a plain GetObject of an object of at most
    `max_bytes` that _plain_get will answer (inline_gets.py serves those on waitress's loop
    thread). Stricter than _plain_get: any header beyond botocore's goes to a worker."""
    if request.command != "GET" or request.query or request.error or request.expect_continue:
        return False
    headers = request.headers
    if not s3_signed(headers.get("AUTHORIZATION", "")):
        return False
    if any("HTTP_" + name not in _PLAIN_HEADERS for name in headers):
        return False
    if not path_style_host(headers.get("HOST", "")):
        return False
    try:
        path = request.path.encode("latin-1").decode("utf-8", errors="strict")
    except UnicodeError:
        return False
    key = _plain_key(path)
    return key is not None and key.contentsize is not None and key.contentsize <= max_bytes


def _plain_key(path: str) -> Any:
    """The FakeKey a plain GET of `path` (/bucket/key) is answered from; None: moto answers."""
    bucket_name, _, key_name = path.removeprefix("/").partition("/")
    if not key_name:
        return None
    from moto.s3.models import FakeKey, s3_backends

    bucket = s3_backends[ACCOUNT]["aws"].buckets.get(bucket_name)
    if bucket is None or bucket.versioning_status is not None:
        return None
    key = bucket.keys.get(key_name)
    if not isinstance(key, FakeKey) or key.storage_class != "STANDARD" or key.multipart is not None:
        return None
    return key


def s3_signed(authorization: str) -> bool:
    return "/s3/aws4_request" in authorization


def path_style_host(host: str) -> bool:
    """Whether the Host names the endpoint itself (an address or localhost), not `bucket.host`."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
