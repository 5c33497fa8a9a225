"""Metadata reads cost no AWS request (issue 11): with the change feed healthy, the access gateway
answers SELECT, STATUS, LIST, FETCH of what the index holds, SEARCH on anything but text, NOOP,
CHECK and IDLE from memory, its own writes included.

The dev stack's moto counts every request it answers (moto_server.RequestCounter); the store's are
the DynamoDB and S3 ones (the feed's long poll is SQS, the relay's reads DynamoDB Streams, both per
process or stack, not per command). "Steady state" is reached when whole rounds of the commands
cost nothing: the notices of the writes before them have come back. Every later round must cost
nothing at all, command by command.
"""

from __future__ import annotations

import time
from collections import Counter

from conftest import PASSWORD, wait_for
from raw_imap import Client, login

from mailpipe.store.mailstore import NewMessage

STORE_SERVICES = ("dynamodb", "s3")
MESSAGE = (
    b"From: Alice <alice@remote.test>\r\nTo: bob@example.test\r\nSubject: counted\r\n"
    b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <counted@remote.test>\r\n"
    b"Content-Type: text/plain\r\n\r\nhello\r\n"
)
METADATA_COMMANDS = [
    b"SELECT INBOX",
    b"EXAMINE INBOX",
    b"SELECT INBOX (CONDSTORE)",
    b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)",
    b"STATUS Archive (MESSAGES UNSEEN)",
    b'LIST "" "*"',
    b'LSUB "" "*"',
    b'LIST "" "*" RETURN (SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN))',
    b"FETCH 1:* (FLAGS UID MODSEQ INTERNALDATE RFC822.SIZE)",
    b"FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
    b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
    b"SEARCH UNSEEN",
    b"UID SEARCH FLAGGED SINCE 1-Jan-2020 LARGER 10",
    b"SEARCH RETURN (MIN MAX COUNT) ALL",
    b"NOOP",
    b"CHECK",
]


def store_requests(stack) -> Counter[str]:
    counts = stack.moto.requests.counts()
    return Counter({k: v for k, v in counts.items() if k.split(":")[0] in STORE_SERVICES})


def costs(stack, client: Client) -> dict[bytes, Counter[str]]:
    """Each metadata command (and an IDLE with its DONE) and the store requests it made."""
    spent: dict[bytes, Counter[str]] = {}
    for n, command in enumerate(METADATA_COMMANDS):
        before = store_requests(stack)
        client.ok(f"m{n}", command)
        spent[command] = store_requests(stack) - before
    before = store_requests(stack)
    client.send(b"i IDLE\r\n")
    client.continuation()
    client.send(b"DONE\r\n")
    assert client.until("i")[-1].startswith(b"i OK")
    spent[b"IDLE"] = store_requests(stack) - before
    return spent


def steady(stack, client: Client) -> None:
    """Until the notices of what came before have all come back: three rounds in a row that cost
    nothing (the feed may deliver a batch late on a loaded machine: one free round is not enough)."""
    deadline = time.monotonic() + 60
    free = 0
    while free < 3:
        spent = costs(stack, client)
        free = 0 if any(spent.values()) else free + 1
        assert time.monotonic() < deadline, {c: dict(n) for c, n in spent.items() if n}


def test_metadata_commands_make_no_aws_request_in_steady_state(stack, new_user) -> None:
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)  # the dev stack's feed is up
    bob = new_user()
    client = login(stack.imap_port, bob, PASSWORD)
    for _ in range(3):
        client.send(b"a APPEND INBOX (\\Flagged) {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
        assert client.until("a")[-1].startswith(b"a OK")
    client.ok("s", b"SELECT INBOX")
    # This process's own writes: read back from memory, no read for their notices either.
    client.ok("w1", b"STORE 1 +FLAGS (\\Seen)")
    client.ok("w2", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    client.ok("w3", b"EXPUNGE")
    client.ok("w4", b"CREATE Projects")
    client.ok("w5", b"UNSUBSCRIBE Projects")

    steady(stack, client)
    # The count is of every request moto serves, so the dev stack's own background work (its
    # scheduled prune run, the functions serving other tests' mail) can land in a command's
    # window now and then: a command that reads the store does so every time, so it is caught
    # by costing in more than one of the rounds.
    rounds = [costs(stack, client) for _ in range(4)]
    costly = Counter(command for spent in rounds for command, cost in spent.items() if cost)
    assert all(times <= 1 for times in costly.values()), [
        {c: dict(n) for c, n in spent.items() if n} for spent in rounds
    ]
    client.ok("o", b"LOGOUT")
    client.close()


def test_an_own_write_is_read_back_without_waiting_for_the_feed(stack, new_user) -> None:
    """Right after its STORE or APPEND, this process's next metadata reads cost nothing: it applied
    what the write returned, it did not wait for (or read because of) the notice."""
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    bob = new_user()
    client = login(stack.imap_port, bob, PASSWORD)
    client.send(b"a APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
    assert client.until("a")[-1].startswith(b"a OK")
    steady(stack, client)
    client.ok("s", b"SELECT INBOX")
    for n in range(5):
        client.ok(f"w{n}", b"STORE 1 %sFLAGS (\\Flagged)" % (b"+" if n % 2 else b"-"))
        before = store_requests(stack)
        status = client.ok(f"t{n}", b"STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
        fetched = client.ok(f"f{n}", b"FETCH 1 (FLAGS)")
        assert store_requests(stack) == before, store_requests(stack) - before
        assert (b"\\Flagged" in fetched[0]) == bool(n % 2), fetched
        assert b"MESSAGES 1" in status[0]
    client.ok("o", b"LOGOUT")
    client.close()


FOLDER_OPEN = (
    b"UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID"
    b" Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])"
)


def test_opening_a_listed_folder_makes_no_aws_request(stack, new_user) -> None:
    """Thunderbird's folder-open fetch of a mailbox filled by another process: the snapshot's
    listing (at EXAMINE) kept every compressed header, so the fetch, over more messages than one
    rendering chunk, reads neither S3 nor DynamoDB (issue 14)."""
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    bob = new_user()
    other = stack.mail_store()  # its own clients: another process's store, as delivery has
    other.ensure_mailboxes(bob)
    count = 600
    messages = [
        NewMessage(MESSAGE.replace(b"Subject: counted", b"Subject: counted %d" % n)) for n in range(count)
    ]
    for start in range(0, count, 100):
        other.append_batch(bob, "INBOX", messages[start : start + 100])
    client = login(stack.imap_port, bob, PASSWORD)
    client.ok("e", b"EXAMINE INBOX")
    # The feed's notices of those appends may still bring the snapshot forward: wait for quiet.
    deadline = time.monotonic() + 60
    free = 0
    while free < 3:
        before = store_requests(stack)
        client.ok("n", b"NOOP")
        free = 0 if store_requests(stack) != before else free + 1
        assert time.monotonic() < deadline
    before = store_requests(stack)
    fetched = client.ok("fo1", FOLDER_OPEN)
    assert store_requests(stack) == before, store_requests(stack) - before
    assert sum(1 for line in fetched if b" FETCH (" in line[:40]) == count
    assert b"Subject: counted 599\r\n" in b"".join(fetched)
    client.ok("o", b"LOGOUT")
    client.close()
