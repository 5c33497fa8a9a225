"""SEARCH, SORT and THREAD answer from one view: the session's, as its client knows the mailbox.

That is: \\Recent as this session shows it (it claimed the messages), message numbers as the
client was told them (an expunge by another session is not announced during SEARCH, SORT or
THREAD by number, so it must not shift numbers either, and a message known to be expunged no
longer matches), and no number the client has not been told of by EXISTS.
"""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD
from raw_imap import Client, login

SUBJECTS = ["b", "a", "d", "c"]  # numbers 1-4; by subject: 2 1 4 3


@pytest.fixture
def owner(stack, new_user) -> str:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for n, subject in enumerate(SUBJECTS):
        store.append(
            owner, "INBOX", f"Subject: {subject}\r\nMessage-ID: <{n}@x.test>\r\n\r\nbody\r\n".encode()
        )
    return owner


def numbers(lines: list[bytes], name: bytes) -> list[int]:
    """The numbers of the untagged SEARCH, SORT or THREAD response, in order."""
    (line,) = [line for line in lines if line.startswith(b"* " + name)]
    return [int(n) for n in re.findall(rb"\d+", line[len(name) + 2 :])]


def answers(client: Client, criteria: bytes) -> dict[str, list[int]]:
    return {
        "SEARCH": numbers(client.ok("q", b"SEARCH " + criteria), b"SEARCH"),
        "SORT": numbers(client.ok("o", b"SORT (SUBJECT) US-ASCII " + criteria), b"SORT"),
        "THREAD": sorted(numbers(client.ok("t", b"THREAD ORDEREDSUBJECT US-ASCII " + criteria), b"THREAD")),
    }


def test_search_sort_and_thread_answer_from_the_sessions_view(stack, owner) -> None:
    reader = login(stack.imap_port, owner, PASSWORD)  # IMAP4rev1: the first to select claims \Recent
    assert b"* 4 RECENT\r\n" in reader.ok("s", b"SELECT INBOX")
    assert answers(reader, b"RECENT") == {
        "SEARCH": [1, 2, 3, 4],
        "SORT": [2, 1, 4, 3],
        "THREAD": [1, 2, 3, 4],
    }
    assert answers(reader, b"NOT RECENT") == {"SEARCH": [], "SORT": [], "THREAD": []}

    writer = login(stack.imap_port, owner, PASSWORD)
    writer.ok("s", b"SELECT INBOX")
    writer.ok("d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b"* 2 EXPUNGE\r\n" in writer.ok("x", b"EXPUNGE")  # "a" is gone
    message = b"Subject: e\r\nMessage-ID: <e@x.test>\r\n\r\nbody\r\n"
    writer.send(b"ap APPEND INBOX {%d}\r\n" % len(message))
    writer.continuation()
    writer.send(message + b"\r\n")
    assert writer.until("ap")[-1].startswith(b"ap OK")

    # Before any NOOP: SORT by number announces no EXPUNGE, so the numbers stay as the client
    # knows them ("c" is still 4), and the new message is not among them until its EXISTS.
    lines = reader.ok("o", b"SORT (SUBJECT) US-ASCII ALL")
    assert not any(b"EXPUNGE" in line for line in lines), lines
    first = numbers(lines, b"SORT")
    assert 5 not in first and [n for n in first if n != 2] == [1, 4, 3]
    if b"* 5 EXISTS\r\n" not in lines:
        reader.ok("f", b"FETCH 1 (FLAGS)")  # no EXPUNGE during FETCH either; EXISTS may come
    # Now 2 is known expunged (not announced): it matches nothing; 5 was announced.
    everything = answers(reader, b"ALL")
    assert everything == {"SEARCH": [1, 3, 4, 5], "SORT": [1, 4, 3, 5], "THREAD": [1, 3, 4, 5]}
    recent = answers(reader, b"RECENT")
    assert recent["SEARCH"][:3] == [1, 3, 4]
    assert sorted(recent["SORT"]) == recent["THREAD"] == recent["SEARCH"]
    lines = reader.command("f", b"FETCH 1:* (UID)")  # answered NO [EXPUNGEISSUED] (RFC 9051 7.5.1)
    assert not any(b"EXPUNGE " in line for line in lines) and b"* 4 FETCH (UID 4)\r\n" in lines

    lines = reader.ok("n", b"NOOP")
    assert b"* 2 EXPUNGE\r\n" in lines
    assert answers(reader, b"ALL") == {"SEARCH": [1, 2, 3, 4], "SORT": [1, 3, 2, 4], "THREAD": [1, 2, 3, 4]}
    for client in (reader, writer):
        client.ok("z", b"LOGOUT")
        client.close()
