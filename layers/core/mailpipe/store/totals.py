"""Count a mailbox's running totals once, for mailboxes made before the totals existed.

Every change's guard moves `size_total` and `message_total` on the mailbox item
(store/transactions.py), so the quota reads a user's usage from their mailbox items alone
(mailpipe/quota.py). A mailbox made before then has no `counted` attribute: its totals (if any)
hold only the changes since, so they are counted here from a listing and written with
`counted`, on the condition that the mailbox's HIGHESTMODSEQ is still the one the listing was
made at (every change advances it). So a count is exact, safe to run twice or at once, and
while mail is delivered and expunged: a count that loses a race reads again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from mailpipe.store.model import COUNTED, MESSAGE_TOTAL, SIZE_TOTAL, Mailbox, mailbox_sk, owner_pk

if TYPE_CHECKING:
    from mailpipe.store.mailstore import MailStore

MAX_ATTEMPTS = 20


def counted(store: MailStore, mailbox: Mailbox, *, keep: bool = True) -> Mailbox:
    """`mailbox` with exact totals: as read if it has them, else counted now and, with `keep`,
    stored. Without `keep` (a reader that may not write: the recipient check) the count is
    made and forgotten; the next delivery's writer stores it.

    Raises NoSuchMailbox if it is deleted meanwhile."""
    table = store.table
    for _ in range(MAX_ATTEMPTS):
        if mailbox.counted:
            return mailbox
        messages = store.messages_in(mailbox)
        size, count = sum(m.crlf_size for m in messages), len(messages)
        if not keep:
            return replace(mailbox, size_total=size, message_total=count)
        try:
            table.update_item(
                Key={"pk": owner_pk(mailbox.owner), "sk": mailbox_sk(mailbox.name)},
                UpdateExpression="SET #size = :size, #count = :count, #counted = :true",
                ConditionExpression="mailbox_id = :id AND highestmodseq = :modseq",
                ExpressionAttributeNames={"#size": SIZE_TOTAL, "#count": MESSAGE_TOTAL, "#counted": COUNTED},
                ExpressionAttributeValues={
                    ":size": size,
                    ":count": count,
                    ":true": True,
                    ":id": mailbox.mailbox_id,
                    ":modseq": mailbox.highestmodseq,
                },
            )
            return replace(mailbox, size_total=size, message_total=count)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        # Changed (or counted) meanwhile: read it again.
        mailbox = store.require_mailbox(mailbox.owner, mailbox.name)
    # A mailbox that changes faster than it can be listed: its listing is the best answer there is.
    messages = store.messages_in(mailbox)
    return replace(mailbox, size_total=sum(m.crlf_size for m in messages), message_total=len(messages))
