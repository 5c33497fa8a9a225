"""moto's TransactWriteItems, rolled back item by item instead of table by table.

moto (5.1-5.2, DynamoDBBackend.transact_write_items) deep-copies every table a transaction
names before it starts, to put the copy back if any operation fails. The dev stack's mailbox
table holds every user's messages: a copy of all of them per APPEND, STORE, EXPUNGE or delivery,
made while every other DynamoDB request waits (moto_server._AtomicDynamoDB). The fast path this
replaces skipped the copy by judging the conditions itself, and fell back to moto's copy for
anything else; it also left the stream records of an operation that failed to apply behind.

Here moto's own code still runs the transaction (its conditions, its per-item cancellation
reasons, MultipleTransactionsException, ReturnValuesOnConditionCheckFailure, its validation
errors), but its copy of a table is the table itself, and its restore of the copy a no-op.
Before it runs, the items the transaction names are kept by key (the item, a copy of it if an
Update will change it in place, or "absent"); the stream records it appends are noted as it runs.
If it raises, exactly those items are put back or removed, directly in the table's storage (no
stream record for the undo), and its stream records are taken out: the dev stack's change feed
(stream_source.py) must never relay a write that did not happen. Other items are left alone, so
nothing written beside the transaction is undone (moto's whole-table restore undid it;
_AtomicDynamoDB also keeps that from happening).

If moto ever stops copying through `copy.deepcopy` in that module, the wrapper still rolls back
correctly, only no faster (tests/test_moto_transactions.py fails then, to say so).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

# `undo`: the _Undo of the transaction moto runs in this thread, if any. While set, moto's deepcopy
# of a Table is the table, and the stream records appended are noted in it.
_in_transaction = threading.local()


class _CopyWithoutTables:
    """The `copy` module as moto's dynamodb models module sees it: deepcopy of a Table inside a
    transaction returns the table; everything else is the real module's."""

    def __init__(self, real: Any, table_type: type) -> None:
        self._real = real
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type) and getattr(_in_transaction, "undo", None) is not None:
            return value
        return self._real.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Undo:
    """What a transaction may change, kept before it runs, and put back if it fails."""

    def __init__(self, backend: Any, transact_items: list[dict[str, Any]]) -> None:
        # (table, hash key, range key or None, the item (a copy for an Update) or None when absent)
        self.items: list[tuple[Any, Any, Any, Any]] = []
        # The stream records the transaction appends, as (shard, record): StreamShard.add below.
        self.records: list[tuple[Any, Any]] = []
        for entry in transact_items:
            for op_type, op in entry.items():
                if op_type == "ConditionCheck" or not isinstance(op, dict):
                    continue
                kept = _kept_item(backend, op_type, op)
                if kept is None:
                    continue  # names no table or no key: moto rejects it before writing anything
                self.items.append(kept)

    def restore(self) -> None:
        # Reversed: if a key were named twice (moto refuses that), the oldest copy is put back last.
        for table, hash_key, range_key, item in reversed(self.items):
            if range_key is not None:
                partition = table.items[hash_key]
                if item is None:
                    partition.pop(range_key, None)
                    if not partition:
                        del table.items[hash_key]
                else:
                    partition[range_key] = item
            elif item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        # Only the transaction's own records go, by identity (requests are served one at a time, so
        # they are the newest: the next record gets the sequence number the first of them had).
        for shard in {id(shard): shard for shard, _ in self.records}.values():
            own = {id(record) for s, record in self.records if s is shard}
            shard.items[:] = [record for record in shard.items if id(record) not in own]


def _kept_item(backend: Any, op_type: str, op: dict[str, Any]) -> tuple[Any, Any, Any, Any] | None:
    """(table, hash key, range key, copy of the current item or None), keyed as moto keys it;
    None if the operation names no table, or a key moto would refuse."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    try:
        table = backend.get_table(op["TableName"])
        attrs = op["Item"] if op_type == "Put" else op["Key"]
        hash_key = DynamoType(attrs[table.hash_key_attr])
        range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
        current = table.get_item(hash_key, range_key)
    except Exception:
        return None
    # moto's Update changes the item in place: a copy of it is kept. Put and Delete replace or
    # remove the object, which is left as it was: the object itself is kept.
    return table, hash_key, range_key, copy.deepcopy(current) if op_type == "Update" else current


def install() -> None:
    """Wrap moto's DynamoDBBackend.transact_write_items (once per process)."""
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard, Table

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "mailpipe_item_rollback", False):
        return
    if not isinstance(models.copy, _CopyWithoutTables):
        models.copy = _CopyWithoutTables(models.copy, Table)  # type: ignore[assignment]
    original_add = StreamShard.add

    def add(self: Any, old: Any, new: Any) -> None:
        original_add(self, old, new)
        undo = getattr(_in_transaction, "undo", None)
        if undo is not None and self.items:
            undo.records.append((self, self.items[-1]))

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        undo = _Undo(self, transact_items)
        _in_transaction.undo = undo
        try:
            original(self, transact_items)
        except BaseException:
            undo.restore()
            raise
        finally:
            _in_transaction.undo = None

    StreamShard.add = add  # type: ignore[method-assign]
    transact_write_items.mailpipe_item_rollback = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
