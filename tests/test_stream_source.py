"""The dev stack's DynamoDB stream event source (local/stream_source.py) reads GetRecords as JSON,
not through botocore's parser: the handler gets each record as Lambda hands it on AWS (DynamoDB
JSON, binary in base64, whole-second creation times), and an expired iterator is renewed after
the last record handed on, so nothing is skipped."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import keyed_table

from mailpipe_tools.local.functions import LocalFunction
from mailpipe_tools.local.stream_source import StreamPoller, StreamReadError

ITEM = {
    "pk": {"S": "user#bob@example.test ü"},
    "sk": {"S": "mailbox#INBOX"},
    "summary": {"B": b"\x00\xff binary"},
    "flags": {"SS": ["\\Seen"]},
    "uidnext": {"N": "7"},
}


@pytest.fixture
def clients(moto_dynamodb: tuple[Any, Any]) -> tuple[Any, Any]:
    return moto_dynamodb


@pytest.fixture
def stream(clients: tuple[Any, Any]) -> Iterator[str]:
    client, _ = clients
    created = keyed_table(client, "source")
    name = created["TableName"]
    yield created["LatestStreamArn"]
    client.delete_table(TableName=name)


def poller(clients: tuple[Any, Any], arn: str, batches: list[list[dict[str, Any]]]) -> StreamPoller:
    def handler(event: dict[str, Any], _context: object) -> None:
        batches.append(event["Records"])

    function = LocalFunction("RecordingFunction", "recording", handler, 30)
    return StreamPoller(clients[1], arn, function, starting_position="TRIM_HORIZON")


def test_records_reach_the_handler_as_lambda_hands_them(clients, stream) -> None:
    client, streams = clients
    client.put_item(TableName=stream.split("/")[1], Item=ITEM)
    batches: list[list[dict[str, Any]]] = []
    source = poller(clients, stream, batches)
    source._describe(first=True)
    source.poll_once()
    ((record,),) = batches
    shard = streams.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    (parsed,) = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert record["eventName"] == parsed["eventName"] == "INSERT"
    assert record["eventSourceARN"] == stream and record["awsRegion"] == "us-east-1"
    change = record["dynamodb"]
    assert change["Keys"] == {"pk": ITEM["pk"], "sk": ITEM["sk"]}
    # Binary in base64, as in Lambda's event (botocore would have decoded it to bytes).
    assert change["NewImage"] == {**ITEM, "summary": {"B": base64.b64encode(b"\x00\xff binary").decode()}}
    assert change["SequenceNumber"] == parsed["dynamodb"]["SequenceNumber"]
    created = change["ApproximateCreationDateTime"]
    assert isinstance(created, int) and created == int(
        parsed["dynamodb"]["ApproximateCreationDateTime"].timestamp()
    )


def test_an_expired_iterator_is_an_error_and_renewed_after_the_last_record(clients, stream) -> None:
    client, _ = clients
    table = stream.split("/")[1]
    client.put_item(TableName=table, Item={**ITEM, "sk": {"S": "mailbox#one"}})
    batches: list[list[dict[str, Any]]] = []
    source = poller(clients, stream, batches)
    source._describe(first=True)
    source.poll_once()
    assert [r["dynamodb"]["Keys"]["sk"]["S"] for r in batches[0]] == ["mailbox#one"]
    with pytest.raises(StreamReadError, match="GetRecords"):
        source._get_records("not-an-iterator")
    # An iterator that no longer reads: renewed after the last record handed on, so the next
    # write arrives once and the first is not handed on again.
    (shard,) = source._iterators
    source._iterators[shard] = "not-an-iterator"
    source.poll_once()
    client.put_item(TableName=table, Item={**ITEM, "sk": {"S": "mailbox#two"}})
    source.poll_once()
    handed = [r["dynamodb"]["Keys"]["sk"]["S"] for batch in batches for r in batch]
    assert handed == ["mailbox#one", "mailbox#two"]


def test_a_connection_the_server_dropped_is_made_again(clients, stream) -> None:
    client, _ = clients
    batches: list[list[dict[str, Any]]] = []
    source = poller(clients, stream, batches)
    source._describe(first=True)
    source.poll_once()
    assert source._connection is not None
    source._connection.sock.shutdown(2)  # as a server closing a kept connection would
    client.put_item(TableName=stream.split("/")[1], Item=ITEM)
    source.poll_once()
    assert [len(batch) for batch in batches] == [1]
