"""Hostile and broken input to a live IMAP session: answers, never a crash or a logged error."""

from __future__ import annotations

import logging
import random
import socket

from conftest import PASSWORD
from imap_fuzzer import Fuzzer
from logged_errors import Errors

from mailpipe.auth.throttle import AuthThrottle
from mailpipe_gateway.loop_watch import LoopWatch

COMMANDS = [
    b"FETCH 1:* (FLAGS BODY[1.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10> BINARY[1] BINARY.SIZE[1])",
    b"UID FETCH 1:* (ENVELOPE BODYSTRUCTURE)",
    b"SEARCH OR FROM a NOT SUBJECT x",
    b"STORE 1:3 +FLAGS (\\Seen $label1)",
    b"UID STORE 2 -FLAGS.SILENT (\\Seen)",
    b"COPY 1 Trash",
    b"MOVE 2 Archive",
    b"EXPUNGE",
    b"UID EXPUNGE 1:*",
    b"SELECT INBOX",
    b"EXAMINE Trash",
    b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE HIGHESTMODSEQ)",
    b'LIST "" *',
    b"APPEND INBOX {5}\r\nhello",
    b"APPEND INBOX (\\Seen) {10+}\r\n0123456789",
    b"CREATE a/b/c",
    b"RENAME a x",
    b"DELETE x/b/c",
    b"ENABLE QRESYNC",
    b"GETQUOTAROOT INBOX",
    b"SEARCH RETURN (MIN MAX COUNT SAVE) ALL",
    b"FETCH $ (UID)",
    b"UNSELECT",
    b"IDLE",
]


def test_random_and_mangled_commands(stack, new_user) -> None:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for n in range(5):
        store.append(owner, "INBOX", b"Subject: fuzz %d\r\n\r\nbody\r\n" % n)
    errors = Errors()
    logging.getLogger("mailpipe_gateway").addHandler(errors)
    rng = random.Random(20261127)
    try:
        for _ in range(15):
            with socket.create_connection(("127.0.0.1", stack.imap_port), timeout=10) as sock:
                reader = sock.makefile("rb")
                reader.readline()
                sock.sendall(f'a LOGIN {owner} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
                for i in range(40):
                    if rng.random() < 0.3:
                        line = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 60))).replace(
                            b"\n", b" "
                        )
                    else:
                        line = bytearray(rng.choice(COMMANDS))
                        if rng.random() < 0.3:
                            line[rng.randrange(len(line))] = rng.randint(32, 126)
                        line = bytes(line)
                    sock.sendall(b"t%d " % i + line + b"\r\n" + (b"DONE\r\n" if line == b"IDLE" else b""))
                sock.sendall(b"z LOGOUT\r\n")
                while (answer := reader.readline()) and not answer.startswith(b"z "):
                    pass
        with socket.create_connection(("127.0.0.1", stack.imap_port), timeout=10) as sock:
            assert sock.makefile("rb").readline().startswith(b"* OK")
    finally:
        logging.getLogger("mailpipe_gateway").removeHandler(errors)
    assert errors.records == []


def test_seeded_fuzzer_before_and_after_login(stack, new_user) -> None:
    """Every command answered (or closed with BYE where that is right), nothing logged as an error.

    The event loop's longest stall while it runs is printed, not asserted (no timed assertions).
    """
    # A server of its own: the fuzzer's failed logins must not throttle the shared stack's loopback.
    permissive = AuthThrottle(max_per_user=10**9, max_per_address=10**9)
    imap = stack.build_imap(throttle=permissive)
    stack.loop.run(imap.start())
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for n in range(5):
        store.append(owner, "INBOX", b"Subject: fuzz %d\r\n\r\nbody\r\n" % n)
    errors = Errors()
    logging.getLogger("mailpipe_gateway").addHandler(errors)
    lag = LoopWatch()
    stack.loop.run(lag.start())
    fuzzer = Fuzzer(seed=20261205)
    try:
        for _ in range(8):
            fuzzer.session(imap.port, 40, login=None)
            fuzzer.session(imap.port, 40, login=(owner, PASSWORD))
        with socket.create_connection(("127.0.0.1", imap.port), timeout=10) as sock:
            assert sock.makefile("rb").readline().startswith(b"* OK")
    finally:
        stack.loop.run(lag.stop())
        logging.getLogger("mailpipe_gateway").removeHandler(errors)
        stack.loop.run(imap.stop())
    print(f"fuzzer: {dict(fuzzer.counts)}; longest event loop stall {lag.longest * 1000:.1f} ms")
    assert errors.records == []
    assert fuzzer.counts["answered"] > 500 and fuzzer.counts["bye"] > 0
