"""Mailbox/get|changes|query|queryChanges|set (RFC 8621 2) over the store's mailboxes.

A JMAP Mailbox is a store mailbox; its name is the last part of the IMAP name ("/" separates
levels) and parentId the mailbox named by the rest, so a hierarchy made in IMAP shows in JMAP and the
other way round. Roles are the RFC 6154 special-use attributes. Changes go through the store's own
create, rename, subscribe and delete, exactly as IMAP's CREATE, RENAME, SUBSCRIBE and DELETE do.
"""

from __future__ import annotations

import logging
from typing import Any

from mailpipe.jmap import ids, standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.errors import MethodError, SetFailure, invalid_arguments
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import describe, format_mailbox_state, mailbox_state, parse_mailbox_state
from mailpipe.jmap.threads import thread_ids
from mailpipe.store import Mailbox, MailboxExists, NoSuchMailbox, StoreError

log = logging.getLogger(__name__)

DELIMITER = "/"
INBOX = "INBOX"
SEEN = "\\Seen"
ROLE_OF_SPECIAL_USE = {
    "\\Sent": "sent",
    "\\Drafts": "drafts",
    "\\Trash": "trash",
    "\\Junk": "junk",
    "\\Archive": "archive",
    "\\All": "all",
    "\\Flagged": "flagged",
}
SPECIAL_USE_OF_ROLE = {role: attribute for attribute, role in ROLE_OF_SPECIAL_USE.items()}
COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")
PROPERTIES = ("id", "name", "parentId", "role", "sortOrder", *COUNTS, "myRights", "isSubscribed")
MAX_NAME = 255


def role(mailbox: Mailbox) -> str | None:
    if mailbox.name == INBOX:
        return "inbox"
    return ROLE_OF_SPECIAL_USE.get(mailbox.special_use or "")


def parent_of(mailbox: Mailbox, by_name: dict[str, Mailbox]) -> Mailbox | None:
    head, _, _ = mailbox.name.rpartition(DELIMITER)
    return by_name.get(head) if head else None


def counts(context: Context, mailbox: Mailbox) -> dict[str, int]:
    """Totals by listing the mailbox's index (no S3); threads by mime/threading.py's ids."""
    messages = context.messages(mailbox)
    unread = [m for m in messages if SEEN not in m.flags]
    threads = thread_ids(context, mailbox)
    return {
        "totalEmails": len(messages),
        "unreadEmails": len(unread),
        "totalThreads": len({threads[m.uid] for m in messages}),
        "unreadThreads": len({threads[m.uid] for m in unread}),
    }


def to_jmap(
    context: Context, mailbox: Mailbox, by_name: dict[str, Mailbox], wanted: list[str]
) -> dict[str, Any]:
    is_inbox = mailbox.name == INBOX
    value: dict[str, Any] = {"id": ids.mailbox_jmap_id(mailbox.mailbox_id)}
    parent = parent_of(mailbox, by_name)
    fields: dict[str, Any] = {
        "name": mailbox.name.rpartition(DELIMITER)[2] if parent else mailbox.name,
        "parentId": ids.mailbox_jmap_id(parent.mailbox_id) if parent else None,
        "role": role(mailbox),
        "sortOrder": 0 if is_inbox else 10 if role(mailbox) else 100,
        "isSubscribed": context.is_subscribed(mailbox),
        "myRights": {
            "mayReadItems": True,
            "mayAddItems": True,
            "mayRemoveItems": True,
            "maySetSeen": True,
            "maySetKeywords": True,
            "mayCreateChild": True,
            "mayRename": not is_inbox,
            "mayDelete": not is_inbox,
            "maySubmit": True,
        },
    }
    if any(c in wanted for c in COUNTS):
        fields.update(counts(context, mailbox))
    value.update({name: fields[name] for name in wanted if name in fields})
    return value


@method("Mailbox/get", MAIL)
def mailbox_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    wanted = standard.properties(arguments, PROPERTIES, PROPERTIES)
    requested = standard.get_ids(context, arguments)
    mailboxes = context.mailboxes()
    by_name = {m.name: m for m in mailboxes}
    by_id = {ids.mailbox_jmap_id(m.mailbox_id): m for m in mailboxes}
    chosen = list(by_id) if requested is None else requested
    return {
        "accountId": context.account_id,
        "state": mailbox_state(mailboxes, context.subscribed_names),
        "list": [to_jmap(context, by_id[i], by_name, wanted) for i in chosen if i in by_id],
        "notFound": [i for i in chosen if i not in by_id],
    }


