"""The recipient validation call: its request and answer, shared by the function and its callers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailpipe.directory import Directory


@dataclass(frozen=True)
class RecipientQuery:
    address: str

    @classmethod
    def from_event(cls, event: Any) -> RecipientQuery:
        if not isinstance(event, dict) or not isinstance(event.get("address"), str):
            raise ValueError('expected {"address": "<local@domain>"}')
        return cls(event["address"])


def answer(directory: Directory, query: RecipientQuery) -> dict[str, str]:
    lookup = directory.lookup(query.address)
    return {"address": lookup.address, "verdict": lookup.verdict.value, "reason": lookup.reason}
