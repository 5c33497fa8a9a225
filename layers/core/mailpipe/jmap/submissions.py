"""EmailSubmission/get, /changes, /query, /queryChanges, /set (RFC 8621 7): sending a stored Email.

Sending is SMTP submission's path (jmap/outbox.py): the From, Sender and Resent-* fields and the
envelope's MAIL FROM must be addresses the user may send as (the rule of
mailpipe/sender_fields.py), Bcc is removed from the bytes sent, and the message goes to the spool
with the user as its authenticated sender. Sending is immediate (`maxDelayedSend` 0): every
submission is `undoStatus: final`, so it cannot be canceled (`cannotUnsend`), and the records are
kept (destroy answers `forbidden`).
"""

from __future__ import annotations

import logging
from typing import Any

from mailpipe.addresses import AddressError, parse_address
from mailpipe.jmap import standard
from mailpipe.jmap.context import SUBMISSION, Context
from mailpipe.jmap.email_set import email_set
from mailpipe.jmap.email_view import thread_of
from mailpipe.jmap.errors import MethodError, SetFailure, invalid_arguments, set_error
from mailpipe.jmap.identities import find as find_identity
from mailpipe.jmap.identities import identities
from mailpipe.jmap.messages import locate_ids
from mailpipe.jmap.methods import Result, method
from mailpipe.jmap.outbox import Outbox, without_bcc
from mailpipe.mime.headers import header_fields, parse_addresses
from mailpipe.mime.offsets import scan_header
from mailpipe.sender_fields import Unreadable, claimed_senders, may_send_as

log = logging.getLogger(__name__)

PROPERTIES = (
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
)
STATE_VERSION = "s1"
MAX_RECIPIENTS = 100  # as many as SMTP submission takes for one message (RFC 5321 4.5.3.1.8)
RECIPIENT_FIELDS = ("to", "cc", "bcc")


def _outbox(context: Context) -> Outbox:
    if context.outbox is None:
        raise MethodError("serverFail", "sending is not configured")
    return context.outbox


def _records(context: Context) -> list[dict[str, Any]]:
    if "submissions" not in context.cache:
        context.cache["submissions"] = _outbox(context).records(context.owner)
    return context.cache["submissions"]  # type: ignore[no-any-return]


def _state(records: list[dict[str, Any]]) -> str:
    return f"{STATE_VERSION}:{records[-1]['id'][1:] if records else '0'}"


@method("EmailSubmission/get", SUBMISSION)
def submission_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    wanted = standard.get_ids(context, arguments)
    props = standard.properties(arguments, PROPERTIES, PROPERTIES)
    records = _records(context)
    by_id = {r["id"]: r for r in records}
    chosen = list(by_id) if wanted is None else [i for i in wanted if i in by_id]
    if wanted is None and len(chosen) > context.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "ask for ids: too many submissions")
    return {
        "accountId": context.account_id,
        "state": _state(records),
        "list": [{p: v for p, v in by_id[i].items() if p in props} for i in chosen],
        "notFound": [] if wanted is None else [i for i in wanted if i not in by_id],
    }


@method("EmailSubmission/changes", SUBMISSION)
def submission_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    since = standard.since_state(arguments)
    limit = standard.max_changes(context, arguments)
    version, _, after = since.partition(":")
    if version != STATE_VERSION or not after:
        raise MethodError("cannotCalculateChanges", "not a state of this server")
    newer = _outbox(context).records(context.owner, None if after == "0" else after)
    more = len(newer) > limit
    newer = newer[:limit]
    current = _state(_records(context)) if not more else _state(newer)
    return {
        "accountId": context.account_id,
        "oldState": since,
        "newState": current if newer or more else since,
        "hasMoreChanges": more,
        "created": [r["id"] for r in newer],
        "updated": [],
        "destroyed": [],
    }


