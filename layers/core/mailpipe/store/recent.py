"""\\Recent (RFC 3501 2.3.2): each new message is recent to exactly one session, the first to see it.

The mailbox item keeps `recent_from`, the first UID no session has claimed yet (absent: 1, none
claimed). A read-write IMAP4rev1 session that selects the mailbox, or learns of new UIDs while it
has it selected, claims [recent_from, uidnext) with one conditional UpdateItem; only the session
whose update took reports those messages as \\Recent. Nothing is written when nothing arrived since
the last claim, and a process remembers the highest `recent_from` it saw per mailbox, so its many
sessions learning of one new message make one write, not one each.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from mailpipe.store.model import Mailbox, mailbox_sk, owner_pk
from mailpipe.store.writers import MailboxWriters

REMEMBERED_MAILBOXES = 100_000
MAX_CLAIM_ATTEMPTS = 20


class RecentClaims:
    def __init__(self, table: Any, writers: MailboxWriters) -> None:
        self._table = table
        self._writers = writers
        self._claimed_to: dict[str, int] = {}  # mailbox_id -> recent_from as last seen here

    def claim(self, mailbox: Mailbox) -> tuple[int, int]:
        """Claim the UIDs from the mailbox's `recent_from` to its `uidnext` (as `mailbox` has it) for
        the caller; returns the range [start, end) it got, empty if another session had them."""
        end = mailbox.uidnext
        with self._writers.turn(mailbox.owner, mailbox.name):  # this process's sessions take turns
            start = max(mailbox.recent_from, self._claimed_to.get(mailbox.mailbox_id, 1))
            for _ in range(MAX_CLAIM_ATTEMPTS):
                if start >= end:
                    return end, end
                if self._update(mailbox, start, end):
                    self._remember(mailbox.mailbox_id, end)
                    return start, end
                # Another session (another process) claimed some first: from where it left off.
                item = self._table.get_item(
                    Key={"pk": owner_pk(mailbox.owner), "sk": mailbox_sk(mailbox.name)}, ConsistentRead=True
                ).get("Item")
                if item is None or item["mailbox_id"] != mailbox.mailbox_id:
                    return end, end  # deleted or replaced meanwhile: nothing to claim
                start = int(item.get("recent_from", 1))
                self._remember(mailbox.mailbox_id, start)
        return end, end  # lost every race: leave them to the winners

    def _update(self, mailbox: Mailbox, start: int, end: int) -> bool:
        condition = "mailbox_id = :id AND recent_from = :start"
        if start == 1:
            condition = "mailbox_id = :id AND (recent_from = :start OR attribute_not_exists(recent_from))"
        try:
            self._table.update_item(
                Key={"pk": owner_pk(mailbox.owner), "sk": mailbox_sk(mailbox.name)},
                UpdateExpression="SET recent_from = :end",
                ConditionExpression=condition,
                ExpressionAttributeValues={":id": mailbox.mailbox_id, ":start": start, ":end": end},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _remember(self, mailbox_id: str, recent_from: int) -> None:
        if len(self._claimed_to) >= REMEMBERED_MAILBOXES:
            self._claimed_to.clear()
        self._claimed_to[mailbox_id] = max(recent_from, self._claimed_to.get(mailbox_id, 1))
