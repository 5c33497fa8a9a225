"""FETCH and SEARCH of many bodies over IMAP: read from S3 several at a time, answered in order
(issue 14). Reads are observed at the gateway's S3 client as they are made, never faked."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from test_store_headers import Imap

from mailpipe import s3_gets
from mailpipe_gateway.imap.loading import BODY_BYTES_AHEAD


@dataclass
class Reads:
    started: int = 0
    in_flight: int = 0
    most_at_once: int = 0


@contextlib.contextmanager
def body_reads(owner: str) -> Iterator[Reads]:
    """The whole-body GETs of `owner`'s bodies the gateway makes meanwhile (mailpipe.s3_gets,
    whichever way each is answered), and how many overlapped."""
    reads, lock = Reads(), threading.Lock()

    def observe(event: str, client: object, key: str) -> None:
        if not key.startswith(f"messages/{owner}/"):
            return
        with lock:
            if event == "start":
                reads.started += 1
                reads.in_flight += 1
                reads.most_at_once = max(reads.most_at_once, reads.in_flight)
            else:
                reads.in_flight -= 1

    s3_gets.observers.append(observe)
    try:
        yield reads
    finally:
        s3_gets.observers.remove(observe)


def message(n: int) -> bytes:
    padding = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(200))
    return b"From: a@remote.test\r\nSubject: message %d\r\n\r\n%sneedle-%d\r\n" % (n, padding, n % 10)


def test_bodies_of_many_messages_are_read_together_and_sent_in_order(stack, owner) -> None:
    store = stack.mail_store()
    raws = [message(n) for n in range(60)]
    for raw in raws:
        store.append(owner, "INBOX", raw)
    imap = Imap(stack.imap_port, owner)
    try:
        imap.command("EXAMINE INBOX")
        with body_reads(owner) as reads:
            fetched = imap.command("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])")
    finally:
        imap.close()
    expected = b"".join(
        b"* %d FETCH (UID %d RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (n, n, len(raw), len(raw), raw)
        for n, raw in enumerate(raws, 1)
    )
    assert fetched == expected
    assert reads.started == len(raws) and reads.most_at_once > 1


def test_search_reads_bodies_ahead_only_while_it_needs_them(stack, owner) -> None:
    store = stack.mail_store()
    for n in range(60):
        store.append(owner, "INBOX", message(n), flags=[] if n % 12 == 0 else ["\\Seen"])
    imap = Imap(stack.imap_port, owner)
    try:
        imap.command("SELECT INBOX")
        # First (bodies once read are kept in the gateway): few bodies needed, far apart.
        with body_reads(owner) as few:
            unseen = imap.command('UID SEARCH UNSEEN BODY "line 5 of"')
        with body_reads(owner) as every:
            every_body = imap.command("UID SEARCH BODY needle-3")
    finally:
        imap.close()
    assert re.findall(rb"\d+", unseen) == [b"1", b"13", b"25", b"37", b"49"]
    # Five bodies needed, each far from the next: at most the one after each is read ahead.
    assert 5 <= few.started <= 10
    assert re.findall(rb"\d+", every_body) == [b"%d" % (n + 1) for n in range(60) if n % 10 == 3]
    assert every.started <= 60 - 5 and every.most_at_once > 1


def test_fetch_stopped_by_an_unknown_encoding_still_sends_the_responses_before_it(stack, owner) -> None:
    store = stack.mail_store()
    store.append(owner, "INBOX", message(1))
    odd = b"Subject: odd\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nbody\r\n"
    store.append(owner, "INBOX", odd)
    imap = Imap(stack.imap_port, owner)
    try:
        imap.command("EXAMINE INBOX")
        sent = imap.command("FETCH 1:2 (BINARY.PEEK[1])", status=b"NO [UNKNOWN-CTE]")
    finally:
        imap.close()
    assert sent.startswith(b"* 1 FETCH (BINARY[1] ") and b"* 2 FETCH" not in sent


def test_bodies_read_ahead_are_bounded_by_their_size(stack, owner) -> None:
    """FETCH reads up to loading.BODIES_AHEAD bodies at once, but no more than BODY_BYTES_AHEAD
    of stored size: 1.5 MB messages are read at most five at a time (8 MB), and all of them."""
    store = stack.mail_store()
    big = 1_500_000
    raws = [message(n) + b"x" * (big - len(message(n)) - 2) + b"\r\n" for n in range(12)]
    for raw in raws:
        store.append(owner, "INBOX", raw)
    imap = Imap(stack.imap_port, owner)
    try:
        imap.command("EXAMINE INBOX")
        with body_reads(owner) as reads:
            fetched = imap.command("UID FETCH 1:* (UID BODY.PEEK[])")
    finally:
        imap.close()
    assert fetched.count(b" FETCH (UID ") == len(raws)
    assert reads.started == len(raws)
    assert 1 <= reads.most_at_once <= BODY_BYTES_AHEAD // big
