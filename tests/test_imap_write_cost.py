"""What the bench's commands cost in AWS requests once a mailbox is selected (issue 11): a STORE or
an EXPUNGE is its one transaction (the bodies' DeleteObjects follows the answer, in the
background), a FETCH of a body this process APPENDed reads nothing, and SELECT claims \\Recent
only when there is a live message to claim.

Requests are counted on the gateway's own clients (conftest.gateway_requests). The store-level
tests check that a stale picture of the messages, which STORE and EXPUNGE now start from instead
of reading them, is corrected by the MODSEQ condition and never overwrites another process's change.
"""

from __future__ import annotations

import re
import time
from collections import Counter

from conftest import PASSWORD, wait_for
from raw_imap import Client, login

from mailpipe import aws

MESSAGE = b"From: a@remote.test\r\nTo: b@example.test\r\nSubject: cost\r\n\r\nbody line\r\n"


def append(client: Client, message: bytes = MESSAGE) -> int:
    client.send(b"a APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
    done = client.until("a")[-1]
    found = re.search(rb"\[APPENDUID \d+ (\d+)\]", done)
    assert found is not None, done
    return int(found[1])


def body_keys(stack) -> set[str]:
    s3 = aws.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.resources.mail_bucket, Prefix="messages/"
    )
    return {entry["Key"] for page in pages for entry in page.get("Contents", [])}


def quiet(client: Client, counted: Counter[str]) -> None:
    """Until the feed's notices of the user's setup (the default mailboxes created at first login,
    which cost one read of the user's items) have come back: three NOOPs in a row read nothing."""
    deadline = time.monotonic() + 60
    free = 0
    while free < 3:
        counted.clear()
        client.ok("q", b"NOOP")
        free = 0 if counted else free + 1
        assert time.monotonic() < deadline, counted
    counted.clear()


def test_store_and_expunge_cost_their_transaction_alone(stack, new_user, gateway_requests) -> None:
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    client = login(stack.imap_port, new_user(), PASSWORD)
    for _ in range(3):
        append(client)
    client.ok("s", b"SELECT INBOX")
    gateway = stack.imap.context.memory.store
    for n in range(3):
        kept = body_keys(stack)
        uid = append(client, MESSAGE.replace(b"body line", b"round %d" % n))
        quiet(client, gateway_requests)  # the writes below are what is counted
        client.ok("t", b"STORE 1 %sFLAGS (\\Seen)" % (b"-" if n % 2 else b"+"))
        assert gateway_requests == {"dynamodb.TransactWriteItems": 1}, gateway_requests
        gateway_requests.clear()
        client.ok("d", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        assert gateway_requests == {"dynamodb.TransactWriteItems": 1}, gateway_requests
        gateway_requests.clear()
        expunged = client.ok("e", b"UID EXPUNGE %d" % uid)
        assert gateway_requests["dynamodb.TransactWriteItems"] == 1, gateway_requests
        assert expunged[0] == b"* 4 EXPUNGE\r\n", expunged
        # The body goes after the answer, in the background (store/body_deletes.py).
        wait_for(lambda: gateway.body_deletes_waiting == 0, timeout=30)
        assert gateway_requests == {"dynamodb.TransactWriteItems": 1, "s3.DeleteObjects": 1}, gateway_requests
        assert body_keys(stack) == kept, "only the expunged message's body goes"
        flags = client.ok("f", b"FETCH 1 (FLAGS)")[0]
        assert (b"\\Seen" in flags) == (n % 2 == 0), flags
    client.ok("o", b"LOGOUT")
    client.close()


def test_a_body_this_process_appended_is_fetched_without_a_request(stack, new_user, gateway_requests) -> None:
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    client = login(stack.imap_port, new_user(), PASSWORD)
    append(client)
    client.ok("s", b"SELECT INBOX")
    quiet(client, gateway_requests)
    fetched = client.ok("f", b"FETCH 1 BODY.PEEK[]")
    assert gateway_requests == {}, gateway_requests
    assert fetched[0].endswith(b"{%d}\r\n" % len(MESSAGE) + MESSAGE + b")\r\n"), fetched[0]
    client.ok("o", b"LOGOUT")
    client.close()


def recent(lines: list[bytes]) -> int:
    found = re.search(rb"\* (\d+) RECENT", b"".join(lines))
    assert found is not None, lines
    return int(found[1])


def test_select_claims_recent_only_for_live_messages(stack, new_user, gateway_requests) -> None:
    """RFC 3501 2.3.2: a message is recent to the first session that sees it. Messages that came
    and went since the last claim leave nothing to claim: SELECT writes nothing for them."""
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    user = new_user()
    writer = login(stack.imap_port, user, PASSWORD)
    append(writer)
    assert recent(writer.ok("s", b"SELECT INBOX")) == 1  # claims UID 1
    uid = append(writer)
    writer.ok("d", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
    writer.ok("e", b"UID EXPUNGE %d" % uid)

    reader = login(stack.imap_port, user, PASSWORD)
    quiet(reader, gateway_requests)
    assert recent(reader.ok("s", b"SELECT INBOX")) == 0
    assert gateway_requests == {}, gateway_requests
    reader.ok("c", b"CLOSE")

    append(writer)  # UID 3: live, so the next SELECT claims it (and the expunged UID 2 with it)
    quiet(reader, gateway_requests)
    assert recent(reader.ok("s2", b"SELECT INBOX")) == 1
    assert gateway_requests == {"dynamodb.UpdateItem": 1}, gateway_requests
    other = login(stack.imap_port, user, PASSWORD)
    assert recent(other.ok("s", b"SELECT INBOX")) == 0  # the reader has it
    for client in (writer, reader, other):
        client.ok("o", b"LOGOUT")
        client.close()


def test_a_stale_picture_of_a_message_does_not_undo_another_change(stack, store, owner) -> None:
    """STORE from an old copy of a message: its MODSEQ condition fails, the message is reread, and
    the flag another process set meanwhile stays."""
    for _ in range(2):
        store.append(owner, "INBOX", MESSAGE)
    mailbox, messages = store.list_messages(owner, "INBOX")
    seen = {m.uid: m for m in messages}
    stack.mail_store().update_flags(owner, "INBOX", [1], "add", ["\\Flagged"])  # another process
    change = store.update_flags(owner, "INBOX", [1], "add", ["\\Seen"], mailbox=mailbox, seen=seen)
    assert [sorted(m.flags) for m in change.changed] == [["\\Flagged", "\\Seen"]]
    _, now = store.list_messages(owner, "INBOX")
    assert sorted(now[0].flags) == ["\\Flagged", "\\Seen"]
    assert now[0].modseq == change.changed[0].modseq


def test_a_stale_deleted_flag_does_not_expunge(stack, store, owner) -> None:
    """EXPUNGE from an old copy that has \\Deleted, which another process took off meanwhile: the
    message stays."""
    store.append(owner, "INBOX", MESSAGE)
    store.update_flags(owner, "INBOX", [1], "add", ["\\Deleted"])
    mailbox, messages = store.list_messages(owner, "INBOX")
    seen = {m.uid: m for m in messages}
    stack.mail_store().update_flags(owner, "INBOX", [1], "remove", ["\\Deleted"])  # another process
    assert store.expunge(owner, "INBOX", [1], only_deleted=True, mailbox=mailbox, seen=seen) == []
    _, now = store.list_messages(owner, "INBOX")
    assert [m.uid for m in now] == [1]
    assert store.read_body(now[0]) == MESSAGE