@method("Mailbox/changes", MAIL)
def mailbox_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    since = standard.since_state(arguments)
    limit = standard.max_changes(context, arguments)
    old = parse_mailbox_state(since)
    if old is None:
        raise MethodError("cannotCalculateChanges", "not a Mailbox state of this server")
    mailboxes = context.mailboxes()
    now = {m.mailbox_id: m for m in mailboxes}
    created, updated, destroyed, counts_only = [], [], [], True
    marks = dict(old)  # the state reached by the changes reported (intermediate if cut short)
    for store_id, mailbox in sorted(now.items()):
        if len(created) + len(updated) + len(destroyed) >= limit:
            break
        jmap_id = ids.mailbox_jmap_id(mailbox.mailbox_id)
        if store_id not in old:
            created.append(jmap_id)
        elif old[store_id] != (describe(mailbox, context.is_subscribed(mailbox)), mailbox.highestmodseq):
            updated.append(jmap_id)
            counts_only = counts_only and old[store_id][0] == describe(
                mailbox, context.is_subscribed(mailbox)
            )
        else:
            continue
        marks[store_id] = (describe(mailbox, context.is_subscribed(mailbox)), mailbox.highestmodseq)
    for store_id in sorted(set(old) - set(now)):
        if len(created) + len(updated) + len(destroyed) >= limit:
            break
        destroyed.append(ids.mailbox_jmap_id(store_id))
        del marks[store_id]
    more = marks != {
        m.mailbox_id: (describe(m, context.is_subscribed(m)), m.highestmodseq) for m in mailboxes
    }
    new_state = format_mailbox_state(marks)
    return {
        "accountId": context.account_id,
        "oldState": since,
        "newState": new_state,
        "hasMoreChanges": more,
        "created": created,
        "updated": updated,
        "destroyed": destroyed,
        "updatedProperties": list(COUNTS) if updated and counts_only else None,
    }


FILTERS = {"parentId", "name", "role", "hasAnyRole", "isSubscribed"}


def _query_ids(context: Context, arguments: dict[str, Any]) -> list[str]:
    mailboxes = context.mailboxes()
    by_name = {m.name: m for m in mailboxes}
    objects = [to_jmap(context, m, by_name, [*PROPERTIES[:5], "isSubscribed"]) for m in mailboxes]
    condition = arguments.get("filter") or {}
    if not isinstance(condition, dict) or set(condition) - FILTERS:
        raise MethodError("unsupportedFilter", "Mailbox/query filters on " + ", ".join(sorted(FILTERS)))
    objects = [o for o in objects if _matches(o, condition)]
    sort = arguments.get("sort") or [{"property": "sortOrder"}, {"property": "name"}]
    if not isinstance(sort, list):
        raise invalid_arguments("sort must be a list")
    for comparator in reversed(sort):
        prop = comparator.get("property") if isinstance(comparator, dict) else None
        if prop not in ("sortOrder", "name"):
            raise MethodError("unsupportedSort", "Mailbox/query sorts by sortOrder or name")
        objects.sort(
            key=lambda o, p=prop: (o[p] or 0) if p == "sortOrder" else o["name"].lower(),
            reverse=comparator.get("isAscending") is False,
        )
    return [o["id"] for o in objects]


