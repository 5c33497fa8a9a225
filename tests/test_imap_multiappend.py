"""MULTIAPPEND (RFC 3502) over a real socket against the server on the moto-backed store.

Several messages in one APPEND are stored all or none, with one APPENDUID naming every UID; the
command's literals together stay within the per-command bound, so a client cannot make the
server hold more than one maximal APPEND.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest import PASSWORD
from raw_imap import Client, login

from mailpipe import aws


def message(n: int, size: int = 0) -> bytes:
    return b"Subject: multi %d\r\nFrom: a@example.test\r\n\r\nbody %d\r\n%s" % (n, n, b"x" * size)


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


@pytest.fixture
def client(stack, user) -> Iterator[Client]:
    connection = login(stack.imap_port, user, PASSWORD)
    yield connection
    connection.close()


def stored(stack, user: str, mailbox: str = "INBOX") -> list[tuple[int, bytes, tuple[str, ...], int]]:
    store = stack.mail_store()
    _, messages = store.list_messages(user, mailbox)
    return [(m.uid, store.read_body(m), tuple(sorted(m.flags)), m.internaldate) for m in messages]


def blobs(stack, user: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=stack.resources.mail_bucket, Prefix=f"messages/{user}/")
    return [item["Key"] for item in listed.get("Contents", [])]


def appenduid(line: bytes) -> tuple[int, str]:
    found = re.search(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", line)
    assert found, line
    return int(found.group(1)), found.group(2).decode()


def test_three_messages_with_their_own_flags_and_dates(stack, user, client) -> None:
    """Synchronizing literals: the server asks for each message in turn; one APPENDUID for all."""
    first, second, third = message(1), message(2), message(3)
    client.send(b"a APPEND INBOX (\\Seen) {%d}\r\n" % len(first))
    client.continuation()
    client.send(first + b' (\\Flagged $Work) "14-Nov-2023 22:13:20 +0000" {%d}\r\n' % len(second))
    client.continuation()
    client.send(second + b" ~{%d}\r\n" % len(third))
    client.continuation()
    client.send(third + b"\r\n")
    lines = client.until("a")
    assert lines[-1].startswith(b"a OK [APPENDUID "), lines
    uidvalidity, uids = appenduid(lines[-1])
    assert uidvalidity == stack.mail_store().get_mailbox(user, "INBOX").uidvalidity
    assert uids == "1:3"
    found = stored(stack, user)
    assert [(uid, body, flags) for uid, body, flags, _ in found] == [
        (1, first, ("\\Seen",)),
        (2, second, ("$Work", "\\Flagged")),
        (3, third, ()),
    ]
    assert found[1][3] == 1_700_000_000


def test_many_messages_span_transactions_and_the_selected_session_sees_them(stack, user, client) -> None:
    """More than one transaction holds (99 messages): still one command, one UID set, and the
    session that selected the mailbox is told of all of them."""
    client.ok("s", b"SELECT INBOX")
    bodies = [message(n) for n in range(1, 151)]
    command = b"a APPEND INBOX"
    for body in bodies:
        command += b" {%d+}\r\n" % len(body) + body
    client.send(command + b"\r\n")
    lines = client.until("a")
    assert lines[-1].startswith(b"a OK [APPENDUID "), lines
    assert appenduid(lines[-1])[1] == "1:150"
    assert b"* 150 EXISTS\r\n" in lines
    assert [body for _, body, _, _ in stored(stack, user)] == bodies
    # The session's picture is the store's: a FETCH of the last one works without surprises.
    fetched = client.ok("f", b"UID FETCH 150 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: multi 150" in fetched[0]


def test_a_bad_message_among_them_stores_none(stack, user, client) -> None:
    """All or nothing (RFC 3502 6.3.11): an empty third message refuses the whole command, and no
    body is left in S3."""
    first, second = message(1), message(2)
    client.send(
        b"a APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s {0+}\r\n\r\n" % (len(first), first, len(second), second)
    )
    lines = client.until("a")
    assert lines[-1].startswith(b"a NO"), lines
    assert stored(stack, user) == []
    assert blobs(stack, user) == []
    client.ok("b", b"NOOP")


def test_a_missing_mailbox_stores_none(stack, user, client) -> None:
    first, second = message(1), message(2)
    lines = client.command(
        "a", b"APPEND Nowhere {%d+}\r\n%s {%d+}\r\n%s" % (len(first), first, len(second), second)
    )
    assert lines[-1].startswith(b"a NO [TRYCREATE]"), lines
    assert blobs(stack, user) == []


def test_a_malformed_second_message_is_bad_and_stores_none(stack, user, client) -> None:
    first = message(1)
    lines = client.command("a", b"APPEND INBOX {%d+}\r\n%s (\\Seen) nonsense" % (len(first), first))
    assert lines[-1].startswith(b"a BAD"), lines
    assert stored(stack, user) == []


def test_the_messages_together_stay_within_the_per_command_bound(stack, new_user) -> None:
    """Each message fits APPENDLIMIT, but together they go past what one command may hold
    (APPENDLIMIT plus a line): the literal that would cross it is refused before it is sent, and
    nothing is stored."""
    server = stack.build_imap(append_limit=40_000)
    stack.loop.run(server.start())
    owner = new_user()
    try:
        client = login(server.port, owner, PASSWORD)
        bodies = [message(n, 30_000) for n in range(1, 5)]  # 4 x 30 kB > 40 kB + 64 KiB
        client.send(b"a APPEND INBOX {%d}\r\n" % len(bodies[0]))
        for body in bodies[1:]:
            client.continuation()
            client.send(body + b" {%d}\r\n" % len(body))
        lines = client.until("a")
        assert lines == [b"a NO [TOOBIG] Literal larger than 40000 octets\r\n"], lines
        client.ok("b", b"NOOP")
        assert stored(stack, owner) == []
        client.close()
    finally:
        stack.loop.run(server.stop())


def test_capability_is_advertised(client) -> None:
    [caps, _] = client.ok("c", b"CAPABILITY")
    assert b" MULTIAPPEND" in caps
