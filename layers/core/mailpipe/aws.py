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