def _query_ids(context: Context, arguments: dict[str, Any]) -> list[str]:
    """The ids of the owner's submissions that match the filter, in the sort's order (all of them)."""
    records = list(_records(context))
    condition = arguments.get("filter") or {}
    if not isinstance(condition, dict):
        raise invalid_arguments("filter must be a FilterCondition")
    for name, value in condition.items():
        if name in ("identityIds", "emailIds", "threadIds"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise invalid_arguments(f"{name} must be a list of ids")
            field = name[:-1]
            records = [r for r in records if r[field] in value]
        elif name == "undoStatus":
            records = [r for r in records if r["undoStatus"] == value]
        elif name in ("before", "after"):
            if not isinstance(value, str):
                raise invalid_arguments(f"{name} must be a UTCDate")
            records = [
                r for r in records if (r["sendAt"] < value if name == "before" else r["sendAt"] >= value)
            ]
        else:
            raise MethodError("unsupportedFilter", f"cannot filter on {name}")
    sort = arguments.get("sort") or [{"property": "sentAt", "isAscending": True}]
    if not isinstance(sort, list) or not all(isinstance(s, dict) for s in sort):
        raise invalid_arguments("sort must be a list of Comparators")
    for comparator in reversed(sort):
        prop = comparator.get("property")
        key = {"sentAt": "id", "emailId": "emailId", "threadId": "threadId"}.get(str(prop))
        if key is None:
            raise MethodError("unsupportedSort", f"cannot sort by {prop}")
        records.sort(key=lambda r, k=key: r[k], reverse=comparator.get("isAscending", True) is False)
    return [r["id"] for r in records]


@method("EmailSubmission/query", SUBMISSION)
def submission_query(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    result = standard.window(context, arguments, _query_ids(context, arguments))
    state = _state(_records(context))
    return {"accountId": context.account_id, "queryState": state, "canCalculateChanges": True, **result}


@method("EmailSubmission/queryChanges", SUBMISSION)
def submission_query_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """RFC 8620 5.6. A submission never changes once made (sending is immediate, `final`) and is
    never destroyed, and every property a filter or sort reads is fixed at creation: so what the
    results gained since a state is the submissions made since that match, each `added` at its
    index, and nothing is ever `removed`. The query state is the /get state (the newest id)."""
    since = standard.since_state(arguments, "sinceQueryState")
    up_to = arguments.get("upToId")
    if up_to is not None and not isinstance(up_to, str):
        raise invalid_arguments("upToId is an id")
    limit = arguments.get("maxChanges")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise invalid_arguments("maxChanges must be a positive integer")
    version, _, after = since.partition(":")
    if version != STATE_VERSION or not after:
        raise MethodError("cannotCalculateChanges", "not a query state of this server")
    ids = _query_ids(context, arguments)
    made_since = {r["id"] for r in _outbox(context).records(context.owner, None if after == "0" else after)}
    added = [{"id": i, "index": n} for n, i in enumerate(ids) if i in made_since]
    if up_to is not None and up_to in ids:
        # The client keeps results up to upToId only (RFC 8620 5.6): what lands after it is left out.
        added = [a for a in added if a["index"] <= ids.index(up_to)]
    if limit is not None and len(added) > limit:
        raise MethodError("tooManyChanges", f"more than maxChanges ({limit}) changes")
    result: dict[str, Any] = {
        "accountId": context.account_id,
        "oldQueryState": since,
        "newQueryState": _state(_records(context)),
        "removed": [],
        "added": added,
    }
    if arguments.get("calculateTotal"):
        result["total"] = len(ids)
    return result


@method("EmailSubmission/set", SUBMISSION)
def submission_set(context: Context, arguments: dict[str, Any]) -> Result:
    standard.check_set_size(context, arguments)
    old_state = _state(_records(context))
    standard.check_if_in_state(arguments, old_state)
    on_update = arguments.get("onSuccessUpdateEmail")
    on_destroy = arguments.get("onSuccessDestroyEmail")
    if on_update is not None and not isinstance(on_update, dict):
        raise invalid_arguments("onSuccessUpdateEmail must be a map or null")
    if on_destroy is not None and (
        not isinstance(on_destroy, list) or not all(isinstance(i, str) for i in on_destroy)
    ):
        raise invalid_arguments("onSuccessDestroyEmail must be a list of ids or null")
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, properties in (arguments.get("create") or {}).items():
        try:
            created[creation_id] = _create(context, properties)
            context.created_ids[creation_id] = created[creation_id]["id"]
        except SetFailure as failure:
            log.info(
                "jmap EmailSubmission/set for %s: %s not sent: %s", context.owner, creation_id, failure.error
            )
            not_created[creation_id] = failure.error
    context.cache.pop("submissions", None)
    known = {r["id"] for r in _records(context)}
    not_updated = {}
    for submission_id, patch in (arguments.get("update") or {}).items():
        if submission_id not in known:
            not_updated[submission_id] = set_error("notFound")
        elif isinstance(patch, dict) and patch.get("undoStatus") == "canceled":
            not_updated[submission_id] = set_error("cannotUnsend", "sent at once: nothing to cancel")
        else:
            not_updated[submission_id] = set_error("invalidProperties", "only undoStatus may change")
    not_destroyed = {
        i: set_error("forbidden", "submissions are kept") if i in known else set_error("notFound")
        for i in arguments.get("destroy") or []
    }
    response = {
        "accountId": context.account_id,
        "oldState": old_state,
        "newState": _state(_records(context)),
        "created": {
            k: {"id": v["id"], "sendAt": v["sendAt"], "undoStatus": "final"} for k, v in created.items()
        }
        or None,
        "updated": None,
        "destroyed": None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }
    follow_up = _on_success(context, created, on_update or {}, on_destroy or [])
    if follow_up is None:
        return response
    return [("EmailSubmission/set", response), ("Email/set", follow_up)]


def _on_success(
    context: Context, created: dict[str, Any], on_update: dict[str, Any], on_destroy: list[str]
) -> dict[str, Any] | None:
    """RFC 8621 7.5: an implicit Email/set on the Emails of the submissions that were sent."""
    if not on_update and not on_destroy:
        return None
    by_id = {v["id"]: v for v in created.values()}

    def email_of(reference: str) -> str | None:
        if reference.startswith("#"):
            sent = created.get(reference[1:])
            return sent["emailId"] if sent else None
        return by_id[reference]["emailId"] if reference in by_id else None

    update = {e: patch for r, patch in on_update.items() if (e := email_of(r))}
    destroy = [e for r in on_destroy if (e := email_of(r))]
    if not update and not destroy:
        return None
    return email_set(context, {"accountId": context.account_id, "update": update, "destroy": destroy})


def _create(context: Context, properties: Any) -> dict[str, Any]:
    if not isinstance(properties, dict):
        raise SetFailure("invalidProperties", "an EmailSubmission is an object")
    unknown = sorted(set(properties) - {"identityId", "emailId", "envelope"})
    if unknown:
        raise SetFailure("invalidProperties", "these cannot be set", properties=unknown)
    identity = find_identity(context, _resolved(context, properties, "identityId"))
    if identity is None:
        raise SetFailure("invalidProperties", "no such identity", properties=["identityId"])
    email_id = _resolved(context, properties, "emailId")
    found = locate_ids(context, [email_id]).get(email_id) if isinstance(email_id, str) else None
    if found is None:
        raise SetFailure("invalidProperties", "no such Email", properties=["emailId"])
    outbox = _outbox(context)
    owned = {i.email for i in identities(context)}
    raw = context.store.read_body(found.message)
    fields = _fields(raw)
    try:
        claimed = claimed_senders(fields)
    except Unreadable as exc:
        raise SetFailure("invalidEmail", str(exc), properties=["from"]) from None
    for name, address in claimed:
        if not may_send_as(owned, address):
            log.warning("jmap: %s may not send with %s: %s", context.owner, name, address)
            raise SetFailure("forbiddenFrom", f"{name}: shows <{address}>, not an address of this user")
    mail_from, recipients = _envelope(properties.get("envelope"), identity.email, fields)
    if not may_send_as(owned, mail_from):
        raise SetFailure("forbiddenMailFrom", f"may not send as <{mail_from}>")
    sent = outbox.send(context.owner, without_bcc(raw), mail_from, recipients)
    log.info(
        "jmap submission %s from=<%s> rcpts=%d size=%d user=%s",
        sent.queue_id,
        mail_from,
        len(recipients),
        sent.size,
        context.owner,
    )
    record = {
        "id": "S" + sent.queue_id,
        "identityId": identity.id,
        "emailId": email_id,
        "threadId": thread_of(found.ref, found.message),
        "envelope": {
            "mailFrom": {"email": mail_from, "parameters": None},
            "rcptTo": [{"email": r, "parameters": None} for r in recipients],
        },
        "sendAt": sent.sent_at,
        "undoStatus": "final",
        # Queued: the outbound queue's progress (mailpipe queue show) is not followed here.
        "deliveryStatus": {
            r: {"smtpReply": "250 2.0.0 queued", "delivered": "queued", "displayed": "unknown"}
            for r in recipients
        },
        "dsnBlobIds": [],
        "mdnBlobIds": [],
    }
    outbox.record(context.owner, sent.queue_id, record)
    return record


def _resolved(context: Context, properties: dict[str, Any], name: str) -> Any:
    """An id, or "#creationId" of an object made earlier in the request; a creation id that names
    nothing fails this object only (a SetError), not the whole call."""
    value = properties.get(name)
    if isinstance(value, str) and value.startswith("#"):
        value = context.created_ids.get(value[1:])
        if value is None:
            raise SetFailure(
                "invalidProperties", f"{name}: no object was created as {properties[name]}", properties=[name]
            )
    return value


def _fields(raw: bytes) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, value in header_fields(raw, 0, scan_header(raw, 0, [])[0]):
        fields.setdefault(name, []).append(value.encode("latin-1").decode("utf-8", "replace"))
    return fields


def _envelope(given: Any, identity_email: str, fields: dict[str, list[str]]) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TOs: as given, or the identity's address and the To, Cc and Bcc
    addresses (RFC 8621 7.5)."""
    if given is None:
        mail_from = identity_email
        recipients: list[str] = []
        for name in RECIPIENT_FIELDS:
            for value in fields.get(name, []):
                for mailbox in parse_addresses(value) or []:
                    if mailbox["host"] is not None:
                        recipients.append(f"{mailbox['mailbox']}@{mailbox['host']}")
    else:
        try:
            mail_from = given["mailFrom"]["email"]
            recipients = [r["email"] for r in given["rcptTo"]]
        except (TypeError, KeyError):
            raise SetFailure(
                "invalidProperties", "envelope: mailFrom and rcptTo", properties=["envelope"]
            ) from None
        if not isinstance(mail_from, str) or not all(isinstance(r, str) for r in recipients):
            raise SetFailure("invalidProperties", "envelope addresses are strings", properties=["envelope"])
    checked: list[str] = []
    invalid: list[str] = []
    for address in recipients:
        try:
            checked.append(parse_address(address).text)
        except AddressError:
            invalid.append(address)
    if invalid:
        raise SetFailure("invalidRecipients", invalidRecipients=invalid)
    checked = list(dict.fromkeys(checked))
    if not checked:
        raise SetFailure("noRecipients", "the Email has no To, Cc or Bcc address")
    if len(checked) > MAX_RECIPIENTS:
        raise SetFailure("tooManyRecipients", maxRecipients=MAX_RECIPIENTS)
    return mail_from, checked
