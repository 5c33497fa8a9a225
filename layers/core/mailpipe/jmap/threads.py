"""Thread/get and Thread/changes (RFC 8621 3). Until mime/threading.py (branch imap-sort) stores a
thread id in each summary, every Email is a thread of its own, and its Thread changes with it."""

from __future__ import annotations

from typing import Any

from mailpipe.jmap import standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.email_changes import email_delta
from mailpipe.jmap.messages import locate_ids
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import email_state


@method("Thread/get", MAIL)
def thread_get(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    standard.properties(arguments, ("id", "emailIds"), ("id", "emailIds"))
    requested = standard.get_ids(context, arguments) or []
    found = locate_ids(context, requested, kind="T")
    return {
        "accountId": context.account_id,
        "state": email_state(context.mailboxes()),
        "list": [{"id": i, "emailIds": [found[i].ref.email_id()]} for i in requested if i in found],
        "notFound": [i for i in requested if i not in found],
    }


@method("Thread/changes", MAIL)
def thread_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    since = standard.since_state(arguments)
    delta = email_delta(context, since, standard.max_changes(context, arguments))
    return {
        "accountId": context.account_id,
        "oldState": delta.old_state,
        "newState": delta.new_state,
        "hasMoreChanges": delta.more,
        "created": [r.thread_id() for r in delta.created],
        "updated": [r.thread_id() for r in delta.updated],
        "destroyed": [r.thread_id() for r in delta.destroyed],
    }
