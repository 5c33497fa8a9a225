"""Compliance defects a compliance tester found (issue 11), each against the real IMAP server."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import PASSWORD
from faults import CuttableProxy
from raw_imap import Client, login

from mailpipe import aws
from mailpipe.store import MailStore


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


@pytest.fixture
def client(stack, user):
    session = login(stack.imap_port, user, PASSWORD)
    yield session
    session.close()


# -- names that are atoms but not modified UTF-7 (RFC 9051 6.3.9) ------------------------------


def test_names_not_in_modified_utf7_are_no_not_bad(client: Client) -> None:
    for tag, command in (
        ("a", b"SELECT &AGE-"),
        ("b", b"CREATE &Jjo!-"),
        ("c", b"EXAMINE &U,BTFx-"),
        ("d", b"STATUS &AGE- (MESSAGES)"),
        ("e", b"RENAME Archive &AGE-"),
        ("f", b'DELETE "&2D0-"'),
    ):
        lines = client.command(tag, command)
        assert lines[-1].startswith(f"{tag} NO [".encode()), lines
    listed = client.ok("g", b'LIST "" "*"')
    assert not any(b"&AGE-" in line or b"&Jjo!-" in line for line in listed)
    assert any(line.endswith(b" Archive\r\n") for line in listed)  # RENAME did not happen


def test_list_ignores_a_pattern_not_in_modified_utf7(client: Client) -> None:
    assert client.ok("a", b'LIST "" &AGE-') == [b"a OK LIST completed\r\n"]
    lines = client.ok("b", b'LIST "" (&AGE- INBOX)')
    assert lines[:-1] == [b'* LIST (\\HasNoChildren) "/" INBOX\r\n']
    assert client.ok("c", b"LSUB &Jjo!- *") == [b"c OK LSUB completed\r\n"]


# -- a body that cannot be read is not an expunge ------------------------------------------------

MESSAGE = b"From: ann@example.test\r\nSubject: body test\r\n\r\nthe body\r\n"


@pytest.fixture
def imap_with_cuttable_s3(stack):
    """A second IMAP server on the stack's store whose S3 traffic (bodies) goes through a proxy a
    test can cut: S3 really failing, not a stand-in."""
    proxy = CuttableProxy(stack.moto.port)
    server = stack.build_imap()
    server.context.store = MailStore(
        aws.table(stack.resources.mailbox_table),
        aws.client("s3", proxy.endpoint),
        stack.resources.mail_bucket,
    )
    stack.loop.run(server.start())
    yield server, proxy
    stack.loop.run(server.stop())
    proxy.close()


def test_s3_failing_is_unavailable_not_expungeissued(stack, user, imap_with_cuttable_s3, caplog) -> None:
    server, proxy = imap_with_cuttable_s3
    stack.mail_store().append(user, "INBOX", MESSAGE)
    client = login(server.port, user, PASSWORD)
    try:
        client.ok("s", b"SELECT INBOX")
        proxy.up = False
        with caplog.at_level(logging.WARNING, logger="mailpipe_gateway.imap.message_commands"):
            lines = client.command("f", b"FETCH 1 BODY.PEEK[]")
        assert lines[-1].startswith(b"f NO [UNAVAILABLE]"), lines
        assert any("body unreadable" in r.getMessage() for r in caplog.records)
        proxy.up = True
        lines = client.ok("g", b"FETCH 1 BODY.PEEK[]")
        assert MESSAGE in b"".join(lines)
    finally:
        client.close()


def test_a_body_missing_under_a_live_message_is_serverbug(stack, user, caplog) -> None:
    store = stack.mail_store()
    store.append(user, "INBOX", MESSAGE)
    _, [message] = store.list_messages(user, "INBOX")
    aws.client("s3").delete_object(Bucket=stack.resources.mail_bucket, Key=message.blob_key)
    client = login(stack.imap_port, user, PASSWORD)
    try:
        client.ok("s", b"SELECT INBOX")
        with caplog.at_level(logging.ERROR, logger="mailpipe_gateway.imap.message_commands"):
            lines = client.command("f", b"FETCH 1 BODY.PEEK[]")
        assert lines[-1].startswith(b"f NO [SERVERBUG]"), lines
        assert any("are missing" in r.getMessage() for r in caplog.records)
    finally:
        client.close()


def test_a_real_expunge_is_still_expungeissued(stack, user) -> None:
    store = stack.mail_store()
    store.append(user, "INBOX", MESSAGE)
    client = login(stack.imap_port, user, PASSWORD)
    try:
        client.ok("s", b"SELECT INBOX")
        store.expunge(user, "INBOX", [1])  # another process: this session still shows message 1
        lines = client.command("f", b"FETCH 1 BODY.PEEK[]")
        assert lines[-1].startswith(b"f NO [EXPUNGEISSUED]"), lines
    finally:
        client.close()


# -- UIDVALIDITY: strictly new, also across processes (RFC 9051 2.3.1.1) -------------------------


def test_a_mailbox_made_again_at_once_gets_a_new_uidvalidity(client: Client) -> None:
    def uidvalidity(tag: str) -> int:
        lines = client.ok(tag, b'STATUS "Again" (UIDVALIDITY)')
        return int(re.search(rb"UIDVALIDITY (\d+)", lines[0]).group(1))  # type: ignore[union-attr]

    client.ok("a", b"CREATE Again")
    first = uidvalidity("b")
    client.ok("c", b"DELETE Again")
    client.ok("d", b"CREATE Again")
    second = uidvalidity("e")
    client.ok("f", b"RENAME Again Elsewhere")
    client.ok("g", b"CREATE Again")
    third = uidvalidity("h")
    assert first < second < third


CREATE_MANY = """
import sys
from mailpipe import aws
from mailpipe.store import MailStore
table, bucket, owner, prefix = sys.argv[1:5]
store = MailStore(aws.table(table), aws.client("s3"), bucket)
sys.stdin.readline()  # both processes start creating together
for i in range(20):
    print(store.create_mailbox(owner, f"{prefix}{i}").uidvalidity, flush=True)
