"""Thread/get and Thread/changes (RFC 8621 3), and the owner's messages grouped by thread.

A thread id is mime/threading.py's, computed from a message's own header at delivery and kept in
its summary, so grouping needs no other message; a Thread is the owner's Emails with that id,
in any of their mailboxes, oldest first. Grouping lists the owner's mailboxes' indexes (no S3),
once per request.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mailpipe.jmap import standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.email_changes import email_delta
from mailpipe.jmap.email_view import thread_of
from mailpipe.jmap.errors import MethodError
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.messages import Found
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import email_state
from mailpipe.store import Mailbox


def thread_ids(context: Context, mailbox: Mailbox) -> dict[int, str]:
    """The thread id of each message context.messages(mailbox) lists, by UID; kept with that
    version of the listing (context.memo), since each costs unpacking the message's summary."""
    memo = context.memo(mailbox)
    if memo is not None and "threads" in memo:
        return memo["threads"]  # type: ignore[no-any-return]
    found = {m.uid: thread_of(MessageRef(mailbox.mailbox_id, m.uid), m) for m in context.messages(mailbox)}
    if memo is not None:
        memo["threads"] = found
    return found


def all_messages(context: Context) -> list[Found]:
    if "all" not in context.cache:
        context.cache["all"] = [
            Found(mailbox, message)
            for mailbox in context.mailboxes()
            for message in context.messages(mailbox)
        ]
    return context.cache["all"]  # type: ignore[no-any-return]


def by_thread(context: Context) -> dict[str, list[Found]]:
    """Thread id -> its Emails, oldest first (RFC 8621 3: sorted by receivedAt)."""
    if "threads" not in context.cache:
        threads: dict[str, list[Found]] = defaultdict(list)
        ids = {m.mailbox_id: thread_ids(context, m) for m in context.mailboxes()}
        for item in all_messages(context):
            threads[ids[item.mailbox.mailbox_id][item.message.uid]].append(item)
        for items in threads.values():
            items.sort(key=lambda i: (i.message.internaldate, i.mailbox.mailbox_id, i.message.uid))
        context.cache["threads"] = dict(threads)
    return context.cache["threads"]  # type: ignore[no-any-return]


@method("Thread/get", MAIL)
def thread_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    standard.properties(arguments, ("id", "emailIds"), ("id", "emailIds"))
    requested = standard.get_ids(context, arguments) or []
    threads = by_thread(context)
    return {
        "accountId": context.account_id,
        "state": email_state(context.mailboxes()),
        "list": [
            {"id": i, "emailIds": [item.ref.email_id() for item in threads[i]]}
            for i in requested
            if i in threads
        ],
        "notFound": [i for i in requested if i not in threads],
    }


@method("Thread/changes", MAIL)
def thread_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """From Email/changes: a thread with a new Email is updated (created if all its Emails are new).
    A destroyed Email's thread is not known any more (a tombstone keeps no summary): then the
    client must fetch its threads again (cannotCalculateChanges)."""
    since = standard.since_state(arguments)
    delta = email_delta(context, since, standard.max_changes(context, arguments))
    if delta.destroyed:
        raise MethodError("cannotCalculateChanges", "Emails were destroyed since: fetch the threads again")
    new = {ref.email_id() for ref in delta.created}
    created: list[str] = []
    updated: list[str] = []
    for thread_id, items in by_thread(context).items():
        ids = {item.ref.email_id() for item in items}
        if ids & new:
            (created if ids <= new else updated).append(thread_id)
    return {
        "accountId": context.account_id,
        "oldState": delta.old_state,
        "newState": delta.new_state,
        "hasMoreChanges": delta.more,
        "created": sorted(created),
        "updated": sorted(updated),
        "destroyed": [],
    }
