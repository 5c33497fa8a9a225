"""Prune expunge tombstones below a floor MODSEQ, and delivery markers no queue can bring back.

Tombstones (store/transactions.py's expunge) keep an expunged UID for QRESYNC's VANISHED, and
delivery markers a delivery's UID so a redelivered record stores nothing: without pruning, a
mailbox's partition grows by one item per expunge and per delivery, forever.

Tombstones. Each mailbox item carries a floor, `prunedmodseq`: changes_since below it answers
every UID under UIDNEXT that is not live as expunged, so clients older than the floor get a full
resync (RFC 7162 allows VANISHED of UIDs a client never knew). A run raises the floor, then
deletes tombstones at or below it. The floor only ever moves to `prunemark`, the HIGHESTMODSEQ
the mailbox had when an earlier run (at least TOMBSTONE_AGE before) took the mark, and each raise
takes a new mark. So a client that synced within TOMBSTONE_AGE never needs a full resync, and a
reader that read the mailbox item before a raise and asks for changes since a MODSEQ at or above
the mark it read cannot be hit by it; one below that mark reads the floor again after its Query
(MailStore.changes_since). The raise is conditioned on the mark being what was read, and RENAME
on the floor (MailStore.rename_mailbox), so the floor never goes back down.

Delivery markers get `at` when written. One older than MARKER_AGE (the queues keep a message 14
days, template.yaml's MessageRetentionPeriod, and a redrive from a dead-letter queue keeps its
first enqueue time) is deleted, on the condition that it still is that old; one without `at`
(written before it existed) is given the time of this run, so it goes MARKER_AGE from now.
`mailpipe import` keeps its markers the same way: importing the same file again after
MARKER_AGE stores its messages again.

Work per run is bounded (`budget` deletes and writes); what is left waits for the next run. Every
delete is conditioned on what made it due, so a run is safe beside any writer and beside another
run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from mailpipe.store.model import (
    CHANGES_INDEX,
    DELIVERY_PREFIX,
    MAILBOX_PREFIX,
    PRUNE_MARK,
    PRUNE_MARK_AT,
    PRUNED_MODSEQ,
    Mailbox,
    messages_pk,
    owner_pk,
)

log = logging.getLogger(__name__)

DAY = 24 * 3600
TOMBSTONE_AGE = 30 * DAY  # a client that synced within this never gets a full resync
MARKER_AGE = 15 * DAY  # SQS keeps a message 14 days (template.yaml); one day more for a clock's skew
BUDGET = 20_000  # deletes and writes per run: a scheduled run ends well within its timeout
SWEEP_BATCH = 100  # tombstones whose body keys are read in one BatchGetItem and deleted together


@dataclass
class PruneReport:
    mailboxes: int = 0
    floors_raised: int = 0
    tombstones: int = 0
    markers: int = 0
    markers_dated: int = 0  # markers from before `at` existed, given this run's time
    bodies: int = 0  # bodies of the pruned tombstones deleted (most were already gone)
    complete: bool = True  # False: the budget or the time ran out, the next run goes on

    def line(self) -> str:
        rest = "" if self.complete else "; budget or time spent, the next run continues"
        return (
            f"pruned {self.tombstones} tombstones and {self.markers} delivery markers in "
            f"{self.mailboxes} mailboxes ({self.floors_raised} floors raised, "
            f"{self.markers_dated} markers dated){rest}"
        )


# A mailbox's pruning takes a few requests: this much time left is plenty to stop cleanly.
STOP_SECONDS_BEFORE_TIMEOUT = 30.0


class _Spent(Exception):
    """The run's budget is used up."""


