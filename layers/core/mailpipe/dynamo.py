"""DynamoDB reads that follow pagination to the end."""

from __future__ import annotations

from typing import Any


def query_all(table: Any, condition: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item matching a key condition, read strongly consistent."""
    return _paginate(table.query, KeyConditionExpression=condition, ConsistentRead=True, **kwargs)


def scan_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return _paginate(table.scan, ConsistentRead=True, **kwargs)


def _paginate(operation: Any, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        response = operation(**kwargs)
        items += response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
