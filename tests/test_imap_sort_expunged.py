"""SEARCH, SORT and THREAD over a message another session expunged a moment ago (imap/matching.py).

The searching session has not been told of the expunge yet (no EXPUNGE during SEARCH, SORT or
THREAD: RFC 9051 7.5.1), so the message is still in its view. Where the answer comes from the
message's item it still matches (SEARCH ALL, SORT ARRIVAL); where it needs the message's bytes
and they are gone from S3, it matches nothing. The message here has no complete stored summary
(its envelope is too big to store), so even SUBJECT or FROM need the bytes: SORT and THREAD
answered NO [SERVERBUG] for it, and so did SEARCH FROM.
"""

from __future__ import annotations

import imaplib
import secrets
from collections.abc import Iterator

import pytest
from conftest import PASSWORD

ADDRESSES = 12_000  # random ones: their summary compresses beyond MAX_PACKED_SUMMARY (300 KB)


def too_large_to_summarise() -> bytes:
    """A message whose summary the store cannot keep (model.pack_summary's ``too_large``)."""
    to = ",\r\n ".join(
        f'"{secrets.token_hex(12)}" <{secrets.token_hex(12)}@{secrets.token_hex(6)}.example>'
        for _ in range(ADDRESSES)
    )
    return (
        f"From: big@example.com\r\nTo: {to}\r\nSubject: big\r\n"
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture
def sessions(stack, owner) -> Iterator[tuple[imaplib.IMAP4, imaplib.IMAP4]]:
    """Two sessions of one user with INBOX selected; INBOX holds one ordinary message."""
    stack.mail_store().append(owner, "INBOX", b"From: a@example.com\r\nSubject: one\r\n\r\nx\r\n")
    clients = []
    for _ in range(2):
        client = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=60)
        client.login(owner, PASSWORD)
        assert client.select("INBOX")[0] == "OK"
        clients.append(client)
    yield clients[0], clients[1]
    for client in clients:
        client.logout()


def after_an_expunge_elsewhere(
    stack, owner: str, searcher: imaplib.IMAP4, expunger: imaplib.IMAP4, *command: str
) -> tuple[str, list[bytes]]:
    """`command`'s answer in `searcher` right after `expunger` expunged a too-large message that
    `searcher` still shows as message 2: the tagged status and the untagged data."""
    assert searcher.append("INBOX", None, None, too_large_to_summarise())[0] == "OK"
    searcher.noop()
    expunger.noop()
    mailbox = stack.mail_store().get_mailbox(owner, "INBOX")
    newest = stack.mail_store().messages_in(mailbox)[-1]
    assert "too_large" in newest.summary  # else the store answers from the summary, bytes or not
    assert expunger.uid("STORE", str(newest.uid), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
    assert expunger.uid("EXPUNGE", str(newest.uid))[0] == "OK"
    # EXPUNGE deletes the bytes after its answer, in the background (store/body_deletes.py): until
    # then the message still matches on them. Wait for them to be gone.
    assert stack.imap.context.store.finish_body_deletes()
    searcher.untagged_responses.clear()
    typ, _ = searcher._simple_command(*command)
    data = searcher.untagged_responses.get(command[0], [])
    searcher.untagged_responses.clear()
    assert searcher.noop()[0] == "OK"  # now told: the next round's message is number 2 again
    return typ, data


def test_an_expunged_message_whose_bytes_are_gone_matches_nothing(stack, owner, sessions) -> None:
    searcher, expunger = sessions
    cases = [
        # From the item alone: the message still matches.
        (("SEARCH", "ALL"), [b"1 2"]),
        (("SORT", "(ARRIVAL)", "UTF-8", "ALL"), [b"1 2"]),
        # From its bytes, which are gone: it matches nothing, NOT included.
        (("SEARCH", "FROM", "big"), [b""]),
        (("SEARCH", "NOT", "FROM", "big"), [b"1"]),
        (("SORT", "(SUBJECT)", "UTF-8", "ALL"), [b"1"]),
        (("SORT", "(ARRIVAL FROM)", "UTF-8", "ALL"), [b"1"]),
        (("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL"), [b"(1)"]),
        (("THREAD", "REFERENCES", "UTF-8", "ALL"), [b"(1)"]),
    ]
    answers = {case: after_an_expunge_elsewhere(stack, owner, searcher, expunger, *case) for case, _ in cases}
    assert answers == {case: ("OK", data) for case, data in cases}