"""


def test_processes_creating_mailboxes_at_once_never_share_a_uidvalidity(stack, user) -> None:
    resources = stack.resources
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_MANY, resources.mailbox_table, resources.mail_bucket, user, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **stack.environment},
        )
        for prefix in ("a", "b")
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    values = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        values += [int(line) for line in out.split()]
    assert len(values) == 40 and len(set(values)) == 40
    assert {m.uidvalidity for m in stack.mail_store().list_mailboxes(user)} >= set(values)


# -- CONDSTORE enabling commands (RFC 7162 3.1) -------------------------------------------------


def noop_until(client: Client, pattern: bytes, seconds: float = 10.0) -> list[bytes]:
    """NOOP until a response matches: a write made beside the gateway (the test's own store)
    reaches its memory through the change feed, a moment later."""
    deadline = time.monotonic() + seconds
    seen: list[bytes] = []
    while time.monotonic() < deadline:
        seen += [line for line in client.ok("n", b"NOOP") if line.startswith(b"*")]
        if any(re.search(pattern, line) for line in seen):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} within {seconds} s: {seen}")


def test_fetch_modseq_enables_condstore(stack, user, client: Client) -> None:
    store = stack.mail_store()
    for _ in range(2):
        store.append(user, "INBOX", MESSAGE)
    client.ok("s", b"SELECT INBOX")
    assert b"MODSEQ" not in b"".join(client.ok("a", b"FETCH 1 FLAGS"))
    lines = client.ok("b", b"FETCH 1 (FLAGS MODSEQ)")
    highest = store.get_mailbox(user, "INBOX").highestmodseq
    assert lines[0] == b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % highest, lines
    assert b"MODSEQ (" in lines[1]
    # From now on every FETCH response carries MODSEQ, an unsolicited flag update too.
    assert b"MODSEQ (" in client.ok("c", b"FETCH 2 FLAGS")[0]
    store.update_flags(user, "INBOX", [2], "add", ["\\Flagged"])
    update = noop_until(client, rb"^\* 2 FETCH")
    assert re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)", update[0]), update
    assert not any(b"HIGHESTMODSEQ" in line for line in client.ok("e", b"FETCH 1 (MODSEQ)"))


def test_fetch_changedsince_and_search_modseq_enable_condstore(stack, user) -> None:
    store = stack.mail_store()
    store.append(user, "INBOX", MESSAGE)
    for command in (b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", b"SEARCH MODSEQ 1"):
        client = login(stack.imap_port, user, PASSWORD)
        try:
            client.ok("s", b"SELECT INBOX")
            lines = client.ok("a", command)
            assert lines[0].startswith(b"* OK [HIGHESTMODSEQ "), lines
            assert b"MODSEQ (" in client.ok("b", b"FETCH 1 FLAGS")[0]
        finally:
            client.close()


def test_search_min_max_report_their_own_messages_modseq(stack, user, client: Client) -> None:
    store = stack.mail_store()
    for _ in range(3):
        store.append(user, "INBOX", MESSAGE)
    store.update_flags(user, "INBOX", [3], "add", ["$Late"])
    store.update_flags(user, "INBOX", [2], "add", ["$Later"])
    messages = {m.uid: m.modseq for m in store.list_messages(user, "INBOX")[1]}
    assert messages[1] < messages[3] < messages[2]
    client.ok("s", b"SELECT INBOX (CONDSTORE)")

    def esearch(tag: str, options: bytes) -> bytes:
        lines = client.ok(tag, b"UID SEARCH RETURN (%s) MODSEQ 1" % options)
        return lines[0]

    assert esearch("a", b"MIN").endswith(b"UID MIN 1 MODSEQ %d\r\n" % messages[1])
    assert esearch("b", b"MAX").endswith(b"UID MAX 3 MODSEQ %d\r\n" % messages[3])
    assert esearch("c", b"MIN MAX").endswith(b"MODSEQ %d\r\n" % messages[3])
    assert esearch("d", b"MIN COUNT").endswith(b"COUNT 3 MODSEQ %d\r\n" % messages[2])


# -- subscriptions are names, apart from mailboxes (RFC 9051 6.3.7, RFC 5258) ---------------------


def test_deleting_a_mailbox_keeps_its_subscription(client: Client) -> None:
    client.ok("a", b"CREATE Lists/dev")  # CREATE subscribes (README)
    assert b'* LSUB (\\Subscribed) "/" Lists/dev\r\n' in client.ok("b", b'LSUB "" "*"')
    client.ok("c", b"DELETE Lists/dev")
    subscribed = client.ok("d", b'LIST (SUBSCRIBED) "" "Lists/*"')
    assert subscribed[:-1] == [b'* LIST (\\NonExistent \\Subscribed) "/" Lists/dev\r\n']
    assert client.ok("e", b'LIST "" "Lists/*"') == [b"e OK LIST completed\r\n"]
    assert b'* LSUB (\\Noselect \\Subscribed) "/" Lists/dev\r\n' in client.ok("f", b'LSUB "" "*"')
    client.ok("g", b"UNSUBSCRIBE Lists/dev")
    assert client.ok("h", b'LIST (SUBSCRIBED) "" "Lists/*"') == [b"h OK LIST completed\r\n"]


def test_unsubscribing_a_name_not_subscribed_and_subscribing_a_missing_one_are_ok(client: Client) -> None:
    client.ok("a", b"UNSUBSCRIBE Never/there")
    client.ok("b", b"SUBSCRIBE Later")
    assert (
        client.ok("c", b'LIST (SUBSCRIBED) "" Later')[0]
        == b'* LIST (\\NonExistent \\Subscribed) "/" Later\r\n'
    )
    client.ok("d", b"CREATE Later")
    assert (
        client.ok("e", b'LIST (SUBSCRIBED) "" Later')[0]
        == b'* LIST (\\HasNoChildren \\Subscribed) "/" Later\r\n'
    )


def test_lsub_shows_an_unsubscribed_superior_as_noselect(client: Client) -> None:
    client.ok("a", b"CREATE Team/inbox")
    client.ok("b", b"UNSUBSCRIBE Team")
    assert b'* LSUB (\\Noselect) "/" Team\r\n' in client.ok("c", b'LSUB "" "%"')
    star = client.ok("d", b'LSUB "" "Team*"')
    assert star[:-1] == [b'* LSUB (\\Subscribed) "/" Team/inbox\r\n']


def test_recursivematch_gives_childinfo(client: Client) -> None:
    client.ok("a", b"CREATE Fruit/Peach")
    client.ok("b", b"UNSUBSCRIBE Fruit")
    client.ok("c", b"SUBSCRIBE Tofu/Firm")  # no such mailbox, nor its superior
    lines = client.ok("d", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'* LIST (\\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))\r\n' in lines
    assert b'* LIST (\\NonExistent) "/" Tofu ("CHILDINFO" ("SUBSCRIBED"))\r\n' in lines
    assert not any(b"Peach" in line or b"Firm" in line for line in lines)
    plain = client.ok("e", b'LIST (SUBSCRIBED) "" "%"')
    assert not any(b"Fruit" in line or b"CHILDINFO" in line for line in plain)
    for tag, options in (
        ("f", b"RECURSIVEMATCH"),
        ("g", b"RECURSIVEMATCH REMOTE"),
        ("h", b"REMOTE RECURSIVEMATCH"),
    ):
        assert client.command(tag, b'LIST (%s) "" "%%"' % options)[-1].startswith(f"{tag} BAD".encode())


# -- a new keyword is announced (FLAGS, PERMANENTFLAGS) before a FETCH uses it -------------------


def test_a_new_keyword_is_announced_before_the_fetch_that_uses_it(stack, user) -> None:
    stack.mail_store().append(user, "INBOX", MESSAGE, flags=["$Old"])
    storer, watcher, reader = (login(stack.imap_port, user, PASSWORD) for _ in range(3))
    try:
        for client, command in (
            (storer, b"SELECT INBOX"),
            (watcher, b"SELECT INBOX"),
            (reader, b"EXAMINE INBOX"),
        ):
            assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Old)\r\n" in client.ok(
                "s", command
            )
        lines = storer.ok("a", b"STORE 1 +FLAGS ($Important)")
        flags = b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important $Old)"
        assert lines[:3] == [
            b"* FLAGS " + flags + b"\r\n",
            b"* OK [PERMANENTFLAGS " + flags[:-1] + b" \\*)] Flags permitted\r\n",
            b"* 1 FETCH (FLAGS ($Important $Old \\Recent))\r\n",
        ], lines
        lines = watcher.ok("c", b"NOOP")
        assert lines[:2] == [
            b"* FLAGS " + flags + b"\r\n",
            b"* OK [PERMANENTFLAGS " + flags[:-1] + b" \\*)] Flags permitted\r\n",
        ], lines
        assert lines[2].startswith(b"* 1 FETCH (UID 1 FLAGS ("), lines
        # Announced once: taking the keyword off and on again is no news.
        storer.ok("b", b"STORE 1 -FLAGS ($Important)")
        assert not any(b"FLAGS (\\" in line for line in storer.ok("b2", b"STORE 1 +FLAGS ($Important)"))
        lines = reader.ok("d", b"NOOP")
        assert lines[:2] == [b"* FLAGS " + flags + b"\r\n", b"* OK [PERMANENTFLAGS ()] Flags permitted\r\n"]
        # APPEND of a message with a keyword new to the mailbox, into the selected mailbox.
        message = b"Subject: new\r\n\r\nx\r\n"
        storer.send(b"e APPEND INBOX ($Fresh) {%d}\r\n" % len(message))
        storer.continuation()
        storer.send(message + b"\r\n")
        lines = storer.until("e")
        assert lines[0].startswith(b"* FLAGS (") and b"$Fresh" in lines[0], lines
        assert lines.index(b"* 2 EXISTS\r\n") > 0, lines
    finally:
        for client in (storer, watcher, reader):
            client.close()


# -- \Recent (RFC 3501 2.3.2): each new message is recent to one session ---------------------


def recent_line(lines: list[bytes]) -> bytes:
    return next(line for line in lines if line.endswith(b" RECENT\r\n"))


def test_recent_is_seen_by_one_session_only(stack, user) -> None:
    store = stack.mail_store()
    for _ in range(2):
        store.append(user, "INBOX", MESSAGE)
    status = login(stack.imap_port, user, PASSWORD)
    first, second, examiner = (login(stack.imap_port, user, PASSWORD) for _ in range(3))
    try:
        assert b"RECENT 2" in status.ok("a", b"STATUS INBOX (RECENT)")[0]
        assert recent_line(examiner.ok("e", b"EXAMINE INBOX")) == b"* 0 RECENT\r\n"  # claims nothing
        assert recent_line(first.ok("s", b"SELECT INBOX")) == b"* 2 RECENT\r\n"
        assert recent_line(second.ok("s", b"SELECT INBOX")) == b"* 0 RECENT\r\n"
        assert b"RECENT 0" in status.ok("b", b"STATUS INBOX (RECENT)")[0]
        assert first.ok("f", b"FETCH 1:* FLAGS")[:2] == [
            b"* 1 FETCH (FLAGS (\\Recent))\r\n",
            b"* 2 FETCH (FLAGS (\\Recent))\r\n",
        ]
        assert second.ok("f", b"FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS ())\r\n"
        first.ok("g", b"STORE 1 +FLAGS (\\Seen)")
        assert first.ok("h", b"SEARCH NEW")[0] == b"* SEARCH 2\r\n"
        assert first.ok("i", b"SEARCH RECENT")[0] == b"* SEARCH 1 2\r\n"
        assert first.ok("j", b"SEARCH OLD")[0] == b"* SEARCH\r\n"
        assert second.ok("k", b"SEARCH RECENT")[0] == b"* SEARCH\r\n"
        assert second.ok("l", b"SEARCH OLD")[0] == b"* SEARCH 1 2\r\n"

        # New mail: the first selected session to hear of it has it as recent, the other not.
        store.append(user, "INBOX", MESSAGE)
        lines = noop_until(second, rb"EXISTS")
        assert lines[:2] == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"], lines
        assert second.ok("n", b"FETCH 3 FLAGS")[0] == b"* 3 FETCH (FLAGS (\\Recent))\r\n"
        lines = first.ok("o", b"NOOP")
        assert lines[:2] == [b"* 3 EXISTS\r\n", b"* 2 RECENT\r\n"], lines
        assert first.ok("p", b"FETCH 3 FLAGS")[0] == b"* 3 FETCH (FLAGS ())\r\n"
        # A session that enabled IMAP4rev2 hears of no \Recent at all.
        store.append(user, "INBOX", MESSAGE)
        status.ok("q", b"ENABLE IMAP4rev2")
        deadline = time.monotonic() + 10
        while b"MESSAGES 4" not in status.ok("w", b"STATUS INBOX (MESSAGES)")[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not any(b"RECENT" in line for line in status.ok("r", b"SELECT INBOX"))
        assert b"\\Recent" not in status.ok("t", b"FETCH 4 FLAGS")[0]
        assert recent_line(first.ok("u", b"NOOP")) == b"* 3 RECENT\r\n"  # the IMAP4rev2 session left it
    finally:
        for client in (status, first, second, examiner):
            client.close()


def test_processes_claiming_recent_at_once_each_get_distinct_messages(stack, user) -> None:
    """Two stores (two processes' worth of claims) and threads in each: every UID is claimed once."""
    seed = stack.mail_store()
    claimed: list[tuple[int, int]] = []

    def claim_after(count: int, store: MailStore) -> None:
        for _ in range(count):
            seed.append(user, "INBOX", MESSAGE)
            claimed.append(store.claim_recent(store.require_mailbox(user, "INBOX")))

    stores = [stack.mail_store(), stack.mail_store()]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(claim_after, [5, 5, 5, 5], stores * 2))
    uids = sorted(uid for start, end in claimed for uid in range(start, end))
    assert uids == list(range(1, 21))


def test_claiming_with_nothing_new_makes_no_request(stack, user) -> None:
    """The claim reaches DynamoDB through a proxy that is down: it must not need to."""
    proxy = CuttableProxy(stack.moto.port)
    try:
        store = MailStore(
            aws.table(stack.resources.mailbox_table, proxy.endpoint),
            aws.client("s3"),
            stack.resources.mail_bucket,
        )
        stack.mail_store().append(user, "INBOX", MESSAGE)
        assert store.claim_recent(store.require_mailbox(user, "INBOX")) == (1, 2)
        inbox = store.require_mailbox(user, "INBOX")
        assert inbox.recent_from == inbox.uidnext == 2
        proxy.up = False
        assert store.claim_recent(inbox) == (2, 2)
        # Nor with a stale picture of the mailbox: the process remembers what it claimed.
        assert store.claim_recent(dataclasses.replace(inbox, recent_from=1)) == (2, 2)
    finally:
        proxy.close()
