"""Email/get, Email/parse, Email/import and Email/copy (RFC 8621 4.2, 4.9, 4.8, 4.7)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from mailpipe.jmap import email_changes, email_query, email_query_changes, email_set, ids, parsed, standard  # noqa: F401 (register)
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.email_view import (
    DEFAULT,
    PARSE_DEFAULT,
    PROPERTIES,
    BodyOptions,
    body_values,
    check_properties,
    header_block,
    header_values,
    metadata,
    needs_body,
    needs_headers,
    thread_of,
)
from mailpipe.jmap.errors import MethodError, SetFailure, invalid_arguments
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.keywords import flag_of, valid
from mailpipe.jmap.messages import Found, locate_ids, read_blob
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import email_state

log = logging.getLogger(__name__)


@method("Email/get", MAIL)
def email_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    wanted = standard.properties(arguments, PROPERTIES, DEFAULT)
    check_properties(wanted)
    options = BodyOptions.from_arguments(arguments, context.limits.max_body_value_bytes)
    requested = standard.get_ids(context, arguments)
    if requested is None:
        raise MethodError("requestTooLarge", "Email/get needs ids (from Email/query)")
    state = email_state(context.mailboxes())
    found = locate_ids(context, requested)
    emails = [_email(context, found[i], wanted, options) for i in requested if i in found]
    _add_headers(context, emails, [found[i] for i in requested if i in found], wanted)
    return {
        "accountId": context.account_id,
        "state": state,
        "list": emails,
        "notFound": [i for i in requested if i not in found],
    }


def _email(context: Context, found: Found, wanted: list[str], options: BodyOptions) -> dict[str, Any]:
    ref = found.ref
    everything = metadata(ref, found.message)
    values = {name: everything[name] for name in wanted if name in everything}
    # A list view's preview and hasAttachment come from the summary in the index, not the body.
    summary = found.message.summary
    if "preview" in wanted and isinstance(summary.get("preview"), str):
        values["preview"] = summary["preview"]
    if "hasAttachment" in wanted:
        from_summary = parsed.summary_has_attachment(summary)
        if from_summary is not None:
            values["hasAttachment"] = from_summary
    rest = [p for p in wanted if p not in values]
    if needs_body(rest):
        raw = context.store.read_body(found.message)
        values.update(body_values(raw, rest, options, lambda part: _part_blob(ref, part), None))
    return values


def _part_blob(ref: MessageRef, part_id: str) -> str:
    return MessageRef(ref.mailbox_id, ref.uid, part_id).blob_id()


def _add_headers(
    context: Context, emails: list[dict[str, Any]], found: list[Found], wanted: list[str]
) -> None:
    """Header properties from the header blocks kept in the index: one BatchGetItem per mailbox."""
    if not needs_headers(wanted):
        return
    by_mailbox: dict[str, list[Found]] = defaultdict(list)
    for item in found:
        by_mailbox[item.mailbox.mailbox_id].append(item)
    blocks: dict[MessageRef, bytes] = {}
    for mailbox_id, items in by_mailbox.items():
        headers = context.store.read_headers(mailbox_id, [i.message for i in items])
        for item in items:
            blocks[item.ref] = headers.get(item.message.uid, b"")
    for email, item in zip(emails, found, strict=True):
        email.update(header_values(parsed.header_fields(blocks[item.ref]), wanted))


@method("Email/parse", MAIL)
def email_parse(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    blob_ids = arguments.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise invalid_arguments("blobIds must be a list of blob ids")
    if len(blob_ids) > context.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", f"at most {context.limits.max_objects_in_get} blobs")
    wanted = standard.properties(arguments, PROPERTIES, PARSE_DEFAULT)
    wanted = [p for p in wanted if p != "id" or "properties" in arguments]
    check_properties(wanted)
    options = BodyOptions.from_arguments(arguments, context.limits.max_body_value_bytes)
    result: dict[str, Any] = {}
    not_parsable: list[str] = []
    not_found: list[str] = []
    for blob_id in dict.fromkeys(blob_ids):
        raw = read_blob(context, blob_id)
        if raw is None:
            not_found.append(blob_id)
            continue
        try:
            email: dict[str, Any] = {
                p: None for p in ("id", "mailboxIds", "keywords", "receivedAt", "threadId") if p in wanted
            }
            if "blobId" in wanted:
                email["blobId"] = blob_id
            if "size" in wanted:
                email["size"] = len(raw)
            email.update(header_values(parsed.header_fields(header_block(raw)), wanted))
            email.update(body_values(raw, wanted, options, _parse_blob_ids(blob_id), None))
        except Exception:
            log.info("jmap Email/parse of %s for %s: not parsable", blob_id, context.owner, exc_info=True)
            not_parsable.append(blob_id)
            continue
        result[blob_id] = email
    return {
        "accountId": context.account_id,
        "parsed": result or None,
        "notParsable": not_parsable or None,
        "notFound": not_found or None,
    }


def _parse_blob_ids(blob_id: str) -> Any:
    """Part blob ids of a parsed whole message; the parts of a part (an attached message) have none."""
    ref = ids.parse(blob_id, "B")
    if ref is None or ref.part is not None:
        return lambda part: None
    return lambda part: MessageRef(ref.mailbox_id, ref.uid, part).blob_id()


@method("Email/import", MAIL)
def email_import(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    emails = arguments.get("emails")
    if not isinstance(emails, dict):
        raise invalid_arguments("emails must be a map")
    if len(emails) > context.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", f"at most {context.limits.max_objects_in_set} emails")
    old_state = email_state(context.mailboxes())
    standard.check_if_in_state(arguments, old_state)
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, spec in emails.items():
        try:
            created[creation_id] = _import(context, spec)
            context.created_ids[creation_id] = created[creation_id]["id"]
        except SetFailure as failure:
            not_created[creation_id] = failure.error
    context.changed()
    return {
        "accountId": context.account_id,
        "oldState": old_state,
        "newState": email_state(context.mailboxes()),
        "created": created or None,
        "notCreated": not_created or None,
    }


def _import(context: Context, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict) or not isinstance(spec.get("blobId"), str):
        raise SetFailure("invalidProperties", "blobId is required", properties=["blobId"])
    raw = read_blob(context, context.resolve(spec["blobId"]))
    if raw is None:
        raise SetFailure("blobNotFound", notFound=[spec["blobId"]])
    mailbox = email_set.single_mailbox(context, spec.get("mailboxIds"))
    flags = keyword_flags(spec.get("keywords", {}))
    internaldate = _timestamp(spec.get("receivedAt"))
    appended = context.store.append_message(
        context.owner, mailbox.name, raw, flags=flags, internaldate=internaldate
    )
    ref = MessageRef(mailbox.mailbox_id, appended.message.uid)
    return {
        "id": ref.email_id(),
        "blobId": ref.blob_id(),
        "threadId": thread_of(ref, appended.message),
        "size": len(raw),
    }


def keyword_flags(keywords: Any) -> list[str]:
    if not isinstance(keywords, dict) or any(v is not True or not valid(k) for k, v in keywords.items()):
        raise SetFailure("invalidProperties", "keywords map valid keywords to true", properties=["keywords"])
    return sorted({flag_of(k) for k in keywords})


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise SetFailure("invalidProperties", "receivedAt is a UTCDate", properties=["receivedAt"]) from None


@method("Email/copy", MAIL)
def email_copy(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """RFC 8620 5.4: /copy is between two accounts, and each user here has one account."""
    source = arguments.get("fromAccountId")
    if source == context.account_id:
        raise invalid_arguments("fromAccountId must differ from accountId (move with Email/set)")
    raise MethodError("fromAccountNotFound", "no such account")
