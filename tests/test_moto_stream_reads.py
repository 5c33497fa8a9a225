"""The dev stack's moto serialises DynamoDB Streams GetRecords itself (moto_stream_reads.py): the
answer must be the bytes moto's own serialiser writes, for every kind of attribute value."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.request import Request, urlopen

import pytest

from mailpipe_tools.local import moto_stream_reads

# Headers that differ between any two answers.
VARYING = {"date", "x-amzn-requestid", "connection"}


@pytest.fixture
def clients(moto_dynamodb: tuple[Any, Any]) -> tuple[Any, Any]:
    return moto_dynamodb


@pytest.fixture
def table(clients: tuple[Any, Any]) -> Iterator[str]:
    client, _ = clients
    name = f"streams-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield name
    client.delete_table(TableName=name)


# Every kind of attribute value, nested, with binary that is not UTF-8 and text that is not ASCII.
EVERY_KIND = {
    "pk": {"S": "bob@example.test ü€"},
    "sk": {"N": "7"},
    "text": {"S": 'quote " back\\slash \u2028 \x00'},
    "amount": {"N": "-1.50E+3"},
    "summary": {"B": b"\x00\xff\xfe summary"},
    "strings": {"SS": ["\\Seen", "\\Flagged", "$label"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"\x01", b"\x80\x81"]},
    "nothing": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "map": {"M": {"inner": {"B": b"\xc3"}, "list": {"L": [{"S": "x"}, {"N": "1"}, {"BS": [b"y"]}]}}},
    "list": {"L": [{"M": {"k": {"NULL": True}}}, {"L": []}, {"SS": ["a"]}, {"BOOL": False}]},
    "empty": {"S": ""},
}


def get_records(endpoint: str, iterator: str) -> tuple[int, dict[str, str], bytes]:
    """A raw GetRecords over HTTP: status, headers (lowercased, less VARYING) and body bytes."""
    request = Request(
        endpoint + "/",
        data=json.dumps({"ShardIterator": iterator, "Limit": 1000}).encode(),
        headers={
            "X-Amz-Target": "DynamoDBStreams_20120810.GetRecords",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261205/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    with urlopen(request, timeout=10) as response:
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in VARYING}
        return response.status, headers, response.read()


def without_next_iterator(body: bytes) -> bytes:
    """The answer with its NextShardIterator (a new random one at every GetRecords) blanked."""
    next_iterator = json.loads(body)["NextShardIterator"]
    return body.replace(json.dumps(next_iterator).encode(), b'"next"')


def test_get_records_answers_the_bytes_moto_writes(moto_here, clients, table, monkeypatch) -> None:
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    client, streams = clients
    client.put_item(TableName=table, Item=EVERY_KIND)
    client.update_item(
        TableName=table,
        Key={"pk": EVERY_KIND["pk"], "sk": EVERY_KIND["sk"]},
        UpdateExpression="SET amount = :n REMOVE summary",
        ExpressionAttributeValues={":n": {"N": "2"}},
    )
    client.put_item(TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": "1"}})
    client.transact_write_items(
        TransactItems=[
            {"Delete": {"TableName": table, "Key": {"pk": {"S": "p"}, "sk": {"N": "1"}}}},
            {"Put": {"TableName": table, "Item": {**EVERY_KIND, "sk": {"N": "8"}}}},
        ]
    )
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

    status, headers, body = get_records(moto_here.endpoint, iterator)
    patched = DynamoDBStreamsHandler.serialized
    assert getattr(patched, "mailpipe_plain", False)
    monkeypatch.setattr(DynamoDBStreamsHandler, "serialized", patched.moto_serialized)
    moto_status, moto_headers, moto_body = get_records(moto_here.endpoint, iterator)

    events = [r["eventName"] for r in json.loads(body)["Records"]]
    assert events == ["INSERT", "MODIFY", "INSERT", "REMOVE", "INSERT"]
    assert (status, headers) == (moto_status, moto_headers)
    assert without_next_iterator(body) == without_next_iterator(moto_body)
    # And boto3 reads the binary back as it was written.
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert records[0]["dynamodb"]["NewImage"]["summary"] == {"B": EVERY_KIND["summary"]["B"]}
    assert records[0]["dynamodb"]["NewImage"]["map"]["M"]["inner"] == {"B": b"\xc3"}


def test_what_moto_would_write_differently_is_left_to_moto() -> None:
    """A member the service model does not have, or a value of a type moto's serialiser would
    convert, is not guessed at: the answer goes to moto's own serialiser."""
    record = {"eventID": "1", "eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "p"}}}}
    assert moto_stream_reads.get_records_output({"Records": [record]})["Records"] == [record]
    for unusual in (
        {**record, "extra": "x"},
        {**record, "dynamodb": {"Keys": {"pk": {"S": 1}}}},
        {**record, "dynamodb": {"Keys": {"pk": {"X": "p"}}}},
        {**record, "dynamodb": {"ApproximateCreationDateTime": 1.5}},
        {**record, "userIdentity": {"Type": "Service"}},
    ):
        with pytest.raises(moto_stream_reads._Unusual):
            moto_stream_reads.get_records_output({"Records": [unusual]})
