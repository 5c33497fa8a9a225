"""Lambda's event filtering as the dev stack applies it (tools/mailpipe_tools/local/event_pattern.py)."""

from __future__ import annotations

import pytest

from mailpipe_tools.local.event_pattern import check, matches

RECORD = {
    "eventName": "MODIFY",
    "dynamodb": {"Keys": {"pk": {"S": "user#a@b.test"}, "sk": {"S": "mailbox#INBOX"}}, "NewImage": {}},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "user#"}]}}}}, True),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "mailbox#"}]}}}}, False),
        ({"eventName": ["INSERT", "MODIFY"]}, True),
        ({"eventName": ["REMOVE"]}, False),
        ({"eventName": [{"anything-but": ["REMOVE"]}]}, True),
        ({"eventName": [{"anything-but": "MODIFY"}]}, False),
        ({"dynamodb": {"OldImage": [{"exists": False}]}}, True),
        # "exists" looks at leaves only: an object is no leaf (EventBridge's rule).
        ({"dynamodb": {"NewImage": [{"exists": True}]}}, False),
        ({"dynamodb": {"Keys": {"pk": {"S": [{"exists": True}]}}}}, True),
        ({"missing": {"deeper": ["x"]}}, False),
        # Every field must match.
        ({"eventName": ["MODIFY"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "uid#"}]}}}}, False),
    ],
)
def test_patterns(pattern: dict, expected: bool) -> None:
    check(pattern)
    assert matches(pattern, RECORD) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        {"eventName": [{"suffix": "FY"}]},
        {"dynamodb": {"Keys": {"pk": {"S": [{"numeric": [">", 1]}]}}}},
        {"eventName": "MODIFY"},  # a leaf must be a list
    ],
)
def test_what_is_not_implemented_is_refused_up_front(pattern: dict) -> None:
    with pytest.raises(ValueError):
        check(pattern)
