"""Leases in the mailbox table: POP3's exclusive maildrop lock (RFC 1939 4), across gateway instances."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from mailpipe.store.model import owner_pk

LOCK_PREFIX = "lock#"


class Leases:
    def __init__(self, table: Any) -> None:
        self._table = table

    def acquire(self, owner: str, name: str, holder: str, ttl: float) -> bool:
        """Take the lease, or renew it if `holder` has it; False while someone else holds it.

        A lease nobody renews expires, so a gateway that died does not lock a user out for good.
        """
        now = time.time()
        item = {"pk": owner_pk(owner), "sk": LOCK_PREFIX + name, "holder": holder, "expires": int(now + ttl)}
        try:
            self._table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires < :now OR holder = :holder",
                ExpressionAttributeValues={":now": int(now), ":holder": holder},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, owner: str, name: str, holder: str) -> None:
        try:
            self._table.delete_item(
                Key={"pk": owner_pk(owner), "sk": LOCK_PREFIX + name},
                ConditionExpression="holder = :holder",
                ExpressionAttributeValues={":holder": holder},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
