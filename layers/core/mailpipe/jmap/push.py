"""JMAP push over WebSocket (RFC 8887 4.3.5, RFC 8620 7.1): who listens, and what they are told.

Connections live in the JMAP table, by owner, so that the relay (mailpipe/changes/relay.py), which
sees every mailbox change, finds whom to tell: one BatchGetItem of the markers of the owners in a
batch of changes, then one Query per owner whose marker says someone may listen:

    pk=connection#<id>  sk=connection   owner, token, expires  ($connect: who the connection is;
                                                               token: the key of the session token
                                                               it signed in with, if one)
    pk=push#<owner>     sk=<id>         types, expires         (after WebSocketPushEnable)
    pk=pushing#<owner>  sk=pushing      expires                (the marker: written before the
                                                               push item at every enable)

The marker spares the relay a Query per owner and batch when nobody listens, the common case, and
delays nothing: it is no cache, it is read with the batch, so the first change after an enable is
told as before. It is never deleted at a disable (another connection may still listen; a stale one
costs the Query that every owner cost without it); its `expires`, set at each enable, outlasts
every push item of the owner's.

`expires` is DynamoDB's TTL: API Gateway closes a WebSocket after 2 hours at most, and a
connection whose $disconnect was lost (it is best-effort) is dropped at the first push that
meets GoneException, or by TTL.

A StateChange carries the account's current Email, Thread and Mailbox states (jmap/state.py,
computed from the mailbox items alone: one Query of the owner's partition), so a client compares
them with its own and calls /changes only for what moved.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key

from mailpipe.jmap import ids
from mailpipe.jmap.state import email_state, mailbox_state
from mailpipe.store import MailStore

log = logging.getLogger(__name__)

# API Gateway's longest WebSocket connection, and a minute more.
CONNECTION_LIFETIME = 2 * 3600 + 60
PUSH_TYPES = ("Email", "Thread", "Mailbox")
MARKER_PREFIX = "pushing#"
MARKER_SK = "pushing"


class PushConnections:
    def __init__(self, table: Any, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    def opened(self, connection_id: str, owner: str, token_key: str | None = None) -> None:
        item: dict[str, Any] = {
            "pk": _connection_pk(connection_id),
            "sk": "connection",
            "owner": owner,
            "expires": self._expires(),
        }
        if token_key is not None:
            item["token"] = token_key
        self._table.put_item(Item=item)

    def owner(self, connection_id: str) -> str | None:
        signed_in = self.signed_in(connection_id)
        return signed_in[0] if signed_in else None

    def signed_in(self, connection_id: str) -> tuple[str, str | None] | None:
        """(owner, key of the session token it signed in with or None) of an open connection."""
        item = self._table.get_item(Key={"pk": _connection_pk(connection_id), "sk": "connection"}).get("Item")
        if item is None:
            return None
        return str(item["owner"]), (str(item["token"]) if "token" in item else None)

    def enable(self, connection_id: str, owner: str, types: list[str] | None) -> None:
        expires = self._expires()
        # The marker first: whoever can read the push item can read the marker.
        self._table.put_item(Item={"pk": _marker_pk(owner), "sk": MARKER_SK, "expires": expires})
        item: dict[str, Any] = {"pk": _push_pk(owner), "sk": connection_id, "expires": expires}
        if types is not None:
            item["types"] = types
        self._table.put_item(Item=item)

    def disable(self, connection_id: str, owner: str) -> None:
        self._table.delete_item(Key={"pk": _push_pk(owner), "sk": connection_id})

    def closed(self, connection_id: str, owner: str | None = None) -> None:
        """Forgets the connection ($disconnect; or GoneException, where the owner is known)."""
        owner = owner or self.owner(connection_id)
        if owner is not None:
            self.disable(connection_id, owner)
        self._table.delete_item(Key={"pk": _connection_pk(connection_id), "sk": "connection"})

    def may_listen(self, owners: set[str]) -> set[str]:
        """Those of `owners` whom some connection may listen to (an unexpired marker): one
        BatchGetItem per 100 owners, not a Query each."""
        found: set[str] = set()
        wanted = sorted(owners)
        now = self._clock()
        for start in range(0, len(wanted), 100):
            keys = [{"pk": _marker_pk(owner), "sk": MARKER_SK} for owner in wanted[start : start + 100]]
            # The table resource's client converts between DynamoDB's typed values and Python's.
            pending: dict[str, Any] = {self._table.name: {"Keys": keys}}
            for _ in range(5):
                response = self._table.meta.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self._table.name, []):
                    if float(item["expires"]) > now:
                        found.add(str(item["pk"])[len(MARKER_PREFIX) :])
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                # Throttled: those not read may listen (a Query each finds out), rather than go untold.
                found.update(str(k["pk"])[len(MARKER_PREFIX) :] for k in pending[self._table.name]["Keys"])
        return found

    def listening(self, owner: str) -> list[tuple[str, list[str] | None]]:
        """(connection id, data types or None for all) of the owner's connections with push on."""
        items = self._table.query(KeyConditionExpression=Key("pk").eq(_push_pk(owner)))["Items"]
        now = self._clock()
        return [
            (str(i["sk"]), list(i["types"]) if "types" in i else None)
            for i in items
            if float(i["expires"]) > now
        ]

    def _expires(self) -> Decimal:
        return Decimal(int(self._clock() + CONNECTION_LIFETIME))


