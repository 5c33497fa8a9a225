"""The failed-login throttle (auth/throttle.py's rules) with its counts in DynamoDB, for JMAP.

A gateway process serves a client for its whole connection, so counting in memory holds it
back. JMAP on AWS is a Lambda function: each request may land on another environment, and an
attacker's guesses spread over all of them would each find a fresh count. So the JMAP function
counts failures in its table (the JMAP table, with DynamoDB's TTL deleting old counts):

    pk=failures#user#<login_key>   sk=<client address>   count, last, expires
    pk=failures#client#<client>    sk=all                count, last, expires

Same limits (5 per user and address, 20 per address), same window (15 minutes, counted from a
count's first failure: a fixed window, where the gateways' slides), same log lines, and the same
`mailpipe user unlock`: a held user whose unlock time is after the count's last failure is let
through and the count deleted. Cost: two consistent GetItems before each password check (only
when the password is not in the verified-credentials cache, or is wrong), and two UpdateItems per
failure; none for a request signed in with a session token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from mailpipe.auth.throttle import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USER, WINDOW_SECONDS, login_key

log = logging.getLogger(__name__)


class StoredThrottle:
    def __init__(
        self,
        table: Any,
        max_per_user: int = MAX_FAILURES_PER_USER,
        max_per_address: int = MAX_FAILURES_PER_ADDRESS,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._max_per_user = max_per_user
        self._max_per_address = max_per_address
        self._window = window
        self._clock = clock

    def admits_now(
        self, client: str, login: str, protocol: str, unlocked_at: Callable[[str], float | None]
    ) -> bool:
        user = login_key(login)
        if self._count(_client_key(client)) >= self._max_per_address:
            self._log_refusal(client, protocol, user)
            return False
        user_key = _user_key(user, client)
        held = self._held(user_key)
        if held is None:
            return True
        unlocked = unlocked_at(user)
        if unlocked is not None and unlocked >= held:
            self._table.delete_item(Key=user_key)
            log.warning("auth unlocked: user=%s forgotten=%d", user, self._max_per_user)
            return True
        self._log_refusal(client, protocol, user)
        return False

    def failed(self, client: str, login: str, protocol: str) -> None:
        user = login_key(login)
        log.warning("auth failed: client=%s protocol=%s user=%s", client, protocol, user)
        self._add(_client_key(client))
        self._add(_user_key(user, client))

    def succeeded(self, client: str, login: str) -> None:
        self._table.delete_item(Key=_user_key(login_key(login), client))

    def _held(self, key: dict[str, str]) -> float | None:
        """The last failure's time when the user is held back from this address, else None."""
        item = self._live(key)
        if item is None or int(item["count"]) < self._max_per_user:
            return None
        return float(item["last"])

    def _count(self, key: dict[str, str]) -> int:
        item = self._live(key)
        return int(item["count"]) if item else 0

    def _live(self, key: dict[str, str]) -> dict[str, Any] | None:
        item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        if item is None or float(item["expires"]) <= self._clock():
            return None  # TTL deletes late: an expired count is no count
        return item

    def _add(self, key: dict[str, str]) -> None:
        now = self._clock()
        values = {":one": 1, ":now": Decimal(str(now)), ":end": Decimal(int(now + self._window))}
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression="ADD #count :one SET #last = :now, expires = if_not_exists(expires, :end)",
                ConditionExpression="attribute_not_exists(pk) OR expires > :now",
                ExpressionAttributeNames={"#count": "count", "#last": "last"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # The window of the old count ended: a new one starts with this failure.
            self._table.put_item(Item={**key, "count": 1, "last": values[":now"], "expires": values[":end"]})

    def _log_refusal(self, client: str, protocol: str, user: str) -> None:
        log.warning("auth throttled: client=%s protocol=%s user=%s", client, protocol, user)


def _user_key(user: str, client: str) -> dict[str, str]:
    return {"pk": f"failures#user#{user}", "sk": client or "-"}


def _client_key(client: str) -> dict[str, str]:
    return {"pk": f"failures#client#{client or '-'}", "sk": "all"}
