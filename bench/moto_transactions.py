"""TransactWriteItems on the dev stack's moto against moto's own, by the size of the table.

Run by hand from the repository root:

    .venv/bin/python bench/moto_transactions.py                  # tables of 1,000 and 10,000 items
    .venv/bin/python bench/moto_transactions.py --sizes 1000 --rounds 50

A moto server in this process (moto_server.MotoServer, served over HTTP as the dev stack's is)
gets a table shaped like the mailbox table (partition and sort key, a stream of both images)
holding N items of ~4 KB in one partition. Then, for each N, boto3 sends `--rounds` transactions
like an APPEND's (put a new item if absent, update the mailbox item under a condition), and as
many that fail on their last condition, first with moto's own transact_write_items (which copies
every table it names, to roll back), then with the dev stack's (moto_transactions.py: rolls back
the items named only). It prints the p50 of each and moto's over the dev stack's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for part in ("layers/core", "gateway", "tools"):
    sys.path.insert(0, str(REPO / part))

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402


def transaction(table: str, n: int, fail: bool) -> list[dict[str, Any]]:
    return [
        {
            "Put": {
                "TableName": table,
                "Item": {"pk": {"S": "user"}, "sk": {"S": f"new-{n}"}, "body": {"B": b"x" * 4000}},
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": {"pk": {"S": "user"}, "sk": {"S": "box"}},
                "UpdateExpression": "SET n = n + :one",
                "ConditionExpression": "n >= :zero" if not fail else "n < :zero",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}},
            }
        },
    ]


def p50_ms(client: Any, table: str, rounds: int, fail: bool, start: int) -> float:
    times = []
    for n in range(start, start + rounds):
        began = time.perf_counter()
        try:
            client.transact_write_items(TransactItems=transaction(table, n, fail))
        except ClientError as exc:
            assert fail and exc.response["Error"]["Code"] == "TransactionCanceledException", exc
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    from moto.dynamodb.models import DynamoDBBackend

    motos_own = DynamoDBBackend.transact_write_items
    from mailpipe_tools.local.moto_server import MotoServer

    server = MotoServer()  # installs the dev stack's transact_write_items
    ours = DynamoDBBackend.transact_write_items
    server.start()
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = session.client("dynamodb", endpoint_url=server.endpoint)
    print(f"{'items':>7} {'kind':8} {'moto p50 ms':>12} {'dev stack p50 ms':>17} {'moto / dev stack':>17}")
    try:
        for size in args.sizes:
            table = f"bench-{size}"
            client.create_table(
                TableName=table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
            client.put_item(TableName=table, Item={"pk": {"S": "user"}, "sk": {"S": "box"}, "n": {"N": "0"}})
            for n in range(size):
                client.put_item(
                    TableName=table,
                    Item={"pk": {"S": "user"}, "sk": {"S": f"m-{n:06d}"}, "body": {"B": b"y" * 4000}},
                )
            start = 0
            for fail in (False, True):
                figures = []
                for implementation in (motos_own, ours):
                    DynamoDBBackend.transact_write_items = implementation  # type: ignore[method-assign]
                    figures.append(p50_ms(client, table, args.rounds, fail, start))
                    start += args.rounds
                kind = "failing" if fail else "holding"
                print(
                    f"{size:>7} {kind:8} {figures[0]:12.1f} {figures[1]:17.1f} "
                    f"{figures[0] / figures[1]:16.1f}x"
                )
            DynamoDBBackend.transact_write_items = ours  # type: ignore[method-assign]
            client.delete_table(TableName=table)
    finally:
        DynamoDBBackend.transact_write_items = ours  # type: ignore[method-assign]
        server.stop()


if __name__ == "__main__":
    main()
