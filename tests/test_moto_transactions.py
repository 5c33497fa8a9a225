"""The dev stack's moto rolls a failed TransactWriteItems back item by item (moto_transactions.py):
what the transaction wrote is undone, its stream records are gone, and nothing else is touched."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import keyed_table


@pytest.fixture
def clients(moto_dynamodb: tuple[Any, Any]) -> tuple[Any, Any]:
    return moto_dynamodb


@pytest.fixture
def table(clients: tuple[Any, Any]) -> Iterator[str]:
    """A table like the mailbox table: partition and sort key, a stream of both images, and an item."""
    client, _ = clients
    name = keyed_table(client, "tx")["TableName"]
    client.put_item(TableName=name, Item={"pk": {"S": "u"}, "sk": {"S": "box"}, "n": {"N": "1"}})
    client.put_item(TableName=name, Item={"pk": {"S": "u"}, "sk": {"S": "gone"}, "n": {"N": "5"}})
    client.put_item(TableName=name, Item={"pk": {"S": "u"}, "sk": {"S": "other"}, "n": {"N": "3"}})
    yield name
    client.delete_table(TableName=name)


def key(sk: str) -> dict[str, Any]:
    return {"pk": {"S": "u"}, "sk": {"S": sk}}


def items(client: Any, name: str) -> dict[str, dict[str, Any]]:
    return {i["sk"]["S"]: i for i in client.scan(TableName=name, ConsistentRead=True)["Items"]}


def stream(clients: tuple[Any, Any], name: str) -> list[tuple[str, str, str]]:
    """Every record of the table's stream: (sequence number, event, sort key)."""
    client, streams = clients
    arn = client.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return [
        (r["dynamodb"]["SequenceNumber"], r["eventName"], r["dynamodb"]["Keys"]["sk"]["S"]) for r in records
    ]


def update_box(name: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": name,
            "Key": key("box"),
            "UpdateExpression": "SET n = n + :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def put_new(name: str, sk: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": name,
            "Item": {**key(sk), "body": {"S": sk}},
            "ConditionExpression": "attribute_not_exists(sk)",
        }
    }


def delete_gone(name: str) -> dict[str, Any]:
    return {"Delete": {"TableName": name, "Key": key("gone")}}


def failing_check(name: str) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": name,
            "Key": key("other"),
            "ConditionExpression": "n = :nine",
            "ExpressionAttributeValues": {":nine": {"N": "9"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def test_a_condition_failing_on_the_third_item_leaves_items_and_stream_as_they_were(clients, table) -> None:
    client, _ = clients
    before_items, before_stream = items(client, table), stream(clients, table)
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(
            TransactItems=[update_box(table), put_new(table, "new"), failing_check(table), delete_gone(table)]
        )
    error = failed.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = error["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "None", "ConditionalCheckFailed", "None"]
    assert reasons[2]["Item"]["n"] == {"N": "3"}  # ALL_OLD: the item the check saw
    assert items(client, table) == before_items
    assert stream(clients, table) == before_stream
    # The next write's record follows on from the last kept one, as if nothing had happened.
    client.put_item(TableName=table, Item=key("after"))
    after = stream(clients, table)
    assert after[:-1] == before_stream and after[-1][1:] == ("INSERT", "after")
    assert int(after[-1][0]) == int(before_stream[-1][0]) + 1


def test_a_transaction_that_holds_writes_every_item_and_its_records(clients, table) -> None:
    client, _ = clients
    before_stream = stream(clients, table)
    client.transact_write_items(TransactItems=[update_box(table), put_new(table, "new"), delete_gone(table)])
    now = items(client, table)
    assert (
        set(now) == {"box", "new", "other"}
        and now["box"]["n"] == {"N": "2"}
        and now["new"]["body"] == {"S": "new"}
    )
    assert [r[1:] for r in stream(clients, table)[len(before_stream) :]] == [
        ("MODIFY", "box"),
        ("INSERT", "new"),
        ("REMOVE", "gone"),
    ]


def test_two_operations_on_one_item_are_refused_and_change_nothing(clients, table) -> None:
    client, _ = clients
    before_items, before_stream = items(client, table), stream(clients, table)
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(
            TransactItems=[
                put_new(table, "new"),
                update_box(table),
                delete_gone(table),
                {"Delete": {"TableName": table, "Key": key("new")}},
            ]
        )
    assert failed.value.response["Error"]["Code"] == "ValidationException"
    assert "multiple operations on one item" in failed.value.response["Error"]["Message"]
    assert items(client, table) == before_items
    assert stream(clients, table) == before_stream


def test_an_update_failing_to_apply_undoes_the_operations_before_it(clients, table) -> None:
    client, _ = clients
    before_items, before_stream = items(client, table), stream(clients, table)
    broken = {
        "Update": {
            "TableName": table,
            "Key": key("fresh"),
            "UpdateExpression": "SET n = n + :missing",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    with pytest.raises(ClientError):
        client.transact_write_items(TransactItems=[update_box(table), delete_gone(table), broken])
    assert items(client, table) == before_items
    assert stream(clients, table) == before_stream


def test_writes_made_while_a_transaction_runs_survive_its_rollback(
    moto_here, clients, table, monkeypatch
) -> None:
    """moto restored a copy of the whole table taken before the transaction, undoing what other
    requests wrote meanwhile. Here the server's one-at-a-time lock is lifted and, in the middle of
    a transaction that will fail, another request writes other items of the same table over HTTP."""
    from moto.dynamodb.models import DynamoDBBackend

    client, _ = clients
    monkeypatch.setattr(moto_here.dynamodb, "lock", contextlib.nullcontext())
    original_put = DynamoDBBackend.put_item

    def write_beside() -> None:
        client.put_item(TableName=table, Item={**key("beside"), "n": {"N": "7"}})
        client.update_item(
            TableName=table,
            Key=key("gone"),
            UpdateExpression="SET n = :six",
            ExpressionAttributeValues={":six": {"N": "6"}},
        )

    def put_item(self: Any, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        result = original_put(self, table_name, item_attrs, *args, **kwargs)
        if item_attrs.get("sk") == {"S": "new"}:
            beside = threading.Thread(target=write_beside)
            beside.start()
            beside.join()
        return result

    monkeypatch.setattr(DynamoDBBackend, "put_item", put_item)
    with pytest.raises(ClientError):
        client.transact_write_items(
            TransactItems=[update_box(table), put_new(table, "new"), failing_check(table)]
        )
    now = items(client, table)
    assert now["beside"]["n"] == {"N": "7"} and now["gone"]["n"] == {"N": "6"}
    assert now["box"]["n"] == {"N": "1"} and "new" not in now
    assert [r[1:] for r in stream(clients, table)[-2:]] == [("INSERT", "beside"), ("MODIFY", "gone")]


def test_a_transaction_copies_no_table(clients, table, monkeypatch) -> None:
    """The point of moto_transactions: moto's own copy of each table named is skipped. Fails if a
    moto upgrade copies tables some other way (the rollback would still be right, only slow)."""
    from moto.dynamodb.models.table import Table

    def refuse(self: Any, memo: Any) -> Any:
        raise AssertionError("a table was deep-copied")

    monkeypatch.setattr(Table, "__deepcopy__", refuse, raising=False)
    client, _ = clients
    client.transact_write_items(TransactItems=[update_box(table), put_new(table, "new")])
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(
            TransactItems=[update_box(table), put_new(table, "second"), failing_check(table)]
        )
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert items(client, table)["box"]["n"] == {"N": "2"}
