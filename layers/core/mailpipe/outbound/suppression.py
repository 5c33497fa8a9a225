"""Addresses mail is no longer sent to: hard bounces and complaints reported by SES.

Sending again to an address that hard-bounced or complained hurts the sending reputation
(SES pauses accounts whose bounce or complaint rate stays high), so the delivery engine
fails such a recipient at once, `550 5.1.1`, without a transport call: the sender gets the
usual bounce. It applies whatever the transport: an address that does not exist does not
exist through `mx` either.

Items live in the outbound table beside the queue state (no table of their own to deploy
and grant): pk=suppressed#<address>  sk=suppressed  reason, since, detail, envelope_id.
Addresses are compared in lower case, as SES compares them.

SES keeps an account-level suppression list of its own (when enabled, SES refuses to send
to its entries and reports a bounce with subtype `OnAccountSuppressionList`, which lands
here too). `SesSuppressionList` reads and clears it for `mailpipe queue suppressed --ses`
and `unsuppress --ses`, with the operator's credentials, never the functions' role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from mailpipe.dynamo import scan_all
from mailpipe.outbound.status import SmtpStatus

PREFIX = "suppressed#"
SORT_KEY = "suppressed"
BOUNCE, COMPLAINT = "bounce", "complaint"


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: str  # BOUNCE or COMPLAINT
    since: str  # ISO time of the event
    detail: str = ""  # what the remote server (or SES) said
    envelope_id: str = ""  # the message whose event suppressed the address

    @property
    def status(self) -> SmtpStatus:
        """What a later send to this address fails with, without trying."""
        why = f"recipient address suppressed after a {self.reason} on {self.since[:10]}"
        return SmtpStatus(550, "5.1.1", f"{why} (mailpipe queue unsuppress {self.address})")

    def to_item(self) -> dict[str, Any]:
        return {
            "pk": PREFIX + self.address.lower(),
            "sk": SORT_KEY,
            "reason": self.reason,
            "since": self.since,
            "detail": self.detail[:1000],
            "envelope_id": self.envelope_id,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Suppression:
        return cls(
            address=item["pk"][len(PREFIX) :],
            reason=item.get("reason", BOUNCE),
            since=item.get("since", ""),
            detail=item.get("detail", ""),
            envelope_id=item.get("envelope_id", ""),
        )


class SuppressionList:
    def __init__(self, table: Any) -> None:
        self._table = table

    def add(self, suppression: Suppression) -> None:
        """Record (or refresh) a suppression; the latest event wins."""
        self._table.put_item(Item=suppression.to_item())

    def get(self, address: str) -> Suppression | None:
        key = {"pk": PREFIX + address.lower(), "sk": SORT_KEY}
        item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        return Suppression.from_item(item) if item else None

    def all(self) -> list[Suppression]:
        """Every suppressed address (a scan: the list is small, and only the CLI reads it whole)."""
        only = Attr("pk").begins_with(PREFIX) & Attr("sk").eq(SORT_KEY)
        items = scan_all(self._table, FilterExpression=only)
        return sorted(map(Suppression.from_item, items), key=lambda s: s.address)

    def remove(self, address: str) -> bool:
        """Send to `address` again; False when it was not suppressed."""
        key = {"pk": PREFIX + address.lower(), "sk": SORT_KEY}
        return "Attributes" in self._table.delete_item(Key=key, ReturnValues="ALL_OLD")


@dataclass(frozen=True)
class SesSuppressed:
    address: str
    reason: str  # BOUNCE or COMPLAINT, as SES says it
    since: str


class SesSuppressionList:
    """SES's account-level suppression list (SESv2 List/DeleteSuppressedDestination(s))."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def all(self) -> list[SesSuppressed]:
        found: list[SesSuppressed] = []
        request: dict[str, Any] = {}
        while True:
            page = self._client.list_suppressed_destinations(**request)
            for summary in page.get("SuppressedDestinationSummaries", []):
                since = summary.get("LastUpdateTime")
                found.append(
                    SesSuppressed(
                        summary["EmailAddress"],
                        str(summary.get("Reason", "")).lower(),
                        since.isoformat() if hasattr(since, "isoformat") else str(since or ""),
                    )
                )
            if not page.get("NextToken"):
                return sorted(found, key=lambda s: s.address)
            request["NextToken"] = page["NextToken"]

    def remove(self, address: str) -> bool:
        """False when SES did not have it."""
        try:
            self._client.delete_suppressed_destination(EmailAddress=address)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                return False
            raise
        return True