class Pruner:
    def __init__(
        self,
        table: Any,
        *,
        tombstone_age: float = TOMBSTONE_AGE,
        marker_age: float = MARKER_AGE,
        budget: int = BUDGET,
        clock: Callable[[], float] = time.time,
        time_left: Callable[[], float] | None = None,
        delete_bodies: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        """`time_left`: seconds the run may still take (a Lambda context's remaining time): it
        stops between mailboxes when little is left, as when its budget is spent.
        `delete_bodies` (MailStore.delete_bodies_now): deletes the bodies of the tombstones
        pruned, and returns the keys it could not delete."""
        self._table = table
        self._delete_bodies = delete_bodies
        self._tombstone_age = tombstone_age
        self._marker_age = marker_age
        self._budget = budget
        self._clock = clock
        self._time_left = time_left

    def run(self, owners: Iterable[str]) -> PruneReport:
        """Prune every mailbox of `owners`, until done or the budget is spent."""
        report = PruneReport()
        self._left = self._budget
        try:
            for owner in owners:
                for item in self._mailbox_items(owner):
                    if self._time_left is not None and self._time_left() < STOP_SECONDS_BEFORE_TIMEOUT:
                        raise _Spent
                    report.mailboxes += 1
                    self._prune(item, report)
        except _Spent:
            report.complete = False
        log.info("pruning done", extra={"report": report.__dict__})
        return report

    def _mailbox_items(self, owner: str) -> Iterator[dict[str, Any]]:
        yield from _query(
            self._table,
            KeyConditionExpression=Key("pk").eq(owner_pk(owner)) & Key("sk").begins_with(MAILBOX_PREFIX),
            ConsistentRead=True,
        )

    def _prune(self, item: dict[str, Any], report: PruneReport) -> None:
        mailbox = Mailbox.from_item(item)
        floor = self._raise_floor(item, mailbox, report)
        if floor > 0:
            self._drop_tombstones(mailbox, floor, report)
        self._drop_markers(mailbox, report)

    # -- the floor -------------------------------------------------------------------------------

    def _raise_floor(self, item: dict[str, Any], mailbox: Mailbox, report: PruneReport) -> int:
        """The floor to prune below: raised to the mark if the mark is old enough, and a new
        mark taken (the first run only takes a mark)."""
        now = int(self._clock())
        mark, mark_at = int(item.get(PRUNE_MARK, 0)), int(item.get(PRUNE_MARK_AT, 0))
        if PRUNE_MARK not in item or (mark <= mailbox.prunedmodseq < mailbox.highestmodseq):
            # No mark yet, or the floor has caught up with it while the mailbox moved on.
            self._take_mark(item, mailbox, now)
            return mailbox.prunedmodseq
        if mark <= mailbox.prunedmodseq or now - mark_at < self._tombstone_age:
            return mailbox.prunedmodseq
        self._spend()
        try:
            self._table.update_item(
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #floor = :mark, #mark = :new, #at = :now",
                ConditionExpression="mailbox_id = :id AND #mark = :mark",
                ExpressionAttributeNames={"#floor": PRUNED_MODSEQ, "#mark": PRUNE_MARK, "#at": PRUNE_MARK_AT},
                ExpressionAttributeValues={
                    ":mark": mark,
                    ":new": mailbox.highestmodseq,
                    ":now": now,
                    ":id": mailbox.mailbox_id,
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return mailbox.prunedmodseq  # another run raised it, or the mailbox went: next time
        report.floors_raised += 1
        return mark

    def _take_mark(self, item: dict[str, Any], mailbox: Mailbox, now: int) -> None:
        self._spend()
        previous = item.get(PRUNE_MARK)
        try:
            self._table.update_item(
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #mark = :new, #at = :now",
                ConditionExpression="mailbox_id = :id AND "
                + ("attribute_not_exists(#mark)" if previous is None else "#mark = :old"),
                ExpressionAttributeNames={"#mark": PRUNE_MARK, "#at": PRUNE_MARK_AT},
                ExpressionAttributeValues={
                    ":new": mailbox.highestmodseq,
                    ":now": now,
                    ":id": mailbox.mailbox_id,
                    **({} if previous is None else {":old": previous}),
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # -- what is pruned --------------------------------------------------------------------------

    def _drop_tombstones(self, mailbox: Mailbox, floor: int, report: PruneReport) -> None:
        """Delete the tombstones at or below `floor`: those the index holds at those MODSEQs."""
        entries = _query(
            self._table,
            IndexName=CHANGES_INDEX,
            KeyConditionExpression=Key("pk").eq(messages_pk(mailbox.mailbox_id)) & Key("modseq").lte(floor),
            FilterExpression=Attr("expunged").exists(),
            ProjectionExpression="pk, sk",
        )
        for chunk in _batches(entries, SWEEP_BATCH):
            bodies = self._body_keys(chunk)
            kept = self._sweep(list(bodies.values()), report)
            for entry in chunk:
                if bodies.get((entry["pk"], entry["sk"])) in kept:
                    continue  # its body is still there: the tombstone stays, the next run tries again
                self._spend()
                if self._delete(
                    entry, "expunged = :true AND modseq <= :floor", {":true": True, ":floor": floor}
                ):
                    report.tombstones += 1

    def _body_keys(self, entries: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
        """The body keys of these tombstones, by (pk, sk): read from the table (the MODSEQ index
        does not hold them); none if this run does not delete bodies."""
        if self._delete_bodies is None:
            return {}
        client, name = self._table.meta.client, self._table.name
        wanted: dict[str, Any] = {
            name: {
                "Keys": [{"pk": e["pk"], "sk": e["sk"]} for e in entries],
                "ProjectionExpression": "pk, sk, blob_key",
                "ConsistentRead": True,
            }
        }
        found: dict[tuple[str, str], str] = {}
        for attempt in range(8):
            answer = client.batch_get_item(RequestItems=wanted)
            for item in answer.get("Responses", {}).get(name, []):
                if "blob_key" in item:
                    found[(item["pk"], item["sk"])] = item["blob_key"]
            wanted = answer.get("UnprocessedKeys") or {}
            if not wanted:
                return found
            time.sleep(min(0.05 * 2**attempt, 2) * random.random())
        raise _Spent  # throttled throughout: the next run goes on from here

    def _sweep(self, bodies: list[str], report: PruneReport) -> set[str]:
        """Delete the bodies of tombstones about to be pruned (an expunged message's body is
        garbage for good); returns the keys that could not be deleted. The expunge deleted them
        (body_deletes.py) unless its process stopped first or S3 failed it: this is the sweep that
        catches those, and deleting a key that is gone already is no error."""
        if self._delete_bodies is None or not bodies:
            return set()
        failed = self._delete_bodies(bodies)
        report.bodies += len(bodies) - len(failed)
        if failed:
            log.warning("pruning could not delete %d message bodies; their tombstones stay", len(failed))
        return set(failed)

    def _drop_markers(self, mailbox: Mailbox, report: PruneReport) -> None:
        now = int(self._clock())
        cutoff = now - int(self._marker_age)
        markers = _query(
            self._table,
            KeyConditionExpression=Key("pk").eq(messages_pk(mailbox.mailbox_id))
            & Key("sk").begins_with(DELIVERY_PREFIX),
            FilterExpression=Attr("at").not_exists() | Attr("at").lt(cutoff),
            ProjectionExpression="pk, sk, #at",
            ExpressionAttributeNames={"#at": "at"},
        )
        for marker in markers:
            self._spend()
            if "at" not in marker:
                if self._date(marker, now):
                    report.markers_dated += 1
            elif self._delete(marker, "#at < :cutoff", {":cutoff": cutoff}, {"#at": "at"}):
                report.markers += 1

    def _date(self, marker: dict[str, Any], now: int) -> bool:
        try:
            self._table.update_item(
                Key={"pk": marker["pk"], "sk": marker["sk"]},
                UpdateExpression="SET #at = :now",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#at)",
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues={":now": now},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _delete(
        self,
        key: dict[str, Any],
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        try:
            self._table.delete_item(
                Key={"pk": key["pk"], "sk": key["sk"]},
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False  # gone, or no longer due
        return True

    def _spend(self) -> None:
        if self._left <= 0:
            raise _Spent
        self._left -= 1


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def everyone(users: list[str]) -> list[str]:
    """Every user, from a random one on and round: a run whose budget a big backlog spends does
    not leave the same users after it waiting run after run."""
    if not users:
        return []
    start = random.randrange(len(users))
    return users[start:] + users[:start]


def _query(table: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The items of a Query, page by page (a big partition is not held whole)."""
    while True:
        response = table.query(**kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}
