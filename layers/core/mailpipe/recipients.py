"""The recipient validation call: its request and answer, shared by the function and its callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailpipe.directory import Directory, Verdict
from mailpipe.quota import Quotas


@dataclass(frozen=True)
class RecipientQuery:
    address: str

    @classmethod
    def from_event(cls, event: Any) -> RecipientQuery:
        if not isinstance(event, dict) or not isinstance(event.get("address"), str):
            raise ValueError('expected {"address": "<local@domain>"}')
        return cls(event["address"])


def answer(directory: Directory, query: RecipientQuery, quotas: Quotas | None = None) -> dict[str, str]:
    """The directory's verdict; with `quotas`, OVER_QUOTA for a deliverable address whose every
    mailbox owner is full (an alias with one owner left who has room still takes mail)."""
    lookup = directory.lookup(query.address)
    verdict, reason = lookup.verdict, lookup.reason
    if verdict is Verdict.DELIVERABLE and quotas is not None:
        owners = directory.expand(lookup.address)
        if owners and all(quotas.state(owner).full for owner in owners):
            verdict, reason = Verdict.OVER_QUOTA, "mailbox full"
    return {"address": lookup.address, "verdict": verdict.value, "reason": reason}
