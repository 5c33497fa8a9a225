"""The dev stack's moto pages a Query of a partition from that partition only (moto_queries.py):
pages must still hold every item once, in key order, whichever way and from wherever they start."""

from __future__ import annotations

import secrets

import pytest

from mailpipe import aws

OTHER_PARTITIONS = ("a", "q", "z")  # before and after "p" in the table's items


def make_table(client, sort_type: str) -> str:
    name = f"pages-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": sort_type},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def strings(stack):
    client = aws.client("dynamodb")
    name = make_table(client, "S")
    # Written out of order, with keys whose order by code point is not their order by length.
    keys = [f"u#{n:05d}" for n in range(0, 120, 1)] + ["d#x", "u#", "u#ü", "u#z", "v"]
    for key in reversed(keys):
        client.put_item(
            TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": key}, "v": {"B": key.encode() * 50}}
        )
    for other in OTHER_PARTITIONS:
        for n in range(20):
            client.put_item(TableName=name, Item={"pk": {"S": other}, "sk": {"S": f"u#{n:05d}"}})
    yield client, name, sorted(keys)
    client.delete_table(TableName=name)


def pages(client, name: str, limit: int | None = None, **query) -> list[list[str]]:
    """The sort keys of every page of the Query, page by page."""
    result, start = [], None
    while True:
        kwargs = dict(query, TableName=name, ConsistentRead=True)
        if limit:
            kwargs["Limit"] = limit
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = client.query(**kwargs)
        result.append([item["sk"].get("S", item["sk"].get("N")) for item in response["Items"]])
        start = response.get("LastEvaluatedKey")
        if not start:
            return result


def partition(key: str, condition: str = "", **values) -> dict:
    expression = "pk = :pk" + (f" AND {condition}" if condition else "")
    return {
        "KeyConditionExpression": expression,
        "ExpressionAttributeValues": {":pk": {"S": key}, **values},
    }


@pytest.mark.parametrize("limit", [None, 1, 7, 50])
def test_pages_hold_the_partition_once_in_order(strings, limit) -> None:
    client, name, keys = strings
    got = pages(client, name, limit, **partition("p"))
    assert [key for page in got for key in page] == keys
    if limit:
        assert all(len(page) <= limit for page in got)


def test_pages_backwards(strings) -> None:
    client, name, keys = strings
    got = pages(client, name, 9, ScanIndexForward=False, **partition("p"))
    assert [key for page in got for key in page] == keys[::-1]


def test_pages_of_a_key_range(strings) -> None:
    client, name, keys = strings
    between = partition("p", "sk BETWEEN :lo AND :hi", **{":lo": {"S": "u#00010"}, ":hi": {"S": "u#00100"}})
    got = pages(client, name, 13, **between)
    assert [key for page in got for key in page] == [k for k in keys if "u#00010" <= k <= "u#00100"]
    prefix = partition("p", "begins_with(sk, :prefix)", **{":prefix": {"S": "u#"}})
    got = pages(client, name, 11, ScanIndexForward=False, **prefix)
    assert [key for page in got for key in page] == [k for k in keys if k.startswith("u#")][::-1]


def test_pages_by_size_carry_on_where_they_stopped(strings) -> None:
    # moto's pages stop at 1 MB: three items of 390 KB need two pages at least.
    client, name, keys = strings
    big = ["u#00020x", "u#00050x", "u#00090x"]
    for key in big:
        client.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": key}, "v": {"B": b"x" * 390_000}})
    got = pages(client, name, **partition("p"))
    assert len(got) > 1
    assert [key for page in got for key in page] == sorted([*keys, *big])


def test_a_start_key_no_longer_there_starts_after_where_it_was(strings) -> None:
    client, name, keys = strings
    first = client.query(TableName=name, Limit=5, ConsistentRead=True, **partition("p"))
    client.delete_item(TableName=name, Key=first["LastEvaluatedKey"])
    rest = client.query(
        TableName=name, ExclusiveStartKey=first["LastEvaluatedKey"], ConsistentRead=True, **partition("p")
    )
    assert [item["sk"]["S"] for item in rest["Items"]] == keys[5:]


def test_numbers_page_by_value_and_reads_keep_every_type(stack) -> None:
    client = aws.client("dynamodb")
    name = make_table(client, "N")
    try:
        numbers = ["-5", "0.5", "2", "10", "100", "1e3"]
        item = {
            "b": {"B": bytes(range(256))},
            "bs": {"BS": [b"\x00", b"\xff"]},
            "m": {"M": {"l": {"L": [{"S": "é"}, {"N": "1.5"}, {"BOOL": True}, {"NULL": True}]}}},
            "ss": {"SS": ["x"]},
        }
        for number in numbers:
            client.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"N": number}, **item})
        got = pages(client, name, 4, **partition("p"))
        assert [float(key) for page in got for key in page] == [-5, 0.5, 2, 10, 100, 1000]
        read = client.get_item(TableName=name, Key={"pk": {"S": "p"}, "sk": {"N": "2"}}, ConsistentRead=True)
        assert {k: v for k, v in read["Item"].items() if k not in ("pk", "sk")} == item
        batch = client.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": "p"}, "sk": {"N": "10"}}]}})
        assert batch["Responses"][name][0]["b"] == {"B": bytes(range(256))}
        projected = client.query(
            TableName=name, ProjectionExpression="sk, bs", ReturnConsumedCapacity="TOTAL", **partition("p")
        )
        assert projected["Items"][0] == {"sk": {"N": "-5"}, "bs": {"BS": [b"\x00", b"\xff"]}}
        assert projected["ConsumedCapacity"]["TableName"] == name
    finally:
        client.delete_table(TableName=name)
