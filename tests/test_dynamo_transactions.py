"""mailpipe.dynamo_transactions: TransactWriteItems signed here, botocore for anything but a 200.

The request is checked against the one botocore would send for the same items, token and moment
(moto does not check signatures); commits and cancellations against a real moto server; the
fall-backs against a small real HTTP server that misbehaves on purpose.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError, EndpointConnectionError
from conftest import keyed_table
from scripted_server import ScriptedServer

from mailpipe import aws
from mailpipe.dynamo_transactions import TARGET, Transactions, request_body

ITEMS: list[dict[str, Any]] = [
    {
        "Update": {
            "TableName": "mail",
            "Key": {"pk": "owner#bob@example.test", "sk": "mailbox#INBOX"},
            "UpdateExpression": "SET highestmodseq = :modseq, uidnext = :next ADD size_total :size",
            "ConditionExpression": "uidnext = :uid AND highestmodseq = :prev AND mailbox_id = :id",
            "ExpressionAttributeValues": {
                ":prev": 41,
                ":modseq": 42,
                ":id": "m-1",
                ":uid": 7,
                ":next": 8,
                ":size": Decimal("1234"),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    },
    {
        "Put": {
            "TableName": "mail",
            "Item": {
                "pk": "msgs#m-1",
                "sk": "uid#0000000007",
                "uid": 7,
                "flags": ["\\Seen", "$Junk"],
                "summary": b"\x00\xffpacked",
                "header": Binary(b"Subject: x\r\n\r\n"),
                "tags": {"a", "b"},
                "nothing": None,
                "yes": True,
                "nested": {"list": [1, "two", b"3"], "empty": {}},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    },
    {"Delete": {"TableName": "mail", "Key": {"pk": "msgs#m-1", "sk": "delivery#x"}}},
    {
        "ConditionCheck": {
            "TableName": "mail",
            "Key": {"pk": "owner#bob@example.test", "sk": "directory"},
            "ConditionExpression": "attribute_exists(pk) AND #q < :limit",
            "ExpressionAttributeNames": {"#q": "quota"},
            "ExpressionAttributeValues": {":limit": 10**12},
        }
    },
]


class _Stop(Exception):
    pass


def _sets_sorted(value: Any) -> Any:
    """`value` with its string, number and binary sets' members in order: a set's iteration order
    depends on the process's hash seed and on how the set was built, and boto3 copies the
    parameters before botocore types them, so the two bodies may list a set's members apart."""
    if isinstance(value, dict):
        return {k: sorted(v) if k in ("SS", "NS", "BS") else _sets_sorted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sets_sorted(v) for v in value]
    return value


def _resource_client(endpoint_url: str | None, token: str | None = None) -> Any:
    """A table resource's client, as the mail store's: it takes plain values."""
    return (
        boto3.session.Session()
        .resource(
            "dynamodb",
            region_name="eu-west-3",
            endpoint_url=endpoint_url,
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            aws_session_token=token,
            config=aws._CONFIG,
        )
        .meta.client
    )


