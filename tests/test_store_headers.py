"""Headers kept in the index (mailpipe.store.headers): byte for byte the header block in S3, read
without S3, and served identically over IMAP whether the item has them or not (issue 14); and
what an APPEND costs in requests."""

from __future__ import annotations

import contextlib
import os
import poplib
import pty
import random
import re
import smtplib
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from conftest import CORPUS, PASSWORD, wait_for_inbox

from mailpipe import aws, dynamo_transactions, s3_gets, s3_puts
from mailpipe.store import MailStore, StoredMessage
from mailpipe.store.backfill import HeaderBackfill
from mailpipe.store.headers import header_end
from mailpipe.store.mailstore import READ_THREADS
from mailpipe.store.model import MAX_PACKED_HEADER, messages_pk, uid_sk

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
needs_corpus = pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")


# -- observing real requests --------------------------------------------------------------------


@contextlib.contextmanager
def requests_made(client: Any, prefix: str = "") -> Iterator[Counter[str]]:
    """Counts the requests `client` makes meanwhile, by operation (botocore's before-parameter-build
    event: every real call, none faked; and the whole-object GETs and PUTs mailpipe.s3_gets and
    s3_puts make without botocore, as GetObject and PutObject, and the transactions of
    mailpipe.dynamo_transactions); with `prefix`, only S3 requests for keys that start with it."""
    counts: Counter[str] = Counter()
    lean = threading.local()  # a lean GET or PUT sent through botocore after all is counted once

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        key = params.get("Key") or (params.get("CopySource") or {}).get("Key") or ""
        if (not prefix or str(key).startswith(prefix)) and not getattr(lean, "active", False):
            counts[model.name] += 1

    def lean_counter(operation: str) -> Callable[[str, Any, str], None]:
        def count_lean(event: str, observed: Any, key: str) -> None:
            if observed is client and (not prefix or key.startswith(prefix)):
                lean.active = event == "start"
                counts[operation] += event == "start"

        return count_lean

    count_gets, count_puts = lean_counter("GetObject"), lean_counter("PutObject")

    def count_transaction(event: str, observed: Any) -> None:
        if observed is client and not prefix:
            lean.active = event == "start"
            counts["TransactWriteItems"] += event == "start"

    client.meta.events.register("before-parameter-build.*.*", count)
    s3_gets.observers.append(count_gets)
    s3_puts.observers.append(count_puts)
    dynamo_transactions.observers.append(count_transaction)
    try:
        yield counts
    finally:
        client.meta.events.unregister("before-parameter-build.*.*", count)
        s3_gets.observers.remove(count_gets)
        s3_puts.observers.remove(count_puts)
        dynamo_transactions.observers.remove(count_transaction)


def own_store(stack) -> MailStore:
    """A store with clients of its own, so that counting its requests counts no one else's."""
    endpoint = stack.moto.endpoint
    session = boto3.session.Session()
    table = session.resource("dynamodb", endpoint_url=endpoint).Table(stack.resources.mailbox_table)
    return MailStore(table, session.client("s3", endpoint_url=endpoint), stack.resources.mail_bucket)


def item(store: MailStore, mailbox_id: str, uid: int) -> dict[str, Any]:
    return store._table.get_item(Key={"pk": messages_pk(mailbox_id), "sk": uid_sk(uid)})["Item"]


def forget_headers(store: MailStore, mailbox_id: str, messages: list[StoredMessage]) -> None:
    """Make messages look stored before headers were kept: the attribute removed, as it never was."""
    for message in messages:
        store._table.update_item(
            Key={"pk": messages_pk(mailbox_id), "sk": uid_sk(message.uid)}, UpdateExpression="REMOVE header"
        )


def big_header_message() -> bytes:
    """A message whose header compresses to more than MAX_PACKED_HEADER (random, folded)."""
    rng = random.Random(14)
    junk = "".join(
        rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16000)
    )
    folded = "\r\n\t".join(junk[i : i + 76] for i in range(0, len(junk), 76))
    return f"From: a@remote.test\r\nSubject: big header\r\nX-Junk: {folded}\r\n\r\nbody\r\n".encode()


# -- the store --------------------------------------------------------------------------------------


