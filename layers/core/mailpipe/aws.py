"""boto3 clients with timeouts short enough for a mail server.

boto3's defaults (60 s connect, 60 s read, retries) would hold an SMTP client for
minutes when S3 or SQS is down; a sender should instead get a 4xx quickly and retry.
boto3 itself honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>, which is how
the dev stack and the tests point everything at moto.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
import boto3.dynamodb.transform
from boto3.dynamodb.conditions import ConditionExpressionBuilder
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=3,
    read_timeout=20,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=64,
)


class _PerThreadConditionBuilder(ConditionExpressionBuilder):
    """boto3's builder of condition expressions, counting its placeholders per thread.

    A table resource turns `Key(...)`/`Attr(...)` conditions into placeholders (#n0, :v0, ...) with
    one builder shared by every thread using the resource, and the builder counts on itself: two
    threads building at once reuse each other's numbers, and one request goes out naming the
    wrong attributes ("Query condition missed key schema element: pk"). mailpipe shares a table
    resource between the gateways' threads (RCPT's quota check, IMAP sessions), so the counts are
    kept per thread.
    """

    def __init__(self) -> None:
        self._counts = threading.local()
        super().__init__()

    @property  # type: ignore[override]
    def _name_count(self) -> int:
        return getattr(self._counts, "names", 0)

    @_name_count.setter
    def _name_count(self, value: int) -> None:
        self._counts.names = value

    @property  # type: ignore[override]
    def _value_count(self) -> int:
        return getattr(self._counts, "values", 0)

    @_value_count.setter
    def _value_count(self, value: int) -> None:
        self._counts.values = value


# Every table resource made from now on builds its conditions with it (TransformationInjector
# makes its builder from this name).
boto3.dynamodb.transform.ConditionExpressionBuilder = _PerThreadConditionBuilder  # type: ignore[misc]


# Making a client costs ~0.1 s of CPU (botocore loads its service models): when the first burst of
# SMTP sessions all need one at once, one thread makes it and the others wait for it.
_MAKING = threading.Lock()


def client(service: str, endpoint_url: str | None = None) -> Any:
    """A shared, thread-safe client per (service, endpoint)."""
    with _MAKING:
        return _client(service, endpoint_url)


def table(name: str, endpoint_url: str | None = None) -> Any:
    with _MAKING:
        return _table(name, endpoint_url)


@cache
def _client(service: str, endpoint_url: str | None) -> Any:
    made = boto3.session.Session().client(service, endpoint_url=endpoint_url, config=_CONFIG)
    if service == "s3":
        made.meta.events.register("before-call.s3", _no_wait_to_send_small_bodies)
    return made


# botocore asks S3 for a `100 Continue` before sending any PUT's body, whatever its size: a round
# trip more per PUT (an APPEND's, a spooled message's), and on a busy machine a wait until the
# endpoint is scheduled to answer. It saves sending a body that would be refused; below this size
# sending it anyway is cheaper than the extra round trip every time (mail is mostly tens of KB).
CONTINUE_FROM_BYTES = 1024 * 1024


def _no_wait_to_send_small_bodies(params: dict[str, Any], **_: Any) -> None:
    """Runs after botocore's add_expect_header (registered before it, when the client was made)
    and takes its header off again for a body known to be small."""
    headers = params.get("headers") or {}
    if headers.get("Expect") != "100-continue":
        return
    size = _body_size(params.get("body"))
    if size is not None and size < CONTINUE_FROM_BYTES:
        del headers["Expect"]


def _body_size(body: Any) -> int | None:
    if isinstance(body, bytes | bytearray):
        return len(body)
    getbuffer = getattr(body, "getbuffer", None)  # BytesIO: what botocore wraps bytes in
    if getbuffer is not None:
        return int(getbuffer().nbytes - body.tell())
    return None  # a file or stream of unknown length: ask before sending it


@cache
def _table(name: str, endpoint_url: str | None) -> Any:
    resource = boto3.session.Session().resource("dynamodb", endpoint_url=endpoint_url, config=_CONFIG)
    return resource.Table(name)


# SQS long polls (the change feed's WaitTimeSeconds=20) need a read timeout longer than the wait.
_LONG_POLL_CONFIG = _CONFIG.merge(Config(read_timeout=30))


def long_poll_client(service: str, endpoint_url: str | None = None) -> Any:
    """A client whose reads may wait up to 30 s: for SQS long polls, not for a mail session."""
    with _MAKING:
        return _long_poll_client(service, endpoint_url)


@cache
def _long_poll_client(service: str, endpoint_url: str | None) -> Any:
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=_LONG_POLL_CONFIG)
