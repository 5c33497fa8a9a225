"""Email/queryChanges and Mailbox/queryChanges (RFC 8620 5.6) over real HTTP, raw and with jmapc,
with IMAP making some of the changes: every answer, applied to the old results the way a client
applies it, must give what a fresh query gives."""

from __future__ import annotations

import imaplib
from typing import Any

import pytest
from conftest import PASSWORD
from jmap_support import LoopbackClient, Raw
from jmapc.methods import EmailQuery, EmailQueryChanges
from jmapc.models import EmailQueryFilterCondition

from mailpipe.services import prune
from mailpipe_tools.local.jmap_http import LocalHttpApi

NEWEST_FIRST = [{"property": "receivedAt", "isAscending": False}]


@pytest.fixture
def raw(jmap_server: LocalHttpApi, user: str) -> Raw:
    return Raw(jmap_server.url, user, PASSWORD)


def message(subject: str, reply_to: str | None = None) -> bytes:
    lines = [
        "From: Alice <alice@remote.test>",
        "To: someone@example.test",
        f"Subject: {subject}",
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>",
    ]
    if reply_to:
        lines.append(f"In-Reply-To: <{reply_to.replace(' ', '.')}@remote.test>")
    return ("\r\n".join(lines) + f"\r\n\r\nbody of {subject}\r\n").encode()


def append(imap: imaplib.IMAP4, subject: str, day: int, reply_to: str | None = None, flags: str = "") -> None:
    when = f'"{day + 10:02d}-Nov-2026 10:00:00 +0000"'
    status, _ = imap.append("INBOX", flags, when, message(subject, reply_to))
    assert status == "OK"


def inbox(raw: Raw) -> str:
    (found,) = raw.one("Mailbox/query", {"filter": {"role": "inbox"}})["ids"]
    return found


def query(raw: Raw, arguments: dict[str, Any]) -> tuple[list[str], str]:
    result = raw.one("Email/query", {"sort": NEWEST_FIRST, **arguments})
    return result["ids"], result["queryState"]


def error(raw: Raw, name: str, arguments: dict[str, Any]) -> str:
    """The method error's type, for a call expected to fail."""
    ((response, result, _),) = raw.call([name, {"accountId": raw.account, **arguments}, "c"])
    assert response == "error", result
    return str(result["type"])


def apply(old: list[str], changes: dict[str, Any]) -> list[str]:
    """What a client does with a queryChanges answer (RFC 8620 5.6)."""
    ids = [i for i in old if i not in set(changes["removed"])]
    for added in sorted(changes["added"], key=lambda a: a["index"]):
        ids.insert(added["index"], added["id"])
    return ids


def changes_hold(raw: Raw, arguments: dict[str, Any], old: list[str], state: str) -> dict[str, Any]:
    """queryChanges since `state`, checked against a fresh query: the new results, and the state."""
    changes = raw.one(
        "Email/queryChanges",
        {"sort": NEWEST_FIRST, "sinceQueryState": state, "calculateTotal": True, **arguments},
    )
    assert "type" not in changes, changes
    new, new_state = query(raw, arguments)
    assert apply(old, changes) == new
    assert (changes["oldQueryState"], changes["newQueryState"], changes["total"]) == (
        state,
        new_state,
        len(new),
    )
    return changes


