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
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from mailpipe import sigv4
from mailpipe.lean_http import KeptConnections

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
        self._credentials = sigv4.credentials_of(client)
        self._endpoint = endpoint_of(client) if self._credentials is not None else None
        self._signing_keys = sigv4.SigningKeys("dynamodb")
        self._connections = KeptConnections.to(self._endpoint)

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
        key = self._signing_keys.get(credentials.secret_key, stamp[:8], endpoint.region)
        authorization = sigv4.authorization(
            "POST",
            endpoint.path,
            headers,
            hashlib.sha256(body).hexdigest(),
            stamp,
            endpoint.region,
            "dynamodb",
            credentials.access_key,
            key,
        )
        return [*headers, ("authorization", authorization)]


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


def endpoint_of(client: Any) -> Endpoint | None:
    """Where `client` sends a TransactWriteItems and the region it signs for, read off one stopped
    before it is sent; None if that request is not of the expected shape or a proxy would be used."""
    probe = [{"ConditionCheck": {"TableName": "probe", "Key": {"pk": "probe"}, "ConditionExpression": "x"}}]
    probed = sigv4.probe(
        client,
        "before-send.dynamodb.TransactWriteItems",
        "dynamodb",
        lambda: client.transact_write_items(TransactItems=probe),
        "DynamoDB transactions",
    )
    if probed is None:
        return None
    url = probed.url
    return Endpoint(url.scheme, url.netloc, str(url.hostname), probed.port, url.path or "/", probed.region)
