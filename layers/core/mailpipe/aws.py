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
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=3,
    read_timeout=20,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=64,
)


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
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=_CONFIG)


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
