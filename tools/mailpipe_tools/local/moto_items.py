"""moto's Item made with its size summed once per attribute, not once per attribute per attribute.

moto checks DynamoDB's item size limit at every assignment to an item's attributes
(LimitedSizeDict.__setitem__ sums the sizes of every key and value already there), so making an
item of n attributes sizes n*(n+1)/2 values, each nested value walked again: a mail store
message item has ~12, and a MULTIAPPEND's transaction puts 99 of them (~30% of moto's CPU for
that transaction, cProfile 2026-12-06). Item.__init__ here adds the same sizes as a running sum
and raises the same ItemSizeTooLarge at the same attribute; the dict it fills is moto's
LimitedSizeDict, so every later assignment (an update) is checked by moto as before.
"""

from __future__ import annotations

from typing import Any

# moto's limit in LimitedSizeDict.__setitem__ ("between 409 and 410KB", it says); the tests check
# that items either side of it are made or refused as moto's own Item.__init__ does.
ITEM_SIZE_LIMIT = 405000


def install() -> None:
    """Replace Item.__init__ (once per process)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    original = Item.__init__
    if getattr(original, "mailpipe_summed", False):
        return

    def init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        self.attrs = LimitedSizeDict()
        size = 0
        for key, value in attrs.items():
            typed = DynamoType(value)
            # What LimitedSizeDict.__setitem__ sums: every key and value so far, and the new pair.
            size += bytesize(key) + typed.size()
            if size > ITEM_SIZE_LIMIT:
                raise ItemSizeTooLarge
            dict.__setitem__(self.attrs, key, typed)

    init.mailpipe_summed = True  # type: ignore[attr-defined]
    init.moto_init = original  # type: ignore[attr-defined]  # for the tests' comparison
    Item.__init__ = init  # type: ignore[method-assign]
