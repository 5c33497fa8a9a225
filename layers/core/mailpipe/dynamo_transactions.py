"""The mail store's DynamoDB TransactWriteItems with a SigV4 signature made here, on kept-alive
connections; botocore for anything but a plain success.

Every change to a mailbox is one TransactWriteItems (an APPEND's, a STORE's, an EXPUNGE's). Through
the table resource's client botocore spends ~1.2-1.5 ms of CPU on one (py-spy of `mailpipe dev`
under APPENDs, 2026-12-06): boto3's walk of the request to type every value, parameter
validation, ~30 event hooks, endpoint rules, a fresh signing key, urllib3 and http.client, and
the parsing of the answer. A transaction that commits needs its items typed (boto3's own
TypeSerializer), one JSON body, four signed headers and an HMAC with the day's key, and a
status line read back.

The request is the one botocore sends (tests/test_dynamo_transactions.py compares them): the same
URL, body, signed headers and Authorization, with a ClientRequestToken. Only a 200 is taken
here. Anything else (a cancellation, a throttle, a 5xx, a broken connection, a timeout) is sent
again through botocore with the same ClientRequestToken, and botocore's answer (its retries, its
ClientError with the CancellationReasons callers read) is the caller's: DynamoDB makes a
transaction with a token it already committed a success without doing it twice, so a request
whose answer was lost is not applied twice. A cancelled transaction so costs two requests; a
cancellation is a conflict between writers, which back off and rebuild anyway.

The endpoint and signing region are botocore's, read once off a TransactWriteItems stopped before
it is sent (so account-based endpoints and endpoint URLs are botocore's choice too); the
credentials are the client's, refreshed by botocore.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from boto3.dynamodb.types import TypeSerializer

from mailpipe.lean_http import KeptConnections, tls_context
from mailpipe.s3_gets import signing_key

log = logging.getLogger(__name__)

TARGET = "DynamoDB_20120810.TransactWriteItems"
CONTENT_TYPE = "application/x-amz-json-1.0"
# Called with ("start" | "end", the botocore client) around every Transactions.write, whichever
# way it is sent (as s3_gets.observers: tests count a client's requests here too).
observers: list[Callable[[str, Any], None]] = []

_SERIALIZE = TypeSerializer()


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str  # as sent in Host
    hostname: str
    port: int
    path: str
    region: str


class Transactions:
    """TransactWriteItems of plain-valued items (as the table resource's client takes them);
    thread-safe (each thread keeps its own connection)."""

    def __init__(self, client: Any) -> None:
        self._client = client  # the table resource's client: takes plain values, as `write` does
        self._credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
        self._endpoint = endpoint_of(client) if self._credentials is not None else None
        self._signing_keys: dict[tuple[str, str, str], bytes] = {}
        self._connections: KeptConnections | None = None
        if self._endpoint is not None:
            tls = tls_context() if self._endpoint.scheme == "https" else None
            self._connections = KeptConnections(self._endpoint.hostname, self._endpoint.port, tls)

    @property
    def endpoint(self) -> Endpoint | None:
        """Where transactions go; None: every one through botocore."""
        return self._endpoint

    def write(self, items: list[dict[str, Any]]) -> None:
        """transact_write_items(TransactItems=items); raises botocore's ClientError as it does."""
        if not observers:
            return self._write(items)
        for observer in observers:
            observer("start", self._client)
        try:
            return self._write(items)
        finally:
            for observer in observers:
                observer("end", self._client)

    def _write(self, items: list[dict[str, Any]]) -> None:
        token = str(uuid.uuid4())
        if self._endpoint is not None and self._lean_write(items, token):
            return
        self._client.transact_write_items(TransactItems=items, ClientRequestToken=token)

    def _lean_write(self, items: list[dict[str, Any]], token: str) -> bool:
        """Whether DynamoDB answered 200 (else botocore should send it, with the same token)."""
        assert self._endpoint is not None and self._connections is not None
        try:
            body = request_body(items, token)
        except (TypeError, ValueError):
            return False  # a value boto3 cannot type: botocore raises what it raises
        head = f"POST {self._endpoint.path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in self.signed_headers(body)
        )
        request = head.encode("ascii") + b"Content-Length: %d\r\n\r\n" % len(body) + body
        return self._connections.send(request, "DynamoDB transaction") == 200

    def signed_headers(self, body: bytes, stamp: str | None = None) -> list[tuple[str, str]]:
        """The headers of a TransactWriteItems of `body` at `stamp` (now by default), signed, in
        canonical (sorted) order; Content-Length is not signed (botocore does not sign it)."""
        endpoint = self._endpoint
        assert endpoint is not None
        credentials = self._credentials.get_frozen_credentials()  # type: ignore[union-attr]
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = [
            ("content-type", CONTENT_TYPE),
            ("host", endpoint.host),
            ("x-amz-date", stamp),
        ]
        if credentials.token:
            headers.append(("x-amz-security-token", credentials.token))
        headers.append(("x-amz-target", TARGET))
        key = self._signing_key(credentials.secret_key, stamp[:8], endpoint.region)
        names = ";".join(name for name, _ in headers)
        canonical = "\n".join(
            [
                "POST",
                endpoint.path,
                "",
                *(f"{name}:{value.strip()}" for name, value in headers),
                "",
                names,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{stamp[:8]}/{endpoint.region}/dynamodb/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        authorization = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return [*headers, ("authorization", authorization)]

    def _signing_key(self, secret: str, day: str, region: str) -> bytes:
        slot = (secret, day, region)
        key = self._signing_keys.get(slot)
        if key is None:
            key = signing_key(secret, day, region, "dynamodb")
            if len(self._signing_keys) > 16:  # rotated secrets and past days
                self._signing_keys.clear()
            self._signing_keys[slot] = key
        return key


# The members of a TransactWriteItems item whose values are typed (AttributeValue maps).
_TYPED = ("Item", "Key", "ExpressionAttributeValues")


def request_body(items: list[dict[str, Any]], token: str) -> bytes:
    """The JSON botocore sends for transact_write_items(TransactItems=items, ClientRequestToken=
    token) through a table resource's client: plain values typed by boto3's TypeSerializer,
    binary values in base64. Raises TypeError for a value it cannot type (a float)."""
    typed = []
    for item in items:
        ((kind, body),) = item.items()
        typed.append(
            {
                kind: {
                    name: (
                        {key: _SERIALIZE.serialize(value) for key, value in member.items()}
                        if name in _TYPED
                        else member
                    )
                    for name, member in body.items()
                }
            }
        )
    return json.dumps({"TransactItems": typed, "ClientRequestToken": token}, default=_blob).encode()


def _blob(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON: {type(value).__name__}")


class _Captured(Exception):
    def __init__(self, url: str, authorization: str) -> None:
        super().__init__(url)
        self.url, self.authorization = url, authorization


_probing = threading.local()


def _capture(request: Any, **_: Any) -> None:
    """botocore's before-send hook: stops the probe's request (only it) with what it would send."""
    if getattr(_probing, "active", False):
        authorization = request.headers.get("Authorization", b"")
        if isinstance(authorization, bytes):
            authorization = authorization.decode("ascii", errors="replace")
        raise _Captured(request.url, authorization)


def endpoint_of(client: Any) -> Endpoint | None:
    """Where `client` sends a TransactWriteItems and the region it signs for, read off one stopped
    before it is sent; None if that request is not of the expected shape or a proxy would be used."""
    client.meta.events.register(
        "before-send.dynamodb.TransactWriteItems", _capture, unique_id="mailpipe-dynamo-transactions-probe"
    )
    _probing.active = True
    probe = [{"ConditionCheck": {"TableName": "probe", "Key": {"pk": "probe"}, "ConditionExpression": "x"}}]
    try:
        client.transact_write_items(TransactItems=probe)
    except _Captured as captured:
        url, authorization = captured.url, captured.authorization
    except Exception as exc:  # any failure here only means: use botocore
        log.info("DynamoDB transactions through botocore: no request to read the endpoint from (%s)", exc)
        return None
    else:
        return None
    finally:
        _probing.active = False
    parts = urlsplit(url)
    scope = re.search(r"Credential=[^/,]+/\d{8}/([^/,]+)/dynamodb/aws4_request", authorization)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.username
        or not authorization.startswith("AWS4-HMAC-SHA256 ")
        or scope is None
    ):
        log.info(
            "DynamoDB transactions through botocore: unexpected request to %s",
            parts._replace(query="").geturl(),
        )
        return None
    if getproxies().get(parts.scheme) and not proxy_bypass(parts.hostname):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Endpoint(parts.scheme, parts.netloc, parts.hostname, port, parts.path or "/", scope[1])
