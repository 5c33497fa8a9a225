"""A Query of a table's partition, page after page, in time that grows with the page, on the dev stack's moto.

A mailbox's first listing in a process (SELECT/EXAMINE: MailStore.messages_in) is one Query of
the mailbox's partition, in pages of 1 MB (~600 message items with their header blocks). moto
answers each page by going through every item of the table (every mailbox's), sorting the
partition's items with DynamoType comparisons, and walking the sorted items up to the previous
page's last key with a comparison of attribute dictionaries per item: the work of a page grows
with the partition, the work of the listing with its square. A 10,000-message mailbox took
~12 s of CPU to list (17 pages; bench/open_mailbox.py, 2026-12-05: EXAMINE 21 s on a fresh
process). Here moto is handed, for a Query of a table (not of an index) by partition key, only
that partition's items, already sorted by their sort key's value and starting after
ExclusiveStartKey; moto then applies its own key condition, limits, projection and filters to
them, as before, and the page costs what its items cost.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any


def install_partition_queries() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = Table.query
    if getattr(original, "mailpipe_partition_pages", False):
        return

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        positional = list(args)
        index_name = positional[6] if len(positional) > 6 else kwargs.get("index_name")
        partition = self.items.get(hash_key) if hash_key is not None else None
        order = _sort_key(self, partition)
        if index_name or partition is None or order is None:
            return original(self, hash_key, *args, **kwargs)
        items = sorted(partition.values(), key=order)
        start = positional[3] if len(positional) > 3 else kwargs.get("exclusive_start_key")
        forward = positional[4] if len(positional) > 4 else kwargs.get("scan_index_forward", True)
        if start and self.range_key_attr in start:
            after = order(DynamoType(start[self.range_key_attr]), key_only=True)
            keys = [order(item) for item in items]
            items = (
                items[bisect.bisect_right(keys, after) :]
                if forward is not False
                else items[: bisect.bisect_left(keys, after)]
            )
            # The items before the start key are gone already: moto has nothing to skip.
            if len(positional) > 3:
                positional[3] = None
            else:
                kwargs["exclusive_start_key"] = None
        self.all_items = lambda: items
        try:
            return original(self, hash_key, *positional, **kwargs)
        finally:
            del self.all_items

    query.mailpipe_partition_pages = True  # type: ignore[attr-defined]
    Table.query = query


def _sort_key(table: Any, partition: dict[Any, Any] | None) -> Callable[..., Any] | None:
    """How to order the partition's items by their sort key's value as DynamoDB does (strings by
    code point, numbers by value); None when the table has no sort key or the partition's keys are
    of another type (moto's own ordering then)."""
    if not table.range_key_attr or not partition:
        return None
    kinds = {key.type for key in partition}
    if kinds == {"S"}:

        def by_string(item: Any, key_only: bool = False) -> Any:
            return (item if key_only else item.range_key).value

        return by_string
    if kinds == {"N"}:

        def by_number(item: Any, key_only: bool = False) -> Any:
            return Decimal((item if key_only else item.range_key).value)

        return by_number
    return None


# Answers whose body is the result as it is (DynamoDB's JSON, binary values in base64): what
# moto's generic serialiser makes of them, walking botocore's shapes value by value.
_READ_OPERATIONS = frozenset({"Query", "Scan", "GetItem", "BatchGetItem"})


def install_plain_read_answers() -> None:
    """Serialise the answers of DynamoDB's reads with json.dumps.

    moto turns every answer into its wire format with a serialiser driven by botocore's service
    model, which looks up each value's name under several aliases: for a Query page of ~600
    message items that is ~0.3 s, more than the Query itself, and the larger part of a first
    listing's CPU on the dev stack (py-spy over a 10,000-message listing, 2026-12-05). moto's
    DynamoDB results are in DynamoDB's JSON already (DynamoResult: `{"S": ...}`, numbers as
    strings, binary as bytes), so for reads the serialiser's only work is base64 for bytes:
    done here. Errors and every other operation keep moto's serialiser.
    """
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    original = DynamoHandler.serialized
    if getattr(original, "mailpipe_plain", False):
        return

    def serialized(self: Any, action_result: Any) -> Any:
        if not isinstance(action_result, DynamoResult) or self._get_action() not in _READ_OPERATIONS:
            return original(self, action_result)
        body = json.dumps(action_result.result, separators=(",", ":"), default=_base64)
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers, "status": 200}
        return 200, headers, body

    serialized.mailpipe_plain = True  # type: ignore[attr-defined]
    DynamoHandler.serialized = serialized


def _base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} in a DynamoDB answer")
