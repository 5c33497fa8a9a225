"""A process's kept change lists (store/change_lists.py) answer exactly what the store does, for
every starting MODSEQ, while the mailbox changes between the pages of a sync; and a sync's later
pages read the index no more."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from mailpipe.store.change_lists import ChangeLists

MESSAGE = b"From: a@remote.test\r\nSubject: listed\r\n\r\nbody line\r\n"


@pytest.fixture
def index_queries(store) -> Iterator[Counter[str]]:
    """The Queries the store makes, by index (none: the table itself)."""
    counted: Counter[str] = Counter()

    def count(params: dict, **_kwargs: object) -> None:
        counted[params.get("IndexName", "table")] += 1

    events = store.table.meta.client.meta.events
    events.register("before-parameter-build.dynamodb.Query", count)
    try:
        yield counted
    finally:
        events.unregister("before-parameter-build.dynamodb.Query", count)


def states(answer) -> list[tuple]:
    return [(s.uid, s.modseq, s.flags, s.expunged) for s in answer]


def assert_agrees(lists: ChangeLists, store, owner: str, since: int) -> None:
    mailbox = store.get_mailbox(owner, "INBOX")
    assert states(lists.changes_since(mailbox, since)) == states(store.changes_since(mailbox, since)), since


def test_kept_lists_answer_what_the_store_answers_as_the_mailbox_changes(store, owner) -> None:
    lists = ChangeLists(store)
    start = store.get_mailbox(owner, "INBOX").highestmodseq
    for _ in range(6):
        store.append(owner, "INBOX", MESSAGE)
    store.update_flags(owner, "INBOX", [2], "add", ["\\Seen"])
    store.expunge(owner, "INBOX", [3])
    middle = store.get_mailbox(owner, "INBOX").highestmodseq
    steps = [
        lambda: None,
        lambda: store.append(owner, "INBOX", MESSAGE),
        lambda: store.update_flags(owner, "INBOX", [1, 4], "add", ["\\Flagged"]),
        lambda: store.expunge(owner, "INBOX", [5, 7]),
        lambda: store.update_flags(owner, "INBOX", [2], "remove", ["\\Seen"]),
    ]
    for step in steps:
        step()
        end = store.get_mailbox(owner, "INBOX").highestmodseq
        # The first page reads the list; the others, at and above it, are answered from it.
        for since in [start, *range(start + 1, end + 1)]:
            assert_agrees(lists, store, owner, since)
    # A page below the kept list's start reads again, and is kept from there.
    assert_agrees(lists, store, owner, start - 1 if start > 0 else 0)
    assert_agrees(lists, store, owner, middle)


def test_the_pages_of_one_sync_read_the_index_once(store, owner, index_queries) -> None:
    lists = ChangeLists(store)
    start = store.get_mailbox(owner, "INBOX").highestmodseq
    for _ in range(8):
        store.append(owner, "INBOX", MESSAGE)
    mailbox = store.get_mailbox(owner, "INBOX")
    pages = [lists.changes_since(mailbox, since) for since in range(start, mailbox.highestmodseq)]
    assert [len(p) for p in pages] == list(range(8, 0, -1))
    assert index_queries["by_modseq"] == 1
    store.append(owner, "INBOX", MESSAGE)  # a change between pages: one Query of it alone
    mailbox = store.get_mailbox(owner, "INBOX")
    assert len(lists.changes_since(mailbox, start + 4)) == 5
    assert len(lists.changes_since(mailbox, start + 5)) == 4
    assert index_queries["by_modseq"] == 2


def test_lists_are_kept_within_their_bound(store, new_user) -> None:
    owners = [new_user(), new_user()]
    lists = ChangeLists(store, max_states=5)
    mailboxes = []
    for owner in owners:
        store.ensure_mailboxes(owner)
        start = store.get_mailbox(owner, "INBOX").highestmodseq
        for _ in range(4):
            store.append(owner, "INBOX", MESSAGE)
        mailboxes.append((store.get_mailbox(owner, "INBOX"), start))
    for mailbox, start in mailboxes:
        assert len(lists.changes_since(mailbox, start)) == 4
    # The second list pushed the first out: 8 states are more than 5.
    assert list(lists._lists) == [mailboxes[1][0].mailbox_id] and lists._kept == 4
