"""Two IMAP sessions on one mailbox while deliveries arrive: their pictures stay right."""

from __future__ import annotations

import re
import socket
import threading
import time

from conftest import PASSWORD

MESSAGE = b"Subject: concurrent\r\n\r\nbody\r\n"


class TrackingClient:
    """A raw IMAP client that follows EXISTS and EXPUNGE in the order they arrive."""

    def __init__(self, port: int, user: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.reader = self.sock.makefile("rb")
        self.reader.readline()
        self.count = 0
        self.tag = 0
        self.errors: list[str] = []
        self.command(f'LOGIN {user} "{PASSWORD}"')
        self.command("SELECT INBOX")

    def command(self, text: str) -> list[bytes]:
        self.tag += 1
        tag = b"t%d" % self.tag
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.reader.readline()
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), line
                return lines
            lines.append(line)
            if match := re.match(rb"\* (\d+) EXISTS", line):
                exists = int(match.group(1))
                if exists < self.count:
                    self.errors.append(f"EXISTS went down from {self.count} to {exists} without EXPUNGE")
                self.count = exists
            elif match := re.match(rb"\* (\d+) EXPUNGE", line):
                number = int(match.group(1))
                if not 1 <= number <= self.count:
                    self.errors.append(f"EXPUNGE {number} with only {self.count} messages")
                self.count -= 1

    def uids(self) -> list[int]:
        [line] = [x for x in self.command("UID SEARCH ALL") if x.startswith(b"* SEARCH")]
        return [int(uid) for uid in line.split()[2:]]

    def close(self) -> None:
        self.command("LOGOUT")
        self.sock.close()


def two_sessions(stack, new_user, messages: int) -> tuple[str, TrackingClient, TrackingClient]:
    """A user with `messages` messages in INBOX, and two sessions with it selected."""
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for _ in range(messages):
        store.append(owner, "INBOX", MESSAGE)
    return owner, TrackingClient(stack.imap_port, owner), TrackingClient(stack.imap_port, owner)


def test_sessions_follow_deliveries_and_each_others_expunges(stack, new_user) -> None:
    store = stack.mail_store()
    owner, first, second = two_sessions(stack, new_user, messages=5)
    done = threading.Event()

    def deliver() -> None:
        for _ in range(20):
            store.append(owner, "INBOX", MESSAGE)
        done.set()

    writer = threading.Thread(target=deliver)
    writer.start()
    rounds = 0
    while not done.is_set() or rounds < 3:
        rounds += 1
        first.command("NOOP")
        # The second session deletes its lowest message each round, while mail keeps arriving.
        if second.count:
            second.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
            second.command("EXPUNGE")
        else:
            second.command("NOOP")
    writer.join()
    _, messages = store.list_messages(owner, "INBOX")
    expected = [m.uid for m in messages]
    # The deliveries were another process's writes: the gateway hears of them through the change
    # feed, a moment later, at some later command (docs/mail-store.md).
    deadline = time.monotonic() + 10
    while any(client.count != len(expected) for client in (first, second)) and time.monotonic() < deadline:
        first.command("NOOP")
        second.command("NOOP")
    for client in (first, second):
        assert client.errors == []
        assert client.count == len(expected)
        assert client.uids() == expected
        client.close()


def test_a_change_made_before_a_write_is_announced_with_the_write(stack, new_user) -> None:
    """A session's own write may spare it a read of the mailbox only if nothing came between its
    picture and its commit: a change another session made first must be in the write's reply."""
    _, first, second = two_sessions(stack, new_user, messages=3)
    try:
        second.command("STORE 2 +FLAGS.SILENT ($fromsecond)")
        reply = b"".join(first.command("STORE 1 +FLAGS.SILENT ($fromfirst)"))
        assert re.search(rb"\* 2 FETCH \(.*FLAGS \(\$fromsecond( \\Recent)?\)", reply), reply
        # And a write with nothing in between is followed by no untagged news.
        assert first.command("STORE 3 +FLAGS.SILENT ($fromfirst)") == []
        assert re.search(rb"\* [13] FETCH \(.*\$fromfirst", b"".join(second.command("NOOP")))
    finally:
        first.close()
        second.close()
