"""Email/query (RFC 8621 4.4): filters and sorts over the index (queryChanges: email_query_changes.py).

Everything but text searches is answered from the index: flags, dates, sizes and the summary, and
header conditions from the header blocks kept in the index (one BatchGetItem per 100 messages).
`text` and `body` read bodies from S3, at most Limits.max_body_search of them (a larger search is
refused with unsupportedFilter rather than left to run for minutes). `limit` is capped at
Limits.max_query_limit; collapseThreads keeps the first Email of each thread.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailpipe.jmap import parsed, standard
from mailpipe.jmap.context import MAIL, Context
from mailpipe.jmap.email_view import thread_of
from mailpipe.jmap.errors import MethodError, invalid_arguments
from mailpipe.jmap.keywords import flag_of, valid
from mailpipe.jmap.messages import Found
from mailpipe.jmap.methods import method
from mailpipe.jmap.sorting import SORT_PROPERTIES
from mailpipe.jmap.state import email_state
from mailpipe.jmap.threads import all_messages, by_thread, thread_ids
from mailpipe.store import Mailbox

CONDITIONS = {
    "inMailbox",
    "inMailboxOtherThan",
    "before",
    "after",
    "minSize",
    "maxSize",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
    "noneInThreadHaveKeyword",
    "hasKeyword",
    "notKeyword",
    "hasAttachment",
    "text",
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "body",
    "header",
}
# What an Email/queryChanges must know about a query: the conditions and sorts that read something
# an Email can change (its keywords; an Email's mailbox, dates, size and content never change: a
# move makes a new Email), the ones that look at the Email's thread, and the body searches.
KEYWORD_CONDITIONS = {
    "hasKeyword",
    "notKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
    "noneInThreadHaveKeyword",
}
THREAD_CONDITIONS = {"allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword"}
KEYWORD_SORTS = {"hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}
THREAD_SORTS = {"allInThreadHaveKeyword", "someInThreadHaveKeyword"}
HEADER_CONDITIONS = {"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "subject": "Subject"}
BODY_CONDITIONS = {"text", "body"}


@dataclass(frozen=True)
class QueryShape:
    keywords: bool  # membership or order can change when an Email's keywords do
    threads: bool  # an Email's place depends on the other Emails of its thread
    bodies: bool  # text or body conditions: reads bodies

    @property
    def calculable(self) -> bool:
        """Whether Email/queryChanges answers for this query (a body search: query again)."""
        return not self.bodies

    @classmethod
    def of(cls, arguments: dict[str, Any]) -> QueryShape:
        names = _condition_names(arguments.get("filter"))
        sort = arguments.get("sort")
        sorts = {c.get("property") for c in sort if isinstance(c, dict)} if isinstance(sort, list) else set()
        return cls(
            keywords=bool(names & KEYWORD_CONDITIONS or sorts & KEYWORD_SORTS),
            threads=bool(
                arguments.get("collapseThreads") or names & THREAD_CONDITIONS or sorts & THREAD_SORTS
            ),
            bodies=bool(names & BODY_CONDITIONS),
        )


def _condition_names(condition: Any) -> set[str]:
    if not isinstance(condition, dict):
        return set()
    if "operator" in condition:
        conditions = condition.get("conditions")
        return (
            set().union(*(_condition_names(c) for c in conditions)) if isinstance(conditions, list) else set()
        )
    return set(condition)


class Candidates:
    """The messages a query looks at, with what conditions need read once for all of them."""

    def __init__(self, context: Context, found: list[Found]) -> None:
        self.context = context
        self.found = found
        self._headers: dict[tuple[str, int], list[tuple[str, str]]] | None = None
        self._texts: dict[tuple[str, int], str] = {}

    def headers(self, item: Found) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = {}
            by_mailbox: dict[str, list[Found]] = defaultdict(list)
            for f in self.found:
                by_mailbox[f.mailbox.mailbox_id].append(f)
            for mailbox_id, items in by_mailbox.items():
                blocks = self.context.store.read_headers(mailbox_id, [i.message for i in items])
                for i in items:
                    self._headers[(mailbox_id, i.message.uid)] = parsed.header_fields(
                        blocks.get(i.message.uid, b"")
                    )
        return self._headers.get((item.mailbox.mailbox_id, item.message.uid), [])

    def header_text(self, item: Found, name: str) -> str:
        return " ".join(
            parsed.as_text(raw) for field, raw in self.headers(item) if field.lower() == name.lower()
        )

    def body_text(self, item: Found) -> str:
        key = (item.mailbox.mailbox_id, item.message.uid)
        if key not in self._texts:
            if len(self._texts) >= self.context.limits.max_body_search:
                raise MethodError("unsupportedFilter", "a text search over this many messages: narrow it")
            root = parsed.structure(parsed.parse_message(self.context.store.read_body(item.message)))
            text, html, _ = parsed.body_lists(root)
            self._texts[key] = " ".join(p.text()[0] for p in text + html)
        return self._texts[key]


def _date(value: Any, name: str) -> int:
    if not isinstance(value, str):
        raise invalid_arguments(f"{name} is a UTCDate")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise invalid_arguments(f"{name} is a UTCDate") from None


def _keyword_flag(value: Any) -> str:
    if not valid(value):
        raise invalid_arguments(f"not a keyword: {value!r}")
    return flag_of(value).lower()


def compile_filter(context: Context, condition: Any) -> Callable[[Candidates, Found], bool]:
    """A predicate for a FilterOperator or FilterCondition, checked before any message is read."""
    if condition is None:
        return lambda candidates, item: True
    if not isinstance(condition, dict):
        raise invalid_arguments("a filter is a map")
    if "operator" in condition:
        operator, conditions = condition.get("operator"), condition.get("conditions")
        if operator not in ("AND", "OR", "NOT") or not isinstance(conditions, list):
            raise invalid_arguments("a FilterOperator has operator AND, OR or NOT and conditions")
        tests = [compile_filter(context, c) for c in conditions]
        if operator == "AND":
            return lambda c, i: all(t(c, i) for t in tests)
        if operator == "OR":
            return lambda c, i: any(t(c, i) for t in tests)
        return lambda c, i: not any(t(c, i) for t in tests)
    unknown = set(condition) - CONDITIONS
    if unknown:
        raise MethodError("unsupportedFilter", f"unknown conditions: {', '.join(sorted(unknown))}")
    tests: list[Callable[[Candidates, Found], bool]] = []
    for name, value in condition.items():
        tests.append(_condition(context, name, value))
    return lambda c, i: all(t(c, i) for t in tests)


def _condition(context: Context, name: str, value: Any) -> Callable[[Candidates, Found], bool]:
    if name == "inMailbox":
        mailbox = context.mailbox_by_jmap_id(value)
        wanted = mailbox.mailbox_id if mailbox else None
        return lambda c, i: i.mailbox.mailbox_id == wanted
    if name == "inMailboxOtherThan":
        if not isinstance(value, list):
            raise invalid_arguments("inMailboxOtherThan is a list of ids")
        excluded = {m.mailbox_id for m in (context.mailbox_by_jmap_id(v) for v in value) if m}
        return lambda c, i: i.mailbox.mailbox_id not in excluded
    if name in ("before", "after"):
        moment = _date(value, name)
        if name == "before":
            return lambda c, i: i.message.internaldate < moment
        return lambda c, i: i.message.internaldate >= moment
    if name in ("minSize", "maxSize"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid_arguments(f"{name} is an unsigned integer")
        if name == "minSize":
            return lambda c, i: i.message.size >= value
        return lambda c, i: i.message.size < value
    if name in ("hasKeyword", "notKeyword"):
        flag = _keyword_flag(value)
        if name == "hasKeyword":
            return lambda c, i: _has(i, flag)
        return lambda c, i: not _has(i, flag)
    if name in ("allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword"):
        flag = _keyword_flag(value)
        if name == "allInThreadHaveKeyword":
            return lambda c, i: all(_has(t, flag) for t in _thread(context, i))
        if name == "someInThreadHaveKeyword":
            return lambda c, i: any(_has(t, flag) for t in _thread(context, i))
        return lambda c, i: not any(_has(t, flag) for t in _thread(context, i))
    if name == "hasAttachment":
        if not isinstance(value, bool):
            raise invalid_arguments("hasAttachment is a boolean")
        return lambda c, i: _has_attachment(c, i) == value
    if not isinstance(value, (str, list)):
        raise invalid_arguments(f"{name} is a string")
    if name in HEADER_CONDITIONS:
        header, needle = HEADER_CONDITIONS[name], str(value).lower()
        return lambda c, i: needle in c.header_text(i, header).lower()
    if name == "header":
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise invalid_arguments("header is [name] or [name, value]")
        field, needle = value[0], (value[1].lower() if len(value) == 2 else None)
        if needle is None:
            return lambda c, i: any(f.lower() == field.lower() for f, _ in c.headers(i))
        return lambda c, i: needle in c.header_text(i, field).lower()
    needle = str(value).lower()
    if name == "body":
        return lambda c, i: needle in c.body_text(i).lower()
    # text: any address header, the subject or the body.
    return lambda c, i: (
        any(needle in c.header_text(i, h).lower() for h in HEADER_CONDITIONS.values())
        or (needle in c.body_text(i).lower())
    )


def _has(item: Found, flag: str) -> bool:
    return flag in {f.lower() for f in item.message.flags}


def _thread(context: Context, item: Found) -> list[Found]:
    return by_thread(context).get(thread_of(item.ref, item.message), [item])


def _has_attachment(candidates: Candidates, item: Found) -> bool:
    known = parsed.summary_has_attachment(item.message.summary)
    if known is not None:
        return known
    raw = candidates.context.store.read_body(item.message)
    return parsed.has_attachment(parsed.body_lists(parsed.structure(parsed.parse_message(raw)))[2])


def _sort_key(name: str, comparator: dict[str, Any]) -> Callable[[Candidates, Found], Any]:
    if name == "receivedAt":
        return lambda c, i: i.message.internaldate
    if name == "size":
        return lambda c, i: i.message.size
    if name in ("from", "to"):
        header = HEADER_CONDITIONS[name]
        return lambda c, i: _first_address(c.headers(i), header)
    if name == "subject":
        return lambda c, i: _base_subject(c.header_text(i, "Subject"))
    if name == "sentAt":
        return lambda c, i: parsed.header_form(c.headers(i), "Date", "asDate", False) or ""
    flag = _keyword_flag(comparator.get("keyword"))
    if name == "allInThreadHaveKeyword":
        return lambda c, i: all(_has(t, flag) for t in _thread(c.context, i))
    if name == "someInThreadHaveKeyword":
        return lambda c, i: any(_has(t, flag) for t in _thread(c.context, i))
    return lambda c, i: _has(i, flag)


def _first_address(fields: list[tuple[str, str]], header: str) -> str:
    raw = next((r for f, r in fields if f.lower() == header.lower()), "")
    addresses = parsed.as_addresses(raw) if raw else []
    if not addresses:
        return ""
    return (addresses[0]["name"] or addresses[0]["email"]).lower()


def _base_subject(subject: str) -> str:
    text = subject.strip().lower()
    while True:
        for prefix in ("re:", "fwd:", "fw:"):
            if text.startswith(prefix):
                text = text[len(prefix) :].strip()
                break
        else:
            return text


def scope(context: Context, condition: Any) -> list[Mailbox]:
    """The mailboxes the filter can match in: a filter that requires inMailbox (the webmail's list
    of a mailbox) looks at that mailbox only (none if it is not the owner's), others at all."""
    conditions = [condition] if isinstance(condition, dict) else []
    if (
        conditions
        and conditions[0].get("operator") == "AND"
        and isinstance(conditions[0].get("conditions"), list)
    ):
        conditions = [c for c in conditions[0]["conditions"] if isinstance(c, dict)]
    for item in conditions:
        if "inMailbox" in item and "operator" not in item:
            mailbox = context.mailbox_by_jmap_id(item["inMailbox"])
            return [] if mailbox is None else [mailbox]
    return context.mailboxes()


def _in_scope(context: Context, condition: Any) -> list[Found]:
    """The messages the filter can match, as of the mailboxes read for the query state: one a
    snapshot lists beyond that UIDNEXT would come again as created in Email/queryChanges."""
    mailboxes = scope(context, condition)
    wanted = {m.mailbox_id: m.uidnext for m in mailboxes}
    if len(mailboxes) == len(context.mailboxes()) or "all" in context.cache:
        found = [f for f in all_messages(context) if f.mailbox.mailbox_id in wanted]
    else:
        found = [Found(m, message) for m in mailboxes for message in context.messages(m)]
    return [f for f in found if f.message.uid < wanted[f.mailbox.mailbox_id]]


def run_query(context: Context, arguments: dict[str, Any]) -> list[str]:
    test = compile_filter(context, arguments.get("filter"))
    sort = arguments.get("sort") or [{"property": "receivedAt", "isAscending": False}]
    if not isinstance(sort, list) or not all(isinstance(s, dict) for s in sort):
        raise invalid_arguments("sort is a list of comparators")
    keys = []
    for comparator in sort:
        name = comparator.get("property")
        if name not in SORT_PROPERTIES:
            raise MethodError("unsupportedSort", f"cannot sort by {name!r}")
        keys.append((_sort_key(name, comparator), comparator.get("isAscending", True) is not False))
    memo, memo_key = _memo(context, arguments)
    if memo is not None and memo_key in memo:
        return list(memo[memo_key])
    found = _in_scope(context, arguments.get("filter"))
    candidates = Candidates(context, found)
    matching = [item for item in found if test(candidates, item)]
    # Ties: the newest first, then by id, so paging is stable.
    matching.sort(key=lambda i: (i.mailbox.mailbox_id, i.message.uid))
    matching.sort(key=lambda i: i.message.internaldate, reverse=True)
    for key, ascending in reversed(keys):
        matching.sort(key=lambda i, k=key: k(candidates, i), reverse=not ascending)
    ids = []
    if not arguments.get("collapseThreads"):
        # Only the ids: a whole Email's metadata would unpack every message's summary.
        ids = [item.ref.email_id() for item in matching]
    else:
        threads: set[str] = set()
        by_mailbox = {m.mailbox_id: thread_ids(context, m) for m in scope(context, arguments.get("filter"))}
        for item in matching:
            thread = by_mailbox[item.mailbox.mailbox_id][item.message.uid]
            if thread not in threads:
                threads.add(thread)
                ids.append(item.ref.email_id())
    if memo is not None:
        while len(memo) >= MEMO_QUERIES:
            memo.pop(next(iter(memo)), None)  # the oldest first
        memo[memo_key] = tuple(ids)
    return ids


# Results kept per version of a mailbox's messages (a webmail asks few: the list, unread, flagged).
MEMO_QUERIES = 4


def _memo(context: Context, arguments: dict[str, Any]) -> tuple[dict[Any, Any] | None, str]:
    """Where this query's result is kept, and under what, if it depends on nothing but the
    messages of one mailbox as listed (context.memo): then the next request for the same
    version of them sorts nothing. Not for conditions and sorts on other Emails of the thread
    (in other mailboxes), body searches (bounded reads, kept apart), or "#creationId" mailboxes
    (another request's are others)."""
    condition = arguments.get("filter")
    shape = QueryShape.of(arguments)
    names = _condition_names(condition)
    sort = arguments.get("sort") or []
    sorts = {c.get("property") for c in sort if isinstance(c, dict)}
    key = json.dumps([condition, sort, bool(arguments.get("collapseThreads"))], sort_keys=True)
    if shape.bodies or names & THREAD_CONDITIONS or sorts & THREAD_SORTS or '"#' in key:
        return None, ""
    mailboxes = scope(context, condition)
    if len(mailboxes) != 1:
        return None, ""
    # Messages a snapshot lists beyond the UIDNEXT read for this request are left out (_in_scope).
    memo = context.memo(mailboxes[0])
    queries = None if memo is None else memo.setdefault("Email/query", {})
    return queries, f"{mailboxes[0].uidnext} {key}"


@method("Email/query", MAIL)
def email_query(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    state = email_state(context.mailboxes())
    ids = run_query(context, arguments)
    return {
        "accountId": context.account_id,
        "queryState": state,
        "canCalculateChanges": QueryShape.of(arguments).calculable,
        "collapseThreads": bool(arguments.get("collapseThreads")),
        **standard.window(context, arguments, ids),
    }