@needs_corpus
def test_every_corpus_header_from_the_index_is_the_header_in_s3(stack, owner) -> None:
    store = own_store(stack)
    for path in CORPUS_FILES:
        store.append(owner, "INBOX", path.read_bytes())
    mailbox, messages = store.list_messages(owner, "INBOX")
    reader = own_store(stack)  # nothing cached
    with requests_made(reader._s3) as s3_requests:
        headers = reader.read_headers(mailbox.mailbox_id, messages)
    assert s3_requests == Counter()
    for path, message in zip(CORPUS_FILES, messages, strict=True):
        raw = path.read_bytes()
        in_s3 = store.read_range(message, 0, message.summary["body_start"])
        assert in_s3 == raw[: header_end(raw)], path
        assert headers[message.uid] == in_s3, path
        assert "header" in item(store, mailbox.mailbox_id, message.uid), path


@needs_corpus
def test_every_corpus_header_kept_in_memory_is_the_header_in_s3(stack, owner) -> None:
    """The process keeps the compressed header blocks of its own APPENDs and of a snapshot's
    listing (issue 14); what it serves from them is the header in S3, byte for byte, read with no
    request at all."""
    writer = own_store(stack)
    for path in CORPUS_FILES:
        writer.append(owner, "INBOX", path.read_bytes())
    mailbox, messages = writer.list_messages(owner, "INBOX")
    lister = own_store(stack)  # another process: it knows the headers only by listing them
    assert all(lister.cached_header(m) is None for m in messages)
    listed = lister.messages_in(mailbox, keep_headers=True)
    assert listed == messages  # the header goes into the cache, never into StoredMessage
    for store in (writer, lister):
        with requests_made(store._s3) as s3, requests_made(store._client) as dynamodb:
            headers = store.read_headers(mailbox.mailbox_id, messages)
        assert s3 == Counter() and dynamodb == Counter()
        for path, message in zip(CORPUS_FILES, messages, strict=True):
            in_s3 = writer.read_range(message, 0, message.summary["body_start"])
            assert store.cached_header(message) == in_s3, path
            assert headers[message.uid] == in_s3, path


def test_a_header_beyond_the_bound_is_read_from_s3(stack, owner) -> None:
    store = own_store(stack)
    raw = big_header_message()
    _, uid = store.append(owner, "INBOX", raw)
    mailbox, [message] = store.list_messages(owner, "INBOX")
    assert "header" not in item(store, mailbox.mailbox_id, uid)
    reader = own_store(stack)
    with requests_made(reader._s3) as s3_requests:
        headers = reader.read_headers(mailbox.mailbox_id, [message])
    assert headers == {uid: raw[: header_end(raw)]}
    assert len(headers[uid]) > MAX_PACKED_HEADER
    assert s3_requests == Counter(GetObject=1)
    with requests_made(reader._s3) as again:
        assert reader.read_headers(mailbox.mailbox_id, [message]) == headers
    assert again == Counter()  # kept in the process once read


def test_messages_stored_without_headers_are_read_from_s3(stack, owner) -> None:
    store = own_store(stack)
    raws = [b"Subject: %d\r\nFrom: a@remote.test\r\n\r\nbody %d\r\n" % (n, n) for n in range(3)]
    for raw in raws:
        store.append(owner, "Archive", raw)
    mailbox, messages = store.list_messages(owner, "Archive")
    forget_headers(store, mailbox.mailbox_id, messages[1:])
    reader = own_store(stack)
    with requests_made(reader._s3) as s3_requests:
        headers = reader.read_headers(mailbox.mailbox_id, messages)
    assert [headers[m.uid] for m in messages] == [raw[: header_end(raw)] for raw in raws]
    assert s3_requests == Counter(GetObject=2)


def test_copies_keep_the_header_and_expunge_drops_it(stack, owner) -> None:
    store = own_store(stack)
    raw = b"Subject: copied\r\nFrom: a@remote.test\r\n\r\nbody\r\n"
    store.append(owner, "INBOX", raw)
    target, [(_, copy_uid)] = store.copy(owner, "INBOX", [1], "Archive")
    assert "header" in item(store, target.mailbox_id, copy_uid)
    store.expunge(owner, "Archive", [copy_uid])
    tombstone = item(store, target.mailbox_id, copy_uid)
    assert tombstone.get("expunged") and "header" not in tombstone