def _botocore_request(
    client: Any, items: list[dict[str, Any]], token: str
) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def stop(request, **_) -> None:
        seen["url"] = request.url
        seen["headers"] = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        seen["body"] = request.body
        raise _Stop

    client.meta.events.register("before-send.dynamodb.TransactWriteItems", stop)
    try:
        with pytest.raises(_Stop):
            client.transact_write_items(TransactItems=items, ClientRequestToken=token)
    finally:
        client.meta.events.unregister("before-send.dynamodb.TransactWriteItems", stop)
    return seen["url"], seen["headers"], seen["body"]


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:4566"])
def test_the_request_is_the_one_botocore_sends(endpoint_url, token, monkeypatch) -> None:
    """Same URL, same body (every kind of value, typed as boto3 types them), same signed headers
    and Authorization at the same second, on AWS's endpoint and on an endpoint URL."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    client = _resource_client(endpoint_url, token)
    transactions = Transactions(client)
    endpoint = transactions.endpoint
    assert endpoint is not None and endpoint.region == "eu-west-3"
    url, theirs, their_body = _botocore_request(client, ITEMS, "token-1")
    assert url == f"{endpoint.scheme}://{endpoint.host}{endpoint.path}"
    body = request_body(ITEMS, "token-1")
    assert _sets_sorted(json.loads(body)) == _sets_sorted(json.loads(their_body))
    # Signed over botocore's bytes: the signature of the same bytes is the same.
    ours = dict(transactions.signed_headers(their_body, stamp=theirs["x-amz-date"]))
    assert ours.pop("host") == endpoint.host
    assert ours == {name: theirs[name] for name in ours}
    assert ours["x-amz-target"] == TARGET


def test_a_float_is_refused_as_boto3_refuses_it() -> None:
    with pytest.raises(TypeError):
        request_body([{"Put": {"TableName": "t", "Item": {"pk": "a", "f": 1.5}}}], "t")


@pytest.fixture
def table(moto_here: Any) -> Iterator[tuple[Any, str]]:
    """A table resource's client on the tests' moto server, and a table keyed like the mailbox
    table; deleted after."""
    client = (
        boto3.session.Session()
        .resource(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=moto_here.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=aws._CONFIG,
        )
        .meta.client
    )
    name = keyed_table(client, "lean-tx", stream=False)["TableName"]
    yield client, name
    client.delete_table(TableName=name)


def _guarded(name: str, expected: int) -> list[dict[str, Any]]:
    return [
        {
            "Update": {
                "TableName": name,
                "Key": {"pk": "owner", "sk": "mailbox"},
                "UpdateExpression": "SET modseq = :next",
                "ConditionExpression": "attribute_not_exists(pk) OR modseq = :prev",
                "ExpressionAttributeValues": {":prev": expected, ":next": expected + 1},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {
            "Put": {
                "TableName": name,
                "Item": {
                    "pk": "msgs",
                    "sk": f"uid#{expected}",
                    "body": b"\x00bytes\xff",
                    "flags": ["\\Seen"],
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]


def test_a_transaction_commits_what_botocore_would(table) -> None:
    client, name = table
    transactions = Transactions(client)
    assert transactions.endpoint is not None
    for modseq in range(3):
        transactions.write(_guarded(name, modseq))
    got = client.get_item(TableName=name, Key={"pk": "msgs", "sk": "uid#2"})["Item"]
    assert got == {"pk": "msgs", "sk": "uid#2", "body": Binary(b"\x00bytes\xff"), "flags": ["\\Seen"]}
    assert client.get_item(TableName=name, Key={"pk": "owner", "sk": "mailbox"})["Item"]["modseq"] == 3


def test_a_cancelled_transaction_raises_what_botocore_raises(table) -> None:
    """The guard fails: the caller gets botocore's ClientError, the reasons and the item as it is."""
    client, name = table
    transactions = Transactions(client)
    transactions.write(_guarded(name, 0))
    with pytest.raises(ClientError) as ours:
        transactions.write(_guarded(name, 5))
    with pytest.raises(ClientError) as theirs:
        client.transact_write_items(TransactItems=_guarded(name, 5))
    assert ours.value.response["Error"] == theirs.value.response["Error"]
    assert ours.value.response["CancellationReasons"] == theirs.value.response["CancellationReasons"]
    assert ours.value.response["CancellationReasons"][0]["Item"]["modseq"] == {"N": "1"}
    assert "Item" not in client.get_item(TableName=name, Key={"pk": "msgs", "sk": "uid#5"})


def test_a_server_error_is_sent_again_by_botocore_with_the_same_token() -> None:
    """A 500 (or a lost answer): botocore sends it again with the same ClientRequestToken, so
    DynamoDB does not apply a transaction twice that the first request did commit."""
    error = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"x"}'
    failed = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error)
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}"
    server = ScriptedServer(lambda n: failed if n == 1 else answer, close_after=lambda n: False)
    try:
        client = _resource_client(f"http://127.0.0.1:{server.port}")
        Transactions(client).write(ITEMS)
        tokens = [json.loads(body)["ClientRequestToken"] for _, body in server.requests]
        assert len(tokens) == 2 and tokens[0] == tokens[1]
        assert len(server.lean()) == 1
    finally:
        server.stop()


def test_one_connection_serves_every_transaction_and_one_the_server_closed_is_made_anew() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    for close in (False, True):
        server = ScriptedServer(lambda n: answer, close_after=lambda n, close=close: close)
        try:
            transactions = Transactions(_resource_client(f"http://127.0.0.1:{server.port}"))
            for _ in range(3):
                transactions.write(ITEMS)
            assert len(server.lean()) == 3 == len(server.requests)
        finally:
            server.stop()


def test_an_endpoint_that_refuses_connections_fails_as_botocore_does() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(EndpointConnectionError):
        Transactions(_resource_client(f"http://127.0.0.1:{port}")).write(ITEMS)