def state_change(owner: str, store: MailStore) -> dict[str, Any]:
    """The StateChange object (RFC 8620 7.1) telling the owner's current states."""
    mailboxes, subscribed = store.mailboxes_and_subscriptions(owner)
    emails = email_state(mailboxes)
    states = {"Email": emails, "Thread": emails, "Mailbox": mailbox_state(mailboxes, subscribed)}
    return {"@type": "StateChange", "changed": {ids.account_id(owner): states}}


def only(change: dict[str, Any], types: list[str] | None) -> dict[str, Any]:
    """`change` cut to the data types a WebSocketPushEnable asked for (None: all)."""
    if types is None:
        return change
    changed = {
        account: {name: state for name, state in states.items() if name in types}
        for account, states in change["changed"].items()
    }
    return {**change, "changed": changed}


class Pusher:
    """Posts StateChange to the owners' connections through API Gateway's management API."""

    def __init__(
        self, connections: PushConnections, store: MailStore, management: Callable[[], Any | None]
    ) -> None:
        self._connections = connections
        self._store = store
        # The apigatewaymanagementapi client for the WebSocket API's endpoint; None: push is off.
        self._management = management

    def push(self, owners: set[str]) -> int:
        """Tells each owner's listening connections; returns how many were told. Never raises for a
        connection: push is a hint, and a change must not be relayed again for one bad socket."""
        client = self._management() if owners else None
        if client is None:
            return 0
        told = 0
        try:
            owners = self._connections.may_listen(owners)
        except Exception:
            log.exception("push: reading who listens failed")
            return 0
        for owner in sorted(owners):
            try:
                listeners = self._connections.listening(owner)
                if listeners:
                    told += self._tell(client, owner, listeners)
            except Exception:
                log.exception("push to %s failed", owner)
        return told

    def _tell(self, client: Any, owner: str, listeners: list[tuple[str, list[str] | None]]) -> int:
        told = 0
        change = state_change(owner, self._store)  # once per owner, then cut to what each asked
        for connection_id, types in listeners:
            data = json.dumps(only(change, types), separators=(",", ":")).encode()
            try:
                client.post_to_connection(ConnectionId=connection_id, Data=data)
                told += 1
            except client.exceptions.GoneException:
                log.info("push: connection %s of %s is gone", connection_id, owner)
                self._connections.closed(connection_id, owner)
        return told


def _connection_pk(connection_id: str) -> str:
    return "connection#" + connection_id


def _push_pk(owner: str) -> str:
    return "push#" + owner


def _marker_pk(owner: str) -> str:
    return MARKER_PREFIX + owner
