"""What a webmail's requests cost the store on a warm function (issue 12): a list view reads no
message item again however large the mailbox, and the pages of a first sync read the changes
index once. Counted on the JMAP function's own store clients (botocore events), in items read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import PASSWORD
from jmap_support import Raw

from mailpipe import services
from mailpipe.jmap.ids import mailbox_jmap_id
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack

LIST_PROPERTIES = ["from", "subject", "receivedAt", "keywords", "size", "preview", "threadId"]


def message(n: int) -> bytes:
    return (
        f"From: Sender {n} <sender{n}@remote.test>\r\nSubject: number {n}\r\n"
        f"Message-ID: <{n}@remote.test>\r\n\r\nbody {n}\r\n"
    ).encode()


@pytest.fixture
def items_read() -> Iterator[Counter[str]]:
    """Items the JMAP function's store read, by operation (and Query by index)."""
    counted: Counter[str] = Counter()

    def count(event_name: str, parsed: dict[str, Any], model: Any, **_kwargs: object) -> None:
        operation = model.name
        if operation == "Query":
            counted[f"Query {_last_index[0] or 'table'}"] += int(parsed.get("Count", 0))
        elif operation == "BatchGetItem":
            counted[operation] += sum(len(items) for items in parsed.get("Responses", {}).values())
        elif operation == "GetItem":
            counted[operation] += 1 if "Item" in parsed else 0

    _last_index: list[str | None] = [None]

    def index(params: dict[str, Any], **_kwargs: object) -> None:
        _last_index[0] = params.get("IndexName")

    store = services.mail_store()
    clients = {id(c): c for c in (store.table.meta.client, store._client)}
    for client in clients.values():
        client.meta.events.register("before-parameter-build.dynamodb.Query", index)
        client.meta.events.register("after-call.dynamodb", count)
    try:
        yield counted
    finally:
        for client in clients.values():
            client.meta.events.unregister("before-parameter-build.dynamodb.Query", index)
            client.meta.events.unregister("after-call.dynamodb", count)


def fill(stack: DevStack, user: str, count: int, start: int = 0) -> None:
    store = stack.mail_store()
    for n in range(start, start + count):
        store.append_message(user, "INBOX", message(n), internaldate=1_790_000_000 + n)


def list_view(raw: Raw, inbox: str, collapse: bool = False) -> list[dict[str, Any]]:
    query = {
        "accountId": raw.account,
        "filter": {"inMailbox": inbox},
        "sort": [{"property": "receivedAt", "isAscending": False}],
        "collapseThreads": collapse,
        "limit": 10,
    }
    reference = {"resultOf": "q", "name": "Email/query", "path": "/ids"}
    responses = raw.call(
        ["Email/query", query, "q"],
        ["Email/get", {"accountId": raw.account, "#ids": reference, "properties": LIST_PROPERTIES}, "g"],
    )
    return responses[1][1]["list"]  # type: ignore[no-any-return]


def cost(items_read: Counter[str], request: Callable[[], object]) -> Counter[str]:
    before = Counter(items_read)
    request()
    return Counter({k: v for k, v in (items_read - before).items() if v})


def test_a_warm_list_view_reads_no_message_items(
    stack: DevStack, jmap_server: LocalHttpApi, new_user: Callable[..., str], items_read: Counter[str]
) -> None:
    user = new_user()
    stack.mail_store().ensure_mailboxes(user)
    fill(stack, user, 30)
    raw = Raw(jmap_server.url, user, PASSWORD)
    inbox = mailbox_jmap_id(stack.mail_store().require_mailbox(user, "INBOX").mailbox_id)
    first = list_view(raw, inbox)
    assert [e["subject"] for e in first] == [f"number {n}" for n in range(29, 19, -1)]
    warm = cost(items_read, lambda: list_view(raw, inbox))
    # The mailboxes (and subscriptions) are read; no message item, whatever the mailbox holds.
    assert set(warm) == {"Query table"} and warm["Query table"] < 30, warm
    fill(stack, user, 30, start=30)
    brought_forward = cost(items_read, lambda: list_view(raw, inbox))
    # What changed since is read (the changes index, the new items), not the whole mailbox.
    assert brought_forward["Query by_modseq"] == 30, brought_forward
    new_items = brought_forward["Query table"] + brought_forward["BatchGetItem"] - warm["Query table"]
    assert new_items == 30, brought_forward
    again = cost(items_read, lambda: list_view(raw, inbox, collapse=True))
    assert again == warm, again
    assert [e["subject"] for e in list_view(raw, inbox)] == [f"number {n}" for n in range(59, 49, -1)]


def test_a_paged_first_sync_reads_the_changes_index_once(
    stack: DevStack, jmap_server: LocalHttpApi, new_user: Callable[..., str], items_read: Counter[str]
) -> None:
    user = new_user()
    stack.mail_store().ensure_mailboxes(user)
    raw = Raw(jmap_server.url, user, PASSWORD)
    empty = raw.one("Email/get", {"ids": []})["state"]
    fill(stack, user, 12)

    def sync() -> list[str]:
        state, created = empty, []
        while True:
            changes = raw.one("Email/changes", {"sinceState": state, "maxChanges": 5})
            created += changes["created"]
            state = changes["newState"]
            if not changes["hasMoreChanges"]:
                return created

    spent = cost(items_read, lambda: sync())
    assert spent["Query by_modseq"] == 12, spent  # three pages, one read of the 12 changes
    created = sync()
    assert len(created) == 12 and sorted(created) == sorted(raw.one("Email/query", {})["ids"])


def test_a_kept_query_result_follows_every_change(
    stack: DevStack, jmap_server: LocalHttpApi, new_user: Callable[..., str]
) -> None:
    user = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(user)
    fill(stack, user, 6)
    raw = Raw(jmap_server.url, user, PASSWORD)
    mailbox_id = store.require_mailbox(user, "INBOX").mailbox_id

    query = {
        "filter": {"inMailbox": mailbox_jmap_id(mailbox_id), "hasKeyword": "$flagged"},
        "sort": [{"property": "receivedAt", "isAscending": True}],
    }

    def flagged() -> list[str]:
        return raw.one("Email/query", query)["ids"]  # type: ignore[no-any-return]

    assert flagged() == flagged() == []
    store.update_flags(user, "INBOX", [3, 5], "add", ["\\Flagged"])
    assert flagged() == [f"E{mailbox_id}-3", f"E{mailbox_id}-5"]
    store.expunge(user, "INBOX", [3])
    fill(stack, user, 1, start=6)
    store.update_flags(user, "INBOX", [7], "add", ["\\Flagged"])
    assert flagged() == flagged() == [f"E{mailbox_id}-5", f"E{mailbox_id}-7"]
    # Another user naming this mailbox finds nothing: the kept result is reached through the owner's.
    other = Raw(jmap_server.url, new_user(), PASSWORD)
    assert other.one("Email/query", query)["ids"] == []
