"""SigV4 as mailpipe's hand-signed AWS requests make it (s3_gets.py, s3_puts.py,
dynamo_transactions.py), and where botocore would send them.

Each of those requests is one botocore would make, signed the same way (their tests compare the
two): the canonical request of a method, a path already URI-encoded (S3 style: not encoded again),
no query, some lower-case headers in sorted order and the payload's SHA-256, signed with the day's
key. The key is four HMACs, made once a day per secret, not per request as botocore does.

The endpoint and the region to sign for are botocore's own choice: read off a request of the
client's, stopped in botocore's before-send event before it leaves (`probe`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit
from urllib.request import getproxies, proxy_bypass

log = logging.getLogger(__name__)


def credentials_of(client: Any) -> Any | None:
    """A botocore client's credentials (refreshed by botocore when they expire, e.g. a task
    role's); None if it has none, and then nothing is signed here."""
    return getattr(getattr(client, "_request_signer", None), "_credentials", None)


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class SigningKeys:
    """The day's signing keys of one service, by secret, day and region."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def get(self, secret: str, day: str, region: str) -> bytes:
        slot = (secret, day, region)
        key = self._keys.get(slot)
        if key is None:
            key = signing_key(secret, day, region, self._service)
            if len(self._keys) > 16:  # rotated secrets and past days
                self._keys.clear()
            self._keys[slot] = key
        return key


def authorization(
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    payload_sha256: str,
    stamp: str,
    region: str,
    service: str,
    access_key: str,
    key: bytes,
) -> str:
    """The Authorization header of a request without a query, signing `headers` (lower-case
    names, sorted) and a payload of that SHA-256."""
    names = ";".join(name for name, _ in headers)
    canonical = "\n".join(
        [method, path, "", *(f"{name}:{value.strip()}" for name, value in headers), "", names, payload_sha256]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, Signature={signature}"


class Probed(NamedTuple):
    url: SplitResult  # where botocore would send the request
    region: str  # the region it signs for
    port: int


class _Captured(Exception):
    def __init__(self, url: str, authorization: str) -> None:
        super().__init__(url)
        self.url, self.authorization = url, authorization


_probing = threading.local()


def _capture(request: Any, **_: Any) -> None:
    """botocore's before-send hook: stops a probe's request (only it) with what it would send."""
    if getattr(_probing, "active", False):
        header = request.headers.get("Authorization", b"")  # bytes, once signed
        if isinstance(header, bytes):
            header = header.decode("ascii", errors="replace")
        raise _Captured(request.url, header)


def probe(client: Any, event: str, service: str, call: Callable[[], Any], what: str) -> Probed | None:
    """Where `client` sends the request `call()` makes (its botocore `event`, say
    "before-send.s3.GetObject") and the region it signs for, read off that request stopped before it
    is sent; None if no such request is made, it is not of the expected shape (http(s), no query,
    no user info, a SigV4 Authorization for `service`), or a proxy would be used. `what` names the
    requests that go through botocore then, for the log line."""
    client.meta.events.register(event, _capture, unique_id=f"mailpipe-sigv4-probe-{event}")
    _probing.active = True
    try:
        call()
    except _Captured as captured:
        url, header = captured.url, captured.authorization
    except Exception as exc:  # any failure here only means: use botocore
        log.info("%s through botocore: no request to read the endpoint from (%s)", what, exc)
        return None
    else:
        return None
    finally:
        _probing.active = False
    parts = urlsplit(url)
    scope = re.search(rf"Credential=[^/,]+/\d{{8}}/([^/,]+)/{service}/aws4_request", header)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.username
        or not header.startswith("AWS4-HMAC-SHA256 ")
        or scope is None
    ):
        log.info("%s through botocore: unexpected request to %s", what, parts._replace(query="").geturl())
        return None
    if getproxies().get(parts.scheme) and not proxy_bypass(parts.hostname):
        return None
    return Probed(parts, scope[1], parts.port or (443 if parts.scheme == "https" else 80))