def test_adds_deletes_and_flags_in_a_mailbox(raw: Raw, imap: imaplib.IMAP4) -> None:
    for day, subject in ((3, "three"), (1, "one"), (2, "two")):
        append(imap, subject, day)
    arguments = {"filter": {"inMailbox": inbox(raw)}}
    old, state = query(raw, arguments)
    assert raw.one("Email/query", {**arguments, "sort": NEWEST_FIRST})["canCalculateChanges"] is True

    # Nothing changed: the same state, nothing to do.
    same = changes_hold(raw, arguments, old, state)
    assert (same["removed"], same["added"], same["newQueryState"]) == ([], [], state)

    # New mail lands in its place by receivedAt: the newest on top, an older one further down.
    append(imap, "four", 4)
    append(imap, "half", 1)
    changes = changes_hold(raw, arguments, old, state)
    new, state2 = query(raw, arguments)
    assert changes["removed"] == []
    assert changes["added"] == [{"id": new[0], "index": 0}, {"id": new[4], "index": 4}]

    # A flag change moves nothing in a query that does not read keywords.
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Seen)")
    flagged = changes_hold(raw, arguments, new, state2)
    assert (flagged["removed"], flagged["added"]) == ([], [])

    # A destroyed Email is removed; since the first state, too.
    raw.one("Email/set", {"destroy": [new[1]]})
    gone = changes_hold(raw, arguments, new, state2)
    assert (gone["removed"], gone["added"]) == ([new[1]], [])
    changes_hold(raw, arguments, old, state)

    # maxChanges below the count: tooManyChanges; upToId leaves out what lands after it.
    latest, state3 = query(raw, arguments)
    append(imap, "five", 5)
    append(imap, "zero", 0)
    assert (
        error(
            raw,
            "Email/queryChanges",
            {**arguments, "sort": NEWEST_FIRST, "sinceQueryState": state3, "maxChanges": 1},
        )
        == "tooManyChanges"
    )
    upto = raw.one(
        "Email/queryChanges",
        {**arguments, "sort": NEWEST_FIRST, "sinceQueryState": state3, "upToId": latest[1]},
    )
    now, _ = query(raw, arguments)
    assert upto["added"] == [{"id": now[0], "index": 0}]  # "zero" lands at the end, past upToId
    assert apply(latest[:2], upto) == now[:3]


def test_a_keyword_filter_follows_flag_changes_both_ways(raw: Raw, imap: imaplib.IMAP4) -> None:
    for day, subject in ((1, "a"), (2, "b"), (3, "c")):
        append(imap, subject, day)
    unread = {
        "filter": {"operator": "AND", "conditions": [{"inMailbox": inbox(raw)}, {"notKeyword": "$seen"}]}
    }
    old, state = query(raw, unread)
    assert len(old) == 3
    raw.one("Email/set", {"update": {old[1]: {"keywords/$seen": True}}})
    read = changes_hold(raw, unread, old, state)
    assert read["removed"] == [old[1]] and read["added"] == []
    after, state2 = query(raw, unread)
    imap.select("INBOX")
    status, _ = imap.uid("STORE", old[1].rsplit("-", 1)[1], "-FLAGS", "(\\Seen)")
    assert status == "OK"
    back = changes_hold(raw, unread, after, state2)
    assert back["added"] == [{"id": old[1], "index": 1}]
    # Over every mailbox (no inMailbox) too, and from the first state.
    everywhere = {"filter": {"notKeyword": "$seen"}}
    changes_hold(raw, everywhere, old, state)


def test_collapsed_threads(raw: Raw, imap: imaplib.IMAP4) -> None:
    append(imap, "topic", 1)
    append(imap, "other", 2)
    collapsed = {"filter": {"inMailbox": inbox(raw)}, "collapseThreads": True}
    old, state = query(raw, collapsed)
    assert len(old) == 2
    # A reply, newest: it stands for the thread now, and the original leaves the results.
    append(imap, "re topic", 3, reply_to="topic")
    changes = changes_hold(raw, collapsed, old, state)
    new, state2 = query(raw, collapsed)
    assert changes["added"] == [{"id": new[0], "index": 0}]
    assert old[1] in changes["removed"]
    assert raw.one("Email/query", {**collapsed, "sort": NEWEST_FIRST})["canCalculateChanges"] is True

    # A destroyed Email's thread is not known (its tombstone keeps no summary).
    raw.one("Email/set", {"destroy": [new[0]]})
    assert (
        error(raw, "Email/queryChanges", {**collapsed, "sort": NEWEST_FIRST, "sinceQueryState": state2})
        == "cannotCalculateChanges"
    )
    # Without collapsing, the same change is known.
    flat = {"filter": {"inMailbox": inbox(raw)}}
    assert "type" not in raw.one(
        "Email/queryChanges", {**flat, "sort": NEWEST_FIRST, "sinceQueryState": state2}
    )