def test_listings_do_not_carry_headers(stack, owner) -> None:
    """Snapshots of big mailboxes hold what listings read: headers stay in the index."""
    store = own_store(stack)
    for n in range(3):
        store.append(owner, "INBOX", b"Subject: %d\r\n\r\nbody\r\n" % n)
    seen: list[dict[str, Any]] = []

    def keep(parsed: dict[str, Any], **_: Any) -> None:
        seen.extend(parsed.get("Items", []))
        for items in parsed.get("Responses", {}).values():
            seen.extend(items)

    client = store._client
    client.meta.events.register("after-call.dynamodb.*", keep)
    try:
        mailbox, messages = store.list_messages(owner, "INBOX")
        store.messages_by_uid(mailbox, [1, 2])
    finally:
        client.meta.events.unregister("after-call.dynamodb.*", keep)
    assert len(messages) == 3 and len(seen) >= 5
    assert not [i for i in seen if "header" in i]


def test_append_costs_the_put_and_one_transaction(stack, owner) -> None:
    store = own_store(stack)
    store.append(owner, "INBOX", b"Subject: first\r\n\r\nbody\r\n")
    with requests_made(store._client) as dynamodb, requests_made(store._s3) as s3:
        store.append(owner, "INBOX", b"Subject: second\r\n\r\nbody\r\n")
    assert dynamodb == Counter(TransactWriteItems=1)
    assert s3 == Counter(PutObject=1)


def test_append_to_a_mailbox_deleted_meanwhile_leaves_no_body(stack, owner) -> None:
    store = own_store(stack)
    store.create_mailbox(owner, "Gone")
    store.append(owner, "Gone", b"Subject: one\r\n\r\nbody\r\n")
    other = own_store(stack)  # another process deletes it
    other.delete_mailbox(owner, "Gone")
    with requests_made(store._s3) as s3, pytest.raises(Exception, match="no mailbox"):
        store.append(owner, "Gone", b"Subject: two\r\n\r\nbody\r\n")
    assert s3 == Counter(PutObject=1, DeleteObjects=1)
    assert "Contents" not in store._s3.list_objects_v2(
        Bucket=stack.resources.mail_bucket, Prefix=f"messages/{owner}/"
    )


# -- IMAP ---------------------------------------------------------------------------------------------


class Imap:
    """A plain IMAP connection that returns each command's untagged responses as raw bytes."""

    def __init__(self, port: int, user: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.reader = self.sock.makefile("rb")
        self.tags = 0
        assert self.reader.readline().startswith(b"* OK")
        self.command(f'LOGIN "{user}" "{PASSWORD}"')

    def command(self, text: str, status: bytes = b"OK") -> bytes:
        """The untagged responses to `text`, which must end in `status` (OK, NO, BAD)."""
        self.tags += 1
        tag = b"t%d" % self.tags
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = b""
        while True:
            line = self.reader.readline()
            assert line, "connection closed"
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" " + status), line
                return out
            out += line
            literal = re.search(rb"\{(\d+)\}\r\n$", line)
            if literal:
                out += self.reader.read(int(literal[1]))

    def close(self) -> None:
        self.command("LOGOUT")
        self.sock.close()


HEADER_ITEMS = (
    "UID BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS (From Subject Date Message-ID X-Absent)]"
    " BODY.PEEK[HEADER.FIELDS.NOT (Received Subject)] RFC822.HEADER"
)


