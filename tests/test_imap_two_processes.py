"""Two access gateway processes on one store (two ECS tasks): what a client does through one is seen
by the other's sessions, during IDLE or at their next command; no UID is given twice; and a
QRESYNC client resyncs from its MODSEQ after one of them restarts.

Each process keeps the store in memory (store/memory.py) and learns of the other's writes from
the change feed when the dev stack has one, else by polling the store: the outcome must be the
same. Waits have a deadline of a few seconds, as a client's patience; nothing is timed.
"""

from __future__ import annotations

import re

import pytest
from access_process import AccessProcess
from conftest import PASSWORD


def message(n: int) -> bytes:
    return b"From: a@remote.test\r\nSubject: two processes %d\r\n\r\nbody %d\r\n" % (n, n)


FOLLOWING = "mail memory: kept current by the change feed"


@pytest.fixture(params=["feed", "polling"])
def processes(request, stack, tmp_path):
    """Two processes with the dev stack's change feed, or (as without a changes topic) polling."""
    environment = dict(stack.environment)
    if request.param == "polling":
        environment["MAILPIPE_CHANGES_TOPIC_ARN"] = ""
    started = [AccessProcess(environment, tmp_path, name) for name in ("a", "b")]
    for process in started:
        process.start()
        if request.param == "feed":
            process.wait_for_log(FOLLOWING)
    yield started
    for process in started:
        process.stop()


def test_writes_in_one_process_reach_the_others_sessions(processes, new_user) -> None:
    first, second = processes
    bob = new_user()
    writer = first.client(bob, PASSWORD)
    writer.ok("s", b"SELECT INBOX")
    watcher = second.client(bob, PASSWORD)  # QRESYNC: expunges come as VANISHED
    watcher.ok("e", b"ENABLE QRESYNC")
    watcher.ok("s", b"SELECT INBOX")
    later = second.client(bob, PASSWORD)  # not IDLE: learns at its next command
    later.ok("s", b"SELECT INBOX")

    watcher.send(b"i IDLE\r\n")
    assert watcher.line().startswith(b"+")
    uids = [writer.append("INBOX", message(1)), writer.append("INBOX", message(2))]
    watcher.idle_until(rb"^\* 2 EXISTS")
    later.noop_until(rb"^\* 2 EXISTS")

    writer.ok("f", b"UID STORE %d +FLAGS (\\Flagged)" % uids[0])
    watcher.idle_until(rb"^\* 1 FETCH \(.*FLAGS \(\\Flagged( \\Recent)?\)")
    later.noop_until(rb"^\* 1 FETCH \(.*FLAGS \(\\Flagged( \\Recent)?\)")

    writer.ok("d", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uids[1])
    writer.ok("x", b"EXPUNGE")
    watcher.idle_until(rb"^\* VANISHED %d\r\n" % uids[1])
    later.noop_until(rb"^\* 2 EXPUNGE")
    watcher.send(b"DONE\r\n")
    watcher.until("i")

    # Both processes append, in turns: each UID is given once, and only ever grows.
    for n in range(3, 9):
        client = writer if n % 2 else later
        uids.append(client.append("INBOX", message(n)))
    assert uids == sorted(set(uids)), uids
    fetched = later.ok("u", b"UID FETCH 1:* (UID)")
    listed = [int(u) for u in re.findall(rb"UID (\d+)", b"".join(fetched[:-1]))]
    assert listed == [uid for uid in uids if uid != uids[1]]
    for client in (writer, watcher, later):
        client.ok("o", b"LOGOUT")
        client.close()


def test_qresync_after_a_restart_of_a_process(processes, new_user) -> None:
    first, second = processes
    bob = new_user()
    writer = first.client(bob, PASSWORD)
    uids = [writer.append("INBOX", message(n)) for n in range(1, 5)]
    client = second.client(bob, PASSWORD)
    client.ok("e", b"ENABLE QRESYNC")
    selected = b"".join(client.ok("s", b"SELECT INBOX"))
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", selected).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", selected).group(1))
    client.ok("o", b"LOGOUT")
    client.close()

    second.stop()
    writer.ok("s", b"SELECT INBOX")
    writer.ok("f", b"UID STORE %d +FLAGS (\\Answered)" % uids[0])
    writer.ok("d", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uids[2])
    writer.ok("x", b"EXPUNGE")
    added = writer.append("INBOX", message(5))
    second.start()
    if FOLLOWING in first.logged():
        second.wait_for_log(FOLLOWING)

    client = second.client(bob, PASSWORD)
    client.ok("e", b"ENABLE QRESYNC")
    lines = client.ok("s", b"SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, modseq))
    text = b"".join(lines)
    assert b"* VANISHED (EARLIER) %d\r\n" % uids[2] in text, lines
    changed = {int(uid) for uid in re.findall(rb"FETCH \(.*?UID (\d+)", text)}
    assert changed == {uids[0], added}, lines
    assert re.search(rb"UID %d [^\r]*\\Answered|\\Answered[^\r]*UID %d" % (uids[0], uids[0]), text), lines
    assert b"* 4 EXISTS" in text, lines
    for each in (writer, client):
        each.ok("o", b"LOGOUT")
        each.close()
