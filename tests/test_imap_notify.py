"""NOTIFY (RFC 5465) against the dev stack's IMAP server with its change feed: a session is told of
changes to mailboxes it has not selected (STATUS), to its mailbox list (LIST) and to its selected
mailbox (EXISTS, FETCH with the asked attributes), without a command, during IDLE and at its next
command; from memory, so the deliveries cost no AWS request per session.

Waits have a deadline (a client's patience), nothing is timed.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from access_process import AccessProcess
from conftest import PASSWORD, wait_for
from raw_imap import Client, login

MESSAGE = b"From: a@remote.test\r\nSubject: notified %d\r\n\r\nbody\r\n"
EVERYTHING = (
    b"NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge FlagChange))"
    b" (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))"
)


def unasked(client: Client, pattern: bytes, seconds: float = 10.0) -> list[bytes]:
    """Without sending anything: the lines the server sends up to one matching `pattern`."""
    lines: list[bytes] = []
    deadline = time.monotonic() + seconds
    try:
        while not any(re.search(pattern, line) for line in lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {pattern!r} within {seconds} s: {lines}"
            client.sock.settimeout(remaining)
            try:
                lines.append(client.response_line())
            except TimeoutError:
                raise AssertionError(f"no {pattern!r} within {seconds} s: {lines}") from None
    finally:
        client.sock.settimeout(30)
    return lines


def append(client: Client, mailbox: bytes, n: int) -> None:
    message = MESSAGE % n
    client.send(b"ap APPEND %s {%d+}\r\n" % (mailbox, len(message)) + message + b"\r\n")
    assert client.until("ap")[-1].startswith(b"ap OK")


@pytest.fixture
def pair(stack, new_user):
    """A watcher and a writer, two sessions of one new user, the change feed up."""
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    bob = new_user()
    writer = login(stack.imap_port, bob, PASSWORD)
    writer.ok("c", b"CREATE Saved")
    watcher = login(stack.imap_port, bob, PASSWORD)
    yield watcher, writer, bob
    for client in (watcher, writer):
        client.close()


def test_new_mail_elsewhere_is_told_unasked_during_idle_and_at_noop(pair) -> None:
    watcher, writer, _ = pair
    caps = watcher.ok("c", b"CAPABILITY")
    assert b" NOTIFY" in caps[0]
    watcher.ok("n", EVERYTHING)

    append(writer, b"Saved", 1)  # the watcher runs no command: told anyway
    lines = unasked(watcher, rb"^\* STATUS Saved \(")
    assert re.search(rb"MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)", lines[-1]), lines

    watcher.send(b"i IDLE\r\n")
    watcher.continuation()
    append(writer, b"Saved", 2)
    lines = unasked(watcher, rb"^\* STATUS Saved \(")
    assert b"MESSAGES 2 UIDNEXT 3" in lines[-1], lines
    watcher.send(b"DONE\r\n")
    assert watcher.until("i")[-1].startswith(b"i OK")

    # A flag change elsewhere, seen by a client that only sends NOOP: UNSEEN goes down.
    writer.ok("s", b"SELECT Saved")
    writer.ok("f", b"STORE 1 +FLAGS (\\Seen)")
    seen: list[bytes] = []
    deadline = time.monotonic() + 10
    while not any(b"UNSEEN 1)" in line for line in seen):
        assert time.monotonic() < deadline, seen
        seen += watcher.ok("n", b"NOOP")
    assert any(line.startswith(b"* STATUS Saved (MESSAGES 2 ") for line in seen), seen


def test_selected_mailbox_new_messages_come_with_the_fetch_attributes(pair) -> None:
    watcher, writer, _ = pair
    watcher.ok("e", b"ENABLE CONDSTORE")
    watcher.ok("s", b"SELECT INBOX")
    watcher.ok("n", EVERYTHING)
    append(writer, b"INBOX", 7)
    lines = unasked(watcher, rb"^\* 1 FETCH ")
    assert b"* 1 EXISTS\r\n" in lines, lines
    fetch = lines[-1]
    assert b"UID 1" in fetch and b"Subject: notified 7" in fetch, fetch
    assert not any(line.startswith(b"* STATUS INBOX") for line in lines), lines  # selected: no STATUS

    append(writer, b"Saved", 1)  # with CONDSTORE on, STATUS carries HIGHESTMODSEQ
    lines = unasked(watcher, rb"^\* STATUS Saved \(")
    assert re.search(rb"UNSEEN 1 HIGHESTMODSEQ \d+\)", lines[-1]), lines

    watcher.send(b"i IDLE\r\n")  # in IDLE too
    watcher.continuation()
    append(writer, b"INBOX", 8)
    lines = unasked(watcher, rb"^\* 2 FETCH ")
    assert b"Subject: notified 8" in lines[-1], lines
    watcher.send(b"DONE\r\n")
    assert watcher.until("i")[-1].startswith(b"i OK")

    writer.ok("s", b"SELECT INBOX")
    writer.ok("d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    writer.ok("x", b"EXPUNGE")
    unasked(watcher, rb"^\* 1 EXPUNGE\r\n")


def test_mailbox_names_and_subscriptions_are_told_as_list(pair) -> None:
    watcher, writer, _ = pair
    watcher.ok("n", EVERYTHING)
    writer.ok("c", b"CREATE Projects")
    unasked(watcher, rb'^\* LIST \(\\Subscribed\) "/" Projects\r\n')  # CREATE subscribes
    writer.ok("r", b"RENAME Projects Done")
    unasked(watcher, rb'^\* LIST \(\\Subscribed\) "/" Done \("OLDNAME" \(Projects\)\)\r\n')
    writer.ok("u", b"UNSUBSCRIBE Done")  # CREATE subscribed it, RENAME took that along
    lines = unasked(watcher, rb'^\* LIST \([^)]*\) "/" Done\r\n')
    assert b"\\Subscribed" not in lines[-1], lines
    writer.ok("b", b"SUBSCRIBE Done")
    unasked(watcher, rb'^\* LIST \(\\Subscribed\) "/" Done\r\n')
    writer.ok("d", b"DELETE Done")
    unasked(watcher, rb'^\* LIST \(\\NonExistent\) "/" Done\r\n')


def test_notify_none_stops_them(pair, stack) -> None:
    watcher, writer, bob = pair
    control = login(stack.imap_port, bob, PASSWORD)  # still notified: shows the change came
    control.ok("n", EVERYTHING)
    watcher.ok("n", EVERYTHING)
    watcher.ok("x", b"NOTIFY NONE")
    append(writer, b"Saved", 1)
    unasked(control, rb"^\* STATUS Saved \(")
    lines = watcher.ok("p", b"NOOP")
    assert not any(line.startswith(b"* STATUS") for line in lines), lines
    control.close()


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (b"NOTIFY SET (PERSONAL (AnnotationChange))", rb"^t NO \[BADEVENT \(MessageNew MessageExpunge "),
        (b"NOTIFY SET (PERSONAL (MailboxMetadataChange))", rb"^t NO \[BADEVENT "),
        (b"NOTIFY SET (SELECTED (ServerMetadataChange))", rb"^t NO \[BADEVENT "),
        (b"NOTIFY SET (PERSONAL (MessageNew))", rb"^t BAD "),
        (b"NOTIFY SET (PERSONAL (FlagChange))", rb"^t BAD "),
        (b"NOTIFY SET (SELECTED (MailboxName))", rb"^t BAD "),
        (b"NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))", rb"^t BAD "),
        (b"NOTIFY SET (SELECTED (MessageNew (BODY[]) MessageExpunge))", rb"^t BAD "),
        (b"NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)", rb"^t BAD "),
        (b"NOTIFY SET (ELSEWHERE (MessageNew MessageExpunge))", rb"^t BAD "),
        (b"NOTIFY SET (SUBTREE (MessageNew MessageExpunge))", rb"^t BAD "),
        (b"NOTIFY SET", rb"^t BAD "),
        (b"NOTIFY MAYBE", rb"^t BAD "),
        (b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge)", rb"^t BAD "),
        (b"NOTIFY SET (MAILBOXES (" + b" ".join(b"m%d" % n for n in range(257)) + b") NONE)", rb"^t BAD "),
    ],
)
def test_bad_notify_commands(pair, command, answer) -> None:
    watcher, _, _ = pair
    lines = watcher.command("t", command)
    assert re.search(answer, lines[-1]), lines
    assert watcher.ok("p", b"NOOP")  # the session goes on


def test_set_status_sends_the_starting_point(pair) -> None:
    watcher, writer, _ = pair
    append(writer, b"Saved", 1)
    writer.ok("c", b"CREATE Lists/rust")
    lines = watcher.ok("n", b"NOTIFY SET STATUS (SUBTREE Lists (MessageNew MessageExpunge)) (INBOXES NONE)")
    statuses = [line for line in lines if line.startswith(b"* STATUS")]
    assert len(statuses) == 2 and b"Lists/rust" in statuses[1], lines  # Lists and Lists/rust
    append(writer, b"INBOX", 2)  # INBOXES NONE: nothing; SUBTREE Lists: told
    append(writer, b"Lists/rust", 3)
    lines = unasked(watcher, rb"^\* STATUS Lists/rust \(MESSAGES 1 ")
    assert not any(b"STATUS INBOX" in line for line in lines), lines


# -- across processes ---------------------------------------------------------------------------


@pytest.fixture
def processes(stack, tmp_path):
    started = [AccessProcess(dict(stack.environment), tmp_path, name) for name in ("a", "b")]
    for process in started:
        process.start()
        process.wait_for_log("mail memory: kept current by the change feed")
    yield started
    for process in started:
        process.stop()


def test_a_change_in_another_process_reaches_the_notify_session(processes, new_user) -> None:
    first, second = processes
    bob = new_user()
    writer = first.client(bob, PASSWORD)
    writer.ok("c", b"CREATE Saved")
    watcher = second.client(bob, PASSWORD)
    watcher.ok("n", EVERYTHING)
    writer.append("Saved", MESSAGE % 1)
    watcher.idle_until(rb"^\* STATUS Saved \(MESSAGES 1 UIDNEXT 2 ")  # no command: reads only
    writer.ok("r", b"CREATE Elsewhere")
    watcher.idle_until(rb'^\* LIST \(\\Subscribed\) "/" Elsewhere\r\n')
    for client in (writer, watcher):
        client.ok("o", b"LOGOUT")
        client.close()


# -- what it costs ------------------------------------------------------------------------------

STORE_SERVICES = ("dynamodb", "s3")
WATCHERS = 5


def store_requests(stack) -> Counter[str]:
    counts = stack.moto.requests.counts()
    return Counter({k: v for k, v in counts.items() if k.split(":")[0] in STORE_SERVICES})


def test_delivery_costs_no_aws_request_per_session(stack, new_user) -> None:
    """Five NOTIFY sessions told of each new message: after the writer's APPEND has answered, their
    deliveries (STATUS from memory) make no request at all once the feed has caught up."""
    wait_for(lambda: stack.imap.context.memory.trusted, timeout=30)
    bob = new_user()
    writer = login(stack.imap_port, bob, PASSWORD)
    writer.ok("c", b"CREATE Saved")
    watchers = [login(stack.imap_port, bob, PASSWORD) for _ in range(WATCHERS)]
    for watcher in watchers:
        watcher.ok("n", b"NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge FlagChange))")
    count = 0

    def round_cost() -> Counter[str]:
        nonlocal count
        count += 1
        append(writer, b"Saved", count)
        before = store_requests(stack)
        for watcher in watchers:
            unasked(watcher, rb"^\* STATUS Saved \(MESSAGES %d " % count)
        return store_requests(stack) - before

    deadline = time.monotonic() + 60
    free = 0
    while free < 3:  # steady state: the notices of the writes before have come back
        spent = round_cost()
        free = 0 if spent else free + 1
        assert time.monotonic() < deadline, dict(spent)
    for _ in range(3):
        spent = round_cost()
        assert not spent, dict(spent)
    for client in (writer, *watchers):
        client.close()
