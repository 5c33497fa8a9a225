"""The dev stack's moto server: transactions stay all-or-nothing with the fast path."""

from __future__ import annotations

import secrets

import pytest
from botocore.exceptions import ClientError

from mailpipe import aws


@pytest.fixture
def table(stack):
    client = aws.client("dynamodb")
    name = f"tx-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName=name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    yield client, name
    client.delete_table(TableName=name)


def items(client, name: str) -> dict[str, dict]:
    return {i["pk"]["S"]: i for i in client.scan(TableName=name, ConsistentRead=True)["Items"]}


def update_a(expected: str, expression: str = "SET n = :new") -> dict:
    return {
        "Update": {
            "TableName": "",
            "Key": {"pk": {"S": "a"}},
            "UpdateExpression": expression,
            "ConditionExpression": "n = :old",
            "ExpressionAttributeValues": {":old": {"N": expected}, ":new": {"N": "2"}},
        }
    }


def put_b() -> dict:
    return {
        "Put": {
            "TableName": "",
            "Item": {"pk": {"S": "b"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def named(name: str, *operations: dict) -> list[dict]:
    for operation in operations:
        next(iter(operation.values()))["TableName"] = name
    return list(operations)


def test_a_transaction_that_holds_applies_every_operation(table) -> None:
    client, name = table
    client.transact_write_items(TransactItems=named(name, update_a("1"), put_b()))
    assert items(client, name)["a"]["n"] == {"N": "2"} and "b" in items(client, name)


def test_a_failed_condition_changes_nothing_and_names_the_operation(table) -> None:
    client, name = table
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(TransactItems=named(name, put_b(), update_a("7")))
    reasons = [r["Code"] for r in failed.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert set(items(client, name)) == {"a"} and items(client, name)["a"]["n"] == {"N": "1"}


def test_an_operation_failing_after_the_checks_changes_nothing(table) -> None:
    client, name = table
    broken = update_a("1", expression="SET n = n + :missing")  # passes the condition, fails to apply
    with pytest.raises(ClientError):
        client.transact_write_items(TransactItems=named(name, put_b(), broken))
    assert set(items(client, name)) == {"a"} and items(client, name)["a"]["n"] == {"N": "1"}