def crlf(data: bytes) -> bytes:
    """As IMAP sends message data: every bare LF as CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


@needs_corpus
def test_header_fetches_are_the_same_with_and_without_the_attribute(stack, new_user) -> None:
    owner = new_user()
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        for path in CORPUS_FILES:
            client.sendmail("corpus@remote.test", [owner], path.read_bytes())
    delivered = wait_for_inbox(stack, owner, len(CORPUS_FILES), timeout=120)
    store = stack.mail_store()
    inbox = store.get_mailbox(owner, "INBOX")
    assert all("header" in item(store, inbox.mailbox_id, m.uid) for m in delivered)  # the inbound path
    copies, _ = store.copy(owner, "INBOX", [m.uid for m in delivered], "Archive")
    _, copied = store.list_messages(owner, "Archive")
    forget_headers(store, copies.mailbox_id, copied)

    imap = Imap(stack.imap_port, owner)
    gateway_s3 = aws.client("s3")
    try:
        imap.command("EXAMINE INBOX")
        with requests_made(gateway_s3, f"messages/{owner}/") as from_index:
            indexed = imap.command(f"UID FETCH 1:* ({HEADER_ITEMS})")
        imap.command("EXAMINE Archive")
        with requests_made(gateway_s3, f"messages/{owner}/") as from_s3:
            fallback = imap.command(f"UID FETCH 1:* ({HEADER_ITEMS})")
        bodies = imap.command("UID FETCH 1:* (UID BODY.PEEK[])")
    finally:
        imap.close()
    assert from_index == Counter()
    assert from_s3 == Counter(GetObject=len(copied))
    assert indexed == fallback
    assert indexed.count(b" FETCH (") == len(delivered)
    # BODY[HEADER] is the header block in S3, as IMAP sends it (CRLF line ends).
    for message in delivered:
        header = store.read_range(message, 0, message.summary["body_start"])
        assert b"BODY[HEADER] {%d}\r\n" % len(crlf(header)) + crlf(header) in indexed, message.delivery_id
    # Bodies of many messages come back in order, byte for byte.
    expected = b"".join(
        b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (n, m.uid, len(crlf(body))) + crlf(body) + b")\r\n"
        for n, m in enumerate(copied, 1)
        for body in [store.read_body(m)]
    )
    assert bodies == expected


def test_a_folder_of_a_thousand_messages_opens_without_s3(stack, owner) -> None:
    store = stack.mail_store()
    for path in CORPUS_FILES[:8] or [None] * 8:
        store.append(owner, "INBOX", path.read_bytes() if path else b"Subject: x\r\n\r\nbody\r\n")
    while len(uids := [m.uid for m in store.list_messages(owner, "INBOX")[1]]) < 1000:
        store.copy(owner, "INBOX", uids, "INBOX")  # doubles it: server-side copies, 99 per transaction
    imap = Imap(stack.imap_port, owner)
    try:
        imap.command("EXAMINE INBOX")
        with requests_made(aws.client("s3"), f"messages/{owner}/") as s3:
            listing = imap.command(
                "UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date"
                " Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])"
            )
    finally:
        imap.close()
    assert listing.count(b" FETCH (UID ") == len(uids) >= 1000
    assert s3 == Counter()


# -- POP3 ---------------------------------------------------------------------------------------------


def test_pop3_top_0_reads_the_header_from_the_index(stack, owner) -> None:
    store = stack.mail_store()
    raws = [path.read_bytes() for path in CORPUS_FILES[:20]] or [b"Subject: x\r\n\r\nbody\r\n"]
    raws.append(b"From: a@remote.test\nSubject: no body\n")  # no empty line: all header
    for raw in raws:
        store.append(owner, "INBOX", raw)
    client = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=60)
    client.user(owner)
    client.pass_(PASSWORD)
    try:
        with requests_made(aws.client("s3"), f"messages/{owner}/") as s3:
            tops = [client.top(n, 0)[1] for n in range(1, len(raws) + 1)]
        retrieved = [client.retr(n)[1] for n in range(1, len(raws) + 1)]
        first_lines = client.top(1, 2)[1]
    finally:
        client.quit()
    assert s3 == Counter()
    for raw, top, whole in zip(raws, tops, retrieved, strict=True):
        # The header and the empty line after it, as RETR sends them.
        end = whole.index(b"") + 1 if b"" in whole else len(whole)
        assert top == whole[:end], raw[:60]
    assert first_lines == retrieved[0][: retrieved[0].index(b"") + 3]


def test_pop3_lists_a_large_maildrop_by_top_0_without_a_request_per_message(stack, owner) -> None:
    """What a POP3 client listing a maildrop does (LIST, UIDL, then TOP n 0 for each message): the
    header blocks come with the session's listing, and the maildrop's lease is not written again
    at every command."""
    store = stack.mail_store()
    for path in CORPUS_FILES[:8] or [None] * 8:
        store.append(owner, "INBOX", path.read_bytes() if path else b"Subject: x\r\n\r\nbody\r\n")
    while len(uids := [m.uid for m in store.list_messages(owner, "INBOX")[1]]) < 300:
        store.copy(owner, "INBOX", uids, "INBOX")
    client = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=60)
    client.user(owner)
    client.pass_(PASSWORD)
    gateway_dynamodb = aws.table(stack.resources.mailbox_table).meta.client
    try:
        with (
            requests_made(aws.client("s3"), f"messages/{owner}/") as s3,
            requests_made(gateway_dynamodb) as dynamodb,
        ):
            listed = client.list()[1]
            unique_ids = client.uidl()[1]
            tops = [client.top(n, 0)[1] for n in range(1, len(uids) + 1)]
        first = client.retr(1)[1]
    finally:
        client.quit()
    assert len(listed) == len(unique_ids) == len(tops) == len(uids) >= 300
    assert s3 == Counter()
    assert dynamodb["BatchGetItem"] == dynamodb["GetItem"] == 0
    assert dynamodb["PutItem"] <= 1  # the lease, renewed once if this took over a minute
    assert tops[0] == first[: first.index(b"") + 1]


# -- backfill -----------------------------------------------------------------------------------------


def backfill(stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`mailpipe store backfill-headers` as an operator runs it, against the stack's moto."""
    return subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", "store", "backfill-headers", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **stack.environment},
        timeout=120,
    )


