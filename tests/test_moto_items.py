"""The dev stack's moto makes an Item with its size summed once (moto_items.py): the item, and
where an item is refused for its size, must be what moto's own Item.__init__ gives."""

from __future__ import annotations

from typing import Any

import pytest

from mailpipe_tools.local import moto_items

ATTRS: list[dict[str, Any]] = [
    {},
    {"pk": {"S": "u"}, "sk": {"S": "uid#0000000001"}, "uid": {"N": "1"}, "flags": {"L": [{"S": "\\Seen"}]}},
    {
        "summary": {"B": b"\x00\x01packed"},
        "tags": {"SS": ["a", "b"]},
        "nums": {"NS": ["1", "2.5"]},
        "blobs": {"BS": [b"x", b"y"]},
        "nested": {"M": {"a": {"L": [{"N": "1"}, {"M": {"b": {"NULL": True}}}]}, "c": {"BOOL": False}}},
        "ü€ key": {"S": "ü€ value"},
    },
]


def _made(init: Any, attrs: dict[str, Any]) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    item = Item.__new__(Item)
    try:
        init(item, DynamoType({"S": "u"}), None, attrs)
    except Exception as exc:
        return type(exc)
    return type(item.attrs), list(item.attrs.items())


def _over(limit_delta: int, at: int) -> dict[str, Any]:
    """Attributes whose sizes add up to moto's limit plus `limit_delta`, the last byte arriving
    with the attribute numbered `at` (later ones are one byte each)."""
    names = [f"a{i}" for i in range(6)]
    later = [(name, {"S": ""}) for name in names[at + 1 :]]
    fixed = sum(len(name) for name, _ in later)
    before = [(name, {"S": "x" * 1000}) for name in names[:at]]
    used = sum(len(name) + 1000 for name, _ in before)
    fill = moto_items.ITEM_SIZE_LIMIT + limit_delta - used - len(names[at]) - fixed
    return dict([*before, (names[at], {"S": "x" * fill}), *later])


@pytest.mark.parametrize("attrs", ATTRS + [_over(d, at) for d in (-1, 0, 1) for at in (0, 3, 5)])
def test_an_item_is_made_or_refused_as_moto_does(moto_here, attrs) -> None:
    from moto.dynamodb.models.dynamo_type import Item

    init = Item.__init__
    assert getattr(init, "mailpipe_summed", False)
    assert _made(init, attrs) == _made(init.moto_init, attrs)


def test_the_limit_is_moto_s(moto_here) -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import Item

    moto_init = Item.__init__.moto_init
    assert _made(moto_init, _over(0, 3))[0] is not ItemSizeTooLarge
    assert _made(moto_init, _over(1, 3)) is ItemSizeTooLarge
