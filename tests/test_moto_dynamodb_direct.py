"""The dev stack's moto hands DynamoDB's JSON requests to moto's handler without Flask
(moto_dynamodb_direct.py): every answer must be what moto's own Flask path gives.

Both paths run on the same moto backend in this process (moto_here), each request sent to each
through werkzeug's test client as raw WSGI; requests that change something are sent as pairs on
different keys, or fail and change nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import keyed_table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client

from mailpipe_tools.local.moto_dynamodb_direct import DirectDynamoDB

VARYING = {"x-amzn-requestid", "date"}
AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=testing/20261206/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00"
)


@pytest.fixture(scope="module")
def paths(moto_here: Any) -> tuple[Client, Client, list[int]]:
    """moto's Flask path, the direct one in front of it, and how many requests the direct one
    passed on to Flask (so a comparison cannot pass with the direct path never taken)."""
    flask_path = DomainDispatcherApplication(create_backend_app)
    passed: list[int] = [0]

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        passed[0] += 1
        return flask_path(environ, start_response)

    return Client(flask_path), Client(DirectDynamoDB(counted)), passed


@pytest.fixture(scope="module")
def table(moto_dynamodb: tuple[Any, Any]) -> str:
    client, _ = moto_dynamodb
    name = keyed_table(client, "direct")["TableName"]
    client.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "5"}})
    return name


def send(client: Client, target: str, body: Any, **extra: str) -> tuple[Any, ...]:
    """(status, headers, body) of the answer; or ("raised", the exception's type) for a request moto
    fails on (waitress answers 500 to that whichever path raised it)."""
    try:
        response = client.post(
            "/",
            data=body if isinstance(body, bytes) else json.dumps(body),
            headers={
                "X-Amz-Target": target,
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": AUTHORIZATION,
                "Host": "127.0.0.1:4566",
                **extra,
            },
        )
    except Exception as exc:
        return ("raised", type(exc))
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in VARYING}
    return response.status_code, headers, response.get_data()


def both(paths, target: str, body: Any, direct_body: Any = None) -> tuple[tuple, tuple]:
    moto, direct, passed = paths
    before = passed[0]
    theirs = send(moto, target, body)
    ours = send(direct, target, body if direct_body is None else direct_body)
    assert passed[0] == before, "the direct path passed the request on to Flask"
    return theirs, ours


DDB = "DynamoDB_20120810."


def test_reads_and_errors_are_answered_alike(paths, table) -> None:
    requests = [
        ("GetItem", {"TableName": table, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}),
        ("GetItem", {"TableName": table, "Key": {"pk": {"S": "a"}, "sk": {"S": "missing"}}}),
        (
            "Query",
            {
                "TableName": table,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "a"}},
            },
        ),
        ("DescribeTable", {"TableName": table}),
        ("GetItem", {"TableName": "no-such-table", "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}),
        ("Query", {"TableName": table, "KeyConditionExpression": "pk = = :p"}),
        ("PutItem", {"TableName": table, "Item": {"pk": {"S": "a"}}}),
        ("NoSuchOperation", {}),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": table,
                            "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                            "UpdateExpression": "SET n = :n",
                            "ConditionExpression": "n = :old",
                            "ExpressionAttributeValues": {":n": {"N": "6"}, ":old": {"N": "4"}},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    }
                ]
            },
        ),
    ]
    for operation, body in requests:
        theirs, ours = both(paths, DDB + operation, body)
        assert ours == theirs, operation
    assert both(paths, DDB + "GetItem", b"{not json")[0] == both(paths, DDB + "GetItem", b"{not json")[1]


def test_writes_are_answered_alike(paths, table) -> None:
    def put(key: str) -> dict[str, Any]:
        return {"TableName": table, "Item": {"pk": {"S": "w"}, "sk": {"S": key}, "b": {"B": "AAEC"}}}

    def transaction(key: str) -> dict[str, Any]:
        return {
            "TransactItems": [
                {"Put": {**put(key), "ConditionExpression": "attribute_not_exists(pk)"}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ],
            "ClientRequestToken": key,
        }

    for operation, make in (("PutItem", put), ("TransactWriteItems", transaction)):
        theirs, ours = both(paths, DDB + operation, make(f"{operation}-moto"), make(f"{operation}-direct"))
        assert ours == theirs, operation
    _, direct, _ = paths
    for key in ("PutItem-moto", "PutItem-direct", "TransactWriteItems-moto", "TransactWriteItems-direct"):
        got = send(direct, DDB + "GetItem", {"TableName": table, "Key": {"pk": {"S": "w"}, "sk": {"S": key}}})
        assert json.loads(got[2])["Item"]["b"] == {"B": "AAEC"}


def test_stream_reads_are_answered_alike(paths, table, moto_dynamodb) -> None:
    client, _ = moto_dynamodb
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    theirs, ours = both(paths, "DynamoDBStreams_20120810.DescribeStream", {"StreamArn": arn})
    assert ours == theirs
    shard = json.loads(ours[2])["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = {"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}
    first = send(paths[0], "DynamoDBStreams_20120810.GetShardIterator", iterator)
    second = send(paths[1], "DynamoDBStreams_20120810.GetShardIterator", iterator)
    records = [
        send(
            path,
            "DynamoDBStreams_20120810.GetRecords",
            {"ShardIterator": json.loads(answer[2])["ShardIterator"]},
        )
        for path, answer in ((paths[0], first), (paths[1], second))
    ]
    # Each answer names a new shard iterator of its own (and so has a checksum of its own).
    (status, headers, body), (our_status, our_headers, our_body) = records
    assert (our_status, our_headers.keys()) == (status, headers.keys())
    assert {k: v for k, v in our_headers.items() if k != "x-amz-crc32"} == {
        k: v for k, v in headers.items() if k != "x-amz-crc32"
    }
    assert json.loads(our_body)["Records"] == json.loads(body)["Records"] != []


def test_a_cors_request_and_other_paths_are_left_to_moto(paths, table) -> None:
    moto, direct, passed = paths
    before = passed[0]
    body = {"TableName": table}
    assert send(direct, DDB + "DescribeTable", body, Origin="http://localhost") == send(
        moto, DDB + "DescribeTable", body, Origin="http://localhost"
    )
    assert passed[0] == before + 1
