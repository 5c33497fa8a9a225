"""POP3's deletions reach the IMAP sessions of the same gateway process through the process's memory
(store/memory.py), as IMAP's own writes do, not only through the change feed's notice.

The gateway here trusts its memory, kept current by a real, healthy change feed subscribed to a
topic nobody publishes to: notices never come, so only the process's own writes can tell its
IMAP sessions that POP3 expunged.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import secrets
import socket
from collections.abc import Iterator

import pytest
from conftest import PASSWORD, wait_for

from mailpipe import aws
from mailpipe.changes.feed import ChangeFeed
from mailpipe_gateway.access import AccessParts, access_server
from mailpipe_gateway.listeners import executor_runner
from mailpipe_gateway.tls import server_context, write_self_signed


@pytest.fixture
def silent_feed(stack) -> Iterator[ChangeFeed]:
    sns = aws.client("sns")
    topic = sns.create_topic(Name=f"mailpipe-test-silent-{secrets.token_hex(4)}")["TopicArn"]
    feed = ChangeFeed(aws.long_poll_client("sqs"), sns, topic, wait_seconds=1)
    feed.start()
    try:
        wait_for(lambda: feed.healthy)
        yield feed
    finally:
        feed.close()
        sns.delete_topic(TopicArn=topic)


@pytest.fixture
def gateway(stack, silent_feed, tmp_path) -> Iterator[tuple[int, int]]:
    """(IMAP port, POP3 port) of one gateway process's servers, on one AccessParts."""
    parts = AccessParts.from_resources(stack.resources, changes=silent_feed)
    assert parts.memory.trusted
    tls = server_context(*write_self_signed(tmp_path, "mail.example.test"))
    common = {"host": "127.0.0.1", "port": 0, "hostname": "mail.example.test", "plaintext_loopback": True}
    run = executor_runner(stack.executor)
    servers = [access_server(protocol, parts, tls, run, **common) for protocol in ("imap", "pop3")]
    for server in servers:
        stack.loop.run(server.start())
    try:
        yield servers[0].port, servers[1].port
    finally:
        for server in servers:
            stack.loop.run(server.stop())
        parts.close()


@pytest.fixture
def owner(stack, new_user) -> str:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for n in range(3):
        store.append(owner, "INBOX", b"Subject: %d\r\n\r\nbody\r\n" % n)
    return owner


def pop3_delete(port: int, owner: str, numbers: list[int]) -> None:
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    client.user(owner)
    client.pass_(PASSWORD)
    for number in numbers:
        client.dele(number)
    client.quit()


def test_pop3_deletions_reach_imap_sessions_of_the_process_at_their_next_command(
    stack, gateway, owner
) -> None:
    imap_port, pop3_port = gateway
    imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=30)
    imap.login(owner, PASSWORD)
    assert imap.select("INBOX") == ("OK", [b"3"])
    idle = socket.create_connection(("127.0.0.1", imap_port), timeout=10)
    reader = idle.makefile("rb")
    reader.readline()
    idle.sendall(b'l LOGIN %s "%s"\r\ns SELECT INBOX\r\ni IDLE\r\n' % (owner.encode(), PASSWORD.encode()))
    while not reader.readline().startswith(b"+"):
        pass

    pop3_delete(pop3_port, owner, [1, 3])

    # The IDLE session is woken by memory (the feed says nothing): 3 first, then 1.
    assert [reader.readline() for _ in range(2)] == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    idle.sendall(b"DONE\r\nz LOGOUT\r\n")
    idle.close()
    typ, data = imap.noop()
    assert typ == "OK"
    assert sorted(imap.untagged_responses.pop("EXPUNGE", [])) == [b"1", b"3"]
    typ, data = imap.fetch("1:*", "(UID)")
    assert [re.search(rb"UID (\d+)", line).group(1) for line in data] == [b"2"]
    imap.logout()
    assert [m.uid for m in stack.mail_store().list_messages(owner, "INBOX")[1]] == [2]
