"""Identity/get, /changes, /set (RFC 8621 6): the addresses the user may send as.

An Identity is one address of `Directory.owned_addresses` (the user's own and every alias that
delivers to them), the rule SMTP submission applies too (mailpipe/sender_fields.py). They come
from the directory, so the client cannot make or remove them: Identity/set answers `forbidden`
(an address that is not the user's: `forbiddenFrom`); an admin adds an alias instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from mailpipe.jmap import standard
from mailpipe.jmap.context import SUBMISSION, Context
from mailpipe.jmap.errors import MethodError, set_error
from mailpipe.jmap.methods import method
from mailpipe.sender_fields import may_send_as

PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete")
STATE_VERSION = "i1"


@dataclass(frozen=True)
class Identity:
    email: str

    @property
    def id(self) -> str:
        return "I" + hashlib.sha256(self.email.encode()).hexdigest()[:24]

    def as_object(self, owner: str) -> dict[str, Any]:
        return {
            "id": self.id,
            # The address itself for the user's own, the alias's for the others: a name the
            # client can show in its From menu.
            "name": "",
            "email": self.email,
            "replyTo": None,
            "bcc": None,
            "textSignature": "",
            "htmlSignature": "",
            "mayDelete": False,
        }


def identities(context: Context) -> list[Identity]:
    if context.outbox is None:
        raise MethodError("serverFail", "sending is not configured")
    key = "identities"
    if key not in context.cache:
        owned = context.outbox.owned_addresses(context.owner)
        # The user's own address first, then the aliases in order.
        ordered = sorted(owned, key=lambda a: (a != context.owner, a))
        context.cache[key] = [Identity(a) for a in ordered]
    return context.cache[key]  # type: ignore[no-any-return]


def identity_state(found: list[Identity]) -> str:
    text = "\0".join(sorted(i.email for i in found))
    return f"{STATE_VERSION}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def find(context: Context, identity_id: Any) -> Identity | None:
    return next((i for i in identities(context) if i.id == identity_id), None)


@method("Identity/get", SUBMISSION)
def identity_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    wanted = standard.get_ids(context, arguments)
    props = standard.properties(arguments, PROPERTIES, PROPERTIES)
    found = identities(context)
    by_id = {i.id: i for i in found}
    chosen = list(by_id) if wanted is None else [i for i in wanted if i in by_id]
    return {
        "accountId": context.account_id,
        "state": identity_state(found),
        "list": [{p: v for p, v in by_id[i].as_object(context.owner).items() if p in props} for i in chosen],
        "notFound": [] if wanted is None else [i for i in wanted if i not in by_id],
    }


@method("Identity/changes", SUBMISSION)
def identity_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    since = standard.since_state(arguments)
    standard.max_changes(context, arguments)
    current = identity_state(identities(context))
    if since != current:
        # The state is a hash of the address list: the old list is not known, so which identities
        # came or went is not either (an alias added or removed by an admin, rarely).
        raise MethodError("cannotCalculateChanges", "fetch the identities again")
    return {
        "accountId": context.account_id,
        "oldState": since,
        "newState": current,
        "hasMoreChanges": False,
        "created": [],
        "updated": [],
        "destroyed": [],
    }


@method("Identity/set", SUBMISSION)
def identity_set(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    standard.check_set_size(context, arguments)
    found = identities(context)
    state = identity_state(found)
    standard.check_if_in_state(arguments, state)
    owned = {i.email for i in found}
    known = {i.id for i in found}
    not_created: dict[str, Any] = {}
    for creation_id, properties in (arguments.get("create") or {}).items():
        email = properties.get("email") if isinstance(properties, dict) else None
        if not isinstance(email, str):
            not_created[creation_id] = set_error(
                "invalidProperties", "email is required", properties=["email"]
            )
        elif not may_send_as(owned, email):
            not_created[creation_id] = set_error("forbiddenFrom", f"{email} is not an address of this user")
        else:
            not_created[creation_id] = set_error("forbidden", "identities are the directory's addresses")
    not_updated = {
        i: set_error("forbidden", "identities are the directory's addresses")
        if i in known
        else set_error("notFound")
        for i in arguments.get("update") or {}
    }
    not_destroyed = {
        i: set_error("forbidden", "mayDelete is false") if i in known else set_error("notFound")
        for i in arguments.get("destroy") or []
    }
    return {
        "accountId": context.account_id,
        "oldState": state,
        "newState": state,
        "created": None,
        "updated": None,
        "destroyed": None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }
