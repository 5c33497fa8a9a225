"""Email/queryChanges (RFC 8620 5.6, RFC 8621 4.5) from the store's MODSEQs, as Email/changes.

A query state is the Email state (state.py): where each mailbox was, (UIDNEXT, HIGHESTMODSEQ).
Past results are not kept; they need not be. What changed since, in the mailboxes the filter can
match in, is one Query of the `by_modseq` index each (changes_since), and what an Email can change
is small: its keywords, or its going (a move is a new Email). So the Emails whose place in the
results may have changed are known, and RFC 8620 5.6 lets `removed` name some that were not in the
old results, as long as every one in the new results is `added` again with its index:

- created Emails: `added` where they match now;
- destroyed ones: `removed`;
- updated ones (keywords): only when the filter or sort reads keywords; then `removed`, and
  `added` where they match now;
- with collapseThreads (or a condition on a thread's keywords) every Email of a touched thread,
  since the one that stands for the thread may change.

cannotCalculateChanges where that is not enough: a body search (text, body: the client queries
again rather than the server reading the bodies again), a state older than a mailbox's pruning
floor (its tombstones may be gone, store/pruning.py), a mailbox of the results deleted since, and
Emails destroyed since in a thread-dependent query (a tombstone keeps no summary, so which thread
lost an Email is not known).
"""

from __future__ import annotations

from typing import Any

from mailpipe.jmap import standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.email_changes import mailbox_changes
from mailpipe.jmap.email_query import QueryShape, run_query, scope
from mailpipe.jmap.errors import MethodError, invalid_arguments
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.methods import method
from mailpipe.jmap.state import email_state, parse_email_state, short
from mailpipe.jmap.threads import by_thread


def _cannot(reason: str) -> MethodError:
    return MethodError("cannotCalculateChanges", reason)


def touched_since(
    context: Context, arguments: dict[str, Any], since: str
) -> tuple[set[str], set[str], set[str]]:
    """(created, updated, destroyed) Email ids since `since` in the mailboxes the query looks at."""
    marks = parse_email_state(since)
    if marks is None:
        raise _cannot("not a query state of this server")
    mailboxes = scope(context, arguments.get("filter"))
    current = {short(m.mailbox_id) for m in context.mailboxes()}
    deleted = any(prefix not in current and mark.uidnext > 1 for prefix, mark in marks.items())
    # A query over every mailbox, or of one not there any more (perhaps the deleted one).
    if deleted and len(mailboxes) in (0, len(context.mailboxes())):
        raise _cannot("a mailbox was deleted since that state: its Emails are not known")
    created: set[str] = set()
    updated: set[str] = set()
    destroyed: set[str] = set()
    kinds = {"created": created, "updated": updated, "destroyed": destroyed}
    for mailbox in mailboxes:
        mark = marks.get(short(mailbox.mailbox_id))
        if mark is not None and mark.highestmodseq < mailbox.prunedmodseq:
            raise _cannot("the state is older than what the store keeps of expunged messages")
        for change in mailbox_changes(context, mailbox, mark):
            kinds[change.kind].add(MessageRef(mailbox.mailbox_id, change.uid).email_id())
    return created, updated, destroyed


def _thread_members(context: Context, email_ids: set[str]) -> set[str]:
    """Every Email of the threads of `email_ids` (those still there)."""
    members: set[str] = set(email_ids)
    for items in by_thread(context).values():
        ids = {item.ref.email_id() for item in items}
        if ids & email_ids:
            members |= ids
    return members


def _max_changes(arguments: dict[str, Any]) -> int | None:
    value = arguments.get("maxChanges")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid_arguments("maxChanges must be a positive integer")
    return value


@method("Email/queryChanges", MAIL)
def email_query_changes(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    since = standard.since_state(arguments, "sinceQueryState")
    up_to = arguments.get("upToId")
    if up_to is not None and not isinstance(up_to, str):
        raise invalid_arguments("upToId is an id")
    limit = _max_changes(arguments)
    shape = QueryShape.of(arguments)
    state = email_state(context.mailboxes())
    result: dict[str, Any] = {
        "accountId": context.account_id,
        "oldQueryState": since,
        "newQueryState": state,
        "collapseThreads": bool(arguments.get("collapseThreads")),
        "removed": [],
        "added": [],
    }
    if since == state:  # nothing changed; checks the arguments all the same
        ids = run_query(context, arguments)
        if arguments.get("calculateTotal"):
            result["total"] = len(ids)
        return result
    if not shape.calculable:
        raise _cannot("a text or body search: query again")
    created, updated, destroyed = touched_since(context, arguments, since)
    touched = created | (updated if shape.keywords else set())
    if shape.threads:
        if destroyed:
            raise _cannot("Emails were destroyed since: which threads they left is not known")
        touched = _thread_members(context, touched)
    ids = run_query(context, arguments)
    added = [{"id": i, "index": n} for n, i in enumerate(ids) if i in touched]
    if up_to is not None and not shape.keywords and up_to in ids:
        # RFC 8620 5.6: with a filter and sort on what never changes, the client keeps the results
        # up to upToId only, so what lands after it is left out (the removals all stay).
        last = ids.index(up_to)
        added = [a for a in added if a["index"] <= last]
    removed = sorted((touched - created) | destroyed)
    if limit is not None and len(removed) + len(added) > limit:
        raise MethodError("tooManyChanges", f"more than maxChanges ({limit}) changes")
    result["removed"], result["added"] = removed, added
    if arguments.get("calculateTotal"):
        result["total"] = len(ids)
    return result