def test_backfill_gives_old_messages_their_headers_once(stack, owner) -> None:
    store = own_store(stack)
    raws = [path.read_bytes() for path in CORPUS_FILES[:30]] or [b"Subject: x\r\n\r\nbody\r\n"] * 3
    for raw in raws:
        store.append(owner, "INBOX", raw)
    store.append(owner, "Archive", big_header_message())
    store.append(owner, "Archive", b"Subject: expunged\r\n\r\nbody\r\n")
    inbox, messages = store.list_messages(owner, "INBOX")
    archive, archived = store.list_messages(owner, "Archive")
    forget_headers(store, inbox.mailbox_id, messages)  # as stored before headers were indexed
    store.expunge(owner, "Archive", [archived[1].uid])

    first = backfill(stack, "--owner", owner.upper())
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        f"{len(raws) + 1} messages had no header in the index: {len(raws)} written, "
        "1 too large (read from S3 as before), 0 expunged or done meanwhile"
    )
    assert first.stderr.strip().endswith(f"{len(raws) + 1}/{len(raws) + 1} messages")  # not a TTY
    reader = own_store(stack)
    with requests_made(reader._s3) as s3:
        headers = reader.read_headers(inbox.mailbox_id, messages)
    assert s3 == Counter()
    assert [headers[m.uid] for m in messages] == [raw[: header_end(raw)] for raw in raws]
    tombstone = item(store, archive.mailbox_id, archived[1].uid)
    assert "header" not in tombstone and "summary" not in tombstone

    second = backfill(stack, "--owner", owner)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("1 messages had no header in the index: 0 written, 1 too large")


def test_backfill_of_every_mailbox(stack, owner) -> None:
    store = own_store(stack)
    store.append(owner, "Drafts", b"Subject: draft\r\n\r\nbody\r\n")
    drafts, messages = store.list_messages(owner, "Drafts")
    forget_headers(store, drafts.mailbox_id, messages)
    seen: list[tuple[int, int]] = []
    report = HeaderBackfill(store._table, store._s3, stack.resources.mail_bucket).run(
        progress=lambda done, total: seen.append((done, total))
    )
    assert report.written >= 1 and seen[0] == (0, report.found) and seen[-1][0] == report.done
    assert "header" in item(store, drafts.mailbox_id, messages[0].uid)


def test_every_store_of_a_process_reads_on_the_same_few_threads(stack, owner) -> None:
    """Tests and tools make many MailStores in one process: their reader threads must not add up."""
    store = own_store(stack)
    for n in range(3):
        store.append(owner, "Archive", b"Subject: %d\r\n\r\nbody\r\n" % n)
    mailbox, messages = store.list_messages(owner, "Archive")
    forget_headers(store, mailbox.mailbox_id, messages)  # so that reads run on the reader threads
    for _ in range(4):
        own_store(stack).read_headers(mailbox.mailbox_id, messages)
    readers = [t for t in threading.enumerate() if t.name.startswith("mailstore-read")]
    assert 0 < len(readers) <= READ_THREADS


def test_backfill_draws_a_progress_bar_on_a_terminal(stack, owner) -> None:
    store = own_store(stack)
    store.append(owner, "Drafts", b"Subject: draft\r\n\r\nbody\r\n")
    drafts, messages = store.list_messages(owner, "Drafts")
    forget_headers(store, drafts.mailbox_id, messages)
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mailpipe_tools.cli", "store", "backfill-headers", "--owner", owner],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env={**os.environ, **stack.environment},
            timeout=120,
        )
        os.close(terminal)
        terminal = -1
        drawn = b""
        while chunk := _read_or_empty(controller):
            drawn += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("1 messages had no header in the index: 1 written")
    assert b"\r[" + b"#" * 40 + b"] 1/1" in drawn


def _read_or_empty(fd: int) -> bytes:
    """What a pty holds; b"" once the other side is closed (Linux says EIO then)."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""