def test_where_it_cannot(raw: Raw, imap: imaplib.IMAP4, user: str) -> None:
    append(imap, "first", 1)
    text = {"filter": {"text": "first"}}
    result = raw.one("Email/query", {**text, "sort": NEWEST_FIRST})
    assert result["canCalculateChanges"] is False
    append(imap, "second", 2)
    assert (
        error(raw, "Email/queryChanges", {**text, "sinceQueryState": result["queryState"]})
        == "cannotCalculateChanges"
    )
    for bad in ("garbage", "m1:"):
        assert error(raw, "Email/queryChanges", {"sinceQueryState": bad}) == "cannotCalculateChanges"
    assert error(raw, "Email/queryChanges", {"sinceQueryState": 5}) == "invalidArguments"

    # A state older than the pruning floor: its tombstones may be gone.
    arguments = {"filter": {"inMailbox": inbox(raw)}}
    _, old_state = query(raw, arguments)
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    prune(user, tombstone_age=0)  # takes the mark
    append(imap, "third", 3)
    prune(user, tombstone_age=0)  # raises the floor to it, above the old state
    assert (
        error(raw, "Email/queryChanges", {**arguments, "sinceQueryState": old_state})
        == "cannotCalculateChanges"
    )


def test_jmapc(jmap_server: LocalHttpApi, user: str, imap: imaplib.IMAP4) -> None:
    client = LoopbackClient(jmap_server.url, user, PASSWORD)
    append(imap, "one", 1)
    first = client.request(EmailQuery(sort=[], filter=EmailQueryFilterCondition(has_keyword="$flagged")))
    append(imap, "two", 2, flags="(\\Flagged)")
    changes = client.request(
        EmailQueryChanges(
            filter=EmailQueryFilterCondition(has_keyword="$flagged"),
            since_query_state=first.query_state,
            calculate_total=True,
        )
    )
    now = client.request(EmailQuery(sort=[], filter=EmailQueryFilterCondition(has_keyword="$flagged")))
    assert first.ids == [] and changes.removed == [] and changes.total == 1
    assert [(a.id, a.index) for a in changes.added] == [(now.ids[0], 0)]


def test_mailbox_query_changes(raw: Raw) -> None:
    arguments = {"filter": {"hasAnyRole": False}, "sort": [{"property": "name"}]}
    first = raw.one("Mailbox/query", arguments)
    assert first["canCalculateChanges"] is True and first["ids"] == []
    created = raw.one("Mailbox/set", {"create": {"b": {"name": "Bravo"}, "a": {"name": "Alpha"}}})["created"]
    a, b = created["a"]["id"], created["b"]["id"]

    def check(since: dict[str, Any]) -> dict[str, Any]:
        changes = raw.one(
            "Mailbox/queryChanges",
            {**arguments, "sinceQueryState": since["queryState"], "calculateTotal": True},
        )
        now = raw.one("Mailbox/query", arguments)
        assert apply(since["ids"], changes) == now["ids"] and changes["total"] == len(now["ids"])
        assert changes["newQueryState"] == now["queryState"]
        return changes

    assert check(first)["added"] == [{"id": a, "index": 0}, {"id": b, "index": 1}]
    second = raw.one("Mailbox/query", arguments)
    raw.one("Mailbox/set", {"update": {a: {"name": "Charlie"}}})
    renamed = check(second)
    assert renamed["removed"] == [a] and renamed["added"] == [{"id": a, "index": 1}]
    third = raw.one("Mailbox/query", arguments)
    raw.one("Mailbox/set", {"destroy": [b]})
    assert check(third)["removed"] == [b]
    assert check(first)["added"] == [{"id": a, "index": 0}]
    assert (
        error(
            raw,
            "Mailbox/queryChanges",
            {**arguments, "sinceQueryState": first["queryState"], "maxChanges": 0},
        )
        == "invalidArguments"
    )
    raw.one("Mailbox/set", {"create": {"d": {"name": "Delta"}}})
    assert (
        error(
            raw,
            "Mailbox/queryChanges",
            {**arguments, "sinceQueryState": first["queryState"], "maxChanges": 1},
        )
        == "tooManyChanges"
    )