@method("Mailbox/query", MAIL)
def mailbox_query(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    ids_found = _query_ids(context, arguments)
    return {
        "accountId": context.account_id,
        "queryState": mailbox_state(context.mailboxes(), context.subscribed_names),
        "canCalculateChanges": True,
        **standard.window(context, arguments, ids_found),
    }


def _matches(mailbox: dict[str, Any], condition: dict[str, Any]) -> bool:
    for name, wanted in condition.items():
        if name == "name":
            if not isinstance(wanted, str) or wanted.lower() not in mailbox["name"].lower():
                return False
        elif name == "hasAnyRole":
            if (mailbox["role"] is not None) != bool(wanted):
                return False
        elif mailbox[name] != wanted:
            return False
    return True


@method("Mailbox/queryChanges", MAIL)
def mailbox_query_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """RFC 8620 5.6 from the Mailbox state: what a filter or sort reads (name, and with it the
    parent; role; subscription) is in each mailbox's description hash, so a mailbox whose hash
    moved is removed and added again where it matches; HIGHESTMODSEQ (the counts) moves nothing.
    Every property can change, so upToId is ignored (as the RFC says)."""
    since = standard.since_state(arguments, "sinceQueryState")
    old = parse_mailbox_state(since)
    if old is None:
        raise MethodError("cannotCalculateChanges", "not a Mailbox query state of this server")
    limit = arguments.get("maxChanges")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise invalid_arguments("maxChanges must be a positive integer")
    mailboxes = context.mailboxes()
    now = {m.mailbox_id: describe(m, m.name in context.subscribed_names) for m in mailboxes}
    touched = {ids.mailbox_jmap_id(i) for i, d in now.items() if old.get(i, (None, 0))[0] != d}
    gone = {ids.mailbox_jmap_id(i) for i in old if i not in now}
    found = _query_ids(context, arguments)
    added = [{"id": i, "index": n} for n, i in enumerate(found) if i in touched]
    removed = sorted((touched - {ids.mailbox_jmap_id(i) for i in now if i not in old}) | gone)
    if limit is not None and len(added) + len(removed) > limit:
        raise MethodError("tooManyChanges", f"more than maxChanges ({limit}) changes")
    result: dict[str, Any] = {
        "accountId": context.account_id,
        "oldQueryState": since,
        "newQueryState": mailbox_state(mailboxes, context.subscribed_names),
        "removed": removed,
        "added": added,
    }
    if arguments.get("calculateTotal"):
        result["total"] = len(found)
    return result


@method("Mailbox/set", MAIL)
def mailbox_set(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    standard.check_set_size(context, arguments)
    old_state = mailbox_state(context.mailboxes(), context.subscribed_names)
    standard.check_if_in_state(arguments, old_state)
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, properties in (arguments.get("create") or {}).items():
        try:
            mailbox = _create(context, properties)
        except SetFailure as failure:
            not_created[creation_id] = failure.error
            continue
        jmap_id = ids.mailbox_jmap_id(mailbox.mailbox_id)
        context.created_ids[creation_id] = jmap_id
        created[creation_id] = {"id": jmap_id, **_server_set(context, mailbox)}
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for jmap_id, patch in (arguments.get("update") or {}).items():
        try:
            _update(context, context.resolve(jmap_id), patch)
            updated[jmap_id] = None
        except SetFailure as failure:
            not_updated[jmap_id] = failure.error
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    remove_emails = bool(arguments.get("onDestroyRemoveEmails"))
    for jmap_id in arguments.get("destroy") or []:
        try:
            _destroy(context, context.resolve(jmap_id), remove_emails)
            destroyed.append(jmap_id)
        except SetFailure as failure:
            not_destroyed[jmap_id] = failure.error
    return {
        "accountId": context.account_id,
        "oldState": old_state,
        "newState": mailbox_state(context.mailboxes(), context.subscribed_names),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }


def _server_set(context: Context, mailbox: Mailbox) -> dict[str, Any]:
    by_name = {m.name: m for m in context.mailboxes()}
    value = to_jmap(context, mailbox, by_name, [*COUNTS, "myRights", "sortOrder"])
    del value["id"]
    return value


def _full_name(context: Context, name: Any, parent_id: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or DELIMITER in name:
        raise SetFailure(
            "invalidProperties",
            f"a name of 1-{MAX_NAME} characters without {DELIMITER!r}",
            properties=["name"],
        )
    if any(ord(c) < 0x20 for c in name):
        raise SetFailure("invalidProperties", "control characters in the name", properties=["name"])
    if parent_id is None:
        return INBOX if name.upper() == INBOX else name
    parent = context.mailbox_by_jmap_id(parent_id)
    if parent is None:
        raise SetFailure("invalidProperties", "no such parent", properties=["parentId"])
    return parent.name + DELIMITER + name


def _create(context: Context, properties: Any) -> Mailbox:
    if not isinstance(properties, dict):
        raise SetFailure("invalidProperties", "a Mailbox object is a map")
    unknown = set(properties) - {"name", "parentId", "role", "isSubscribed", "sortOrder"}
    if unknown:
        raise SetFailure("invalidProperties", "cannot set these", properties=sorted(unknown))
    name = _full_name(context, properties.get("name"), properties.get("parentId"))
    special_use = _special_use(context, properties.get("role"))
    try:
        mailbox = context.store.create_mailbox(context.owner, name, special_use)
    except MailboxExists:
        raise SetFailure("invalidProperties", f"a mailbox {name!r} exists", properties=["name"]) from None
    finally:
        context.changed()
    if properties.get("isSubscribed") is False:
        context.store.unsubscribe(context.owner, name)
        context.changed()
    return context.mailbox(mailbox.mailbox_id) or mailbox


def _special_use(context: Context, role_name: Any) -> str | None:
    if role_name is None:
        return None
    special_use = SPECIAL_USE_OF_ROLE.get(role_name) if isinstance(role_name, str) else None
    if special_use is None:
        raise SetFailure(
            "invalidProperties", f"roles: {', '.join(sorted(SPECIAL_USE_OF_ROLE))}", properties=["role"]
        )
    if any(m.special_use == special_use for m in context.mailboxes()):
        raise SetFailure("invalidProperties", f"a mailbox has role {role_name!r}", properties=["role"])
    return special_use


def _update(context: Context, jmap_id: str, patch: Any) -> None:
    mailbox = context.mailbox_by_jmap_id(jmap_id)
    if mailbox is None:
        raise SetFailure("notFound")
    if not isinstance(patch, dict):
        raise SetFailure("invalidPatch", "a patch is a map")
    by_name = {m.name: m for m in context.mailboxes()}
    current = to_jmap(context, mailbox, by_name, ["name", "parentId", "role", "sortOrder", "isSubscribed"])
    unknown = set(patch) - set(current)
    if unknown:
        raise SetFailure("invalidProperties", "cannot set these", properties=sorted(unknown))
    if "role" in patch and patch["role"] != current["role"]:
        raise SetFailure(
            "invalidProperties", "roles are given when a mailbox is created", properties=["role"]
        )
    if "sortOrder" in patch and patch["sortOrder"] != current["sortOrder"]:
        raise SetFailure("invalidProperties", "the order is the server's", properties=["sortOrder"])
    name, parent = patch.get("name", current["name"]), patch.get("parentId", current["parentId"])
    if (name, parent) != (current["name"], current["parentId"]):
        if mailbox.name == INBOX:
            raise SetFailure("forbidden", "INBOX keeps its name")
        new_name = _full_name(context, name, parent)
        if new_name == mailbox.name or new_name.startswith(mailbox.name + DELIMITER):
            raise SetFailure("invalidProperties", "a mailbox cannot go under itself", properties=["parentId"])
        _rename_tree(context, mailbox, new_name)
    if "isSubscribed" in patch and patch["isSubscribed"] != context.is_subscribed(mailbox):
        if not isinstance(patch["isSubscribed"], bool):
            raise SetFailure("invalidProperties", properties=["isSubscribed"])
        name = context.mailbox(mailbox.mailbox_id).name  # type: ignore[union-attr]
        if patch["isSubscribed"]:
            context.store.subscribe(context.owner, name)
        else:
            context.store.unsubscribe(context.owner, name)
        context.changed()


def _rename_tree(context: Context, mailbox: Mailbox, new_name: str) -> None:
    """As IMAP RENAME: the mailbox and every mailbox under it."""
    children = [m for m in context.mailboxes() if m.name.startswith(mailbox.name + DELIMITER)]
    try:
        context.store.rename_mailbox(context.owner, mailbox.name, new_name)
        for child in children:
            context.store.rename_mailbox(
                context.owner, child.name, new_name + child.name[len(mailbox.name) :]
            )
    except MailboxExists:
        raise SetFailure("invalidProperties", f"a mailbox {new_name!r} exists", properties=["name"]) from None
    except (NoSuchMailbox, StoreError) as exc:
        log.info("jmap rename of %s for %s: %s", mailbox.name, context.owner, exc)
        raise SetFailure("notFound") from None
    finally:
        context.changed()


def _destroy(context: Context, jmap_id: str, remove_emails: bool) -> None:
    mailbox = context.mailbox_by_jmap_id(jmap_id)
    if mailbox is None:
        raise SetFailure("notFound")
    if mailbox.name == INBOX:
        raise SetFailure("forbidden", "INBOX cannot be destroyed")
    if any(m.name.startswith(mailbox.name + DELIMITER) for m in context.mailboxes()):
        raise SetFailure("mailboxHasChild")
    if not remove_emails and context.store.messages_in(mailbox):
        raise SetFailure("mailboxHasEmail")
    try:
        context.store.delete_mailbox(context.owner, mailbox.name)
    except NoSuchMailbox:
        raise SetFailure("notFound") from None
    finally:
        context.changed()
