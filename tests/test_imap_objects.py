"""OBJECTID (RFC 8474: MAILBOXID, EMAILID, THREADID) and PREVIEW (RFC 8970) on the real gateway."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from conftest import PASSWORD
from imap_raw import RawIMAP

from mailpipe import aws
from mailpipe.mime import summarize
from mailpipe.mime.threading import thread_id
from mailpipe.spool import new_queue_id

ROOT = (
    b"From: Ann <ann@a.test>\r\nSubject: Lunch\r\nMessage-ID: <root@a.test>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nShall we meet   at noon?\r\n\r\nAnn\r\n"
)
REPLY = (
    b"From: Bob <bob@b.test>\r\nSubject: Re: Lunch\r\nMessage-ID: <reply@b.test>\r\n"
    b"In-Reply-To: <root@a.test>\r\nReferences: <root@a.test>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Gern, um <b>zw\xc3\xb6lf</b>.</p>\r\n"
)
OTHER = b"From: Cy <cy@c.test>\r\nSubject: Other\r\n\r\n" + b"word " * 100 + b"\r\n"


def _append(raw: RawIMAP, message: bytes, mailbox: bytes = b"INBOX") -> None:
    raw.send(b"A APPEND " + mailbox + b" {%d+}\r\n" % len(message) + message + b"\r\n")
    answer = raw.until(b"A")
    assert answer[-1].startswith(b"A OK"), answer


@pytest.fixture
def session(stack, new_user: Callable[..., str]) -> Iterator[RawIMAP]:
    user = new_user()
    with RawIMAP(stack.imap_port) as raw:
        raw.login(user, PASSWORD)
        raw.user = user  # type: ignore[attr-defined]
        for message in (ROOT, REPLY, OTHER):
            _append(raw, message)
        yield raw


def _fetch(raw: RawIMAP, command: bytes) -> dict[int, bytes]:
    """Message number -> the FETCH response's text (literals inline), for one command."""
    lines = raw.command(b"F", command)
    assert lines[-1].startswith(b"F OK"), lines
    out: dict[int, bytes] = {}
    number = None
    for line in lines[:-1]:
        match = re.match(rb"\* (\d+) FETCH ", line)
        if match:
            number = int(match.group(1))
            out[number] = line
        elif number is not None:  # the lines of a literal
            out[number] += line
    return out


def _item(response: bytes, name: bytes) -> bytes:
    match = re.search(name + rb" (\([A-Za-z0-9_-]+\)|NIL|\"[^\"]*\"|\{\d+\}\r\n)", response)
    assert match, (name, response)
    value = match.group(1)
    if value.startswith(b"{"):
        length = int(value[1:-3])
        start = match.end()
        return response[start : start + length]
    return value.strip(b'"()')


def test_fetch_emailid_threadid_preview(session: RawIMAP) -> None:
    assert session.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    answers = _fetch(session, b"FETCH 1:3 (EMAILID THREADID PREVIEW)")
    for number, raw in ((1, ROOT), (2, REPLY), (3, OTHER)):
        summary = summarize(raw)
        assert _item(answers[number], b"EMAILID").decode() == summary["email_id"]
        assert _item(answers[number], b"THREADID").decode() == summary["thread_id"]
        assert _item(answers[number], b"PREVIEW").decode() == summary["preview"]
    assert _item(answers[1], b"PREVIEW") == b"Shall we meet at noon? Ann"
    assert _item(answers[2], b"PREVIEW").decode() == "Gern, um zwölf ."  # a literal: 8-bit text
    assert _item(answers[1], b"THREADID") == _item(answers[2], b"THREADID") != _item(answers[3], b"THREADID")
    assert len({_item(answers[n], b"EMAILID") for n in (1, 2, 3)}) == 3
    lazy = _fetch(session, b"UID FETCH 1 (PREVIEW (LAZY))")
    assert _item(lazy[1], b"PREVIEW") == b"Shall we meet at noon? Ann"
    assert b"PREVIEW (LAZY)" not in lazy[1]


def test_copies_share_the_emailid_and_search_finds_them(session: RawIMAP) -> None:
    assert session.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    assert session.command(b"C", b"COPY 1 INBOX")[-1].startswith(b"C OK")
    answers = _fetch(session, b"FETCH 1:4 (EMAILID THREADID)")
    email_id, thread = _item(answers[1], b"EMAILID"), _item(answers[1], b"THREADID")
    assert _item(answers[4], b"EMAILID") == email_id  # the copy: same content, same id
    lines = session.command(b"E", b"SEARCH EMAILID " + email_id)
    assert lines[0] == b"* SEARCH 1 4\r\n", lines
    lines = session.command(b"T", b"UID SEARCH THREADID " + thread)
    assert lines[0] == b"* SEARCH 1 2 4\r\n", lines
    assert session.command(b"N", b"SEARCH EMAILID Mnosuchid")[0] == b"* SEARCH\r\n"
    assert session.command(b"B", b"SEARCH EMAILID")[-1].startswith(b"B BAD")
    assert session.command(b"B2", b"SEARCH THREADID (x)")[-1].startswith(b"B2 BAD")


def test_mailboxid_in_create_select_status_and_after_rename(session: RawIMAP) -> None:
    created = session.command(b"C", b"CREATE Projects")[-1]
    match = re.match(rb"C OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\]", created)
    assert match, created
    mailbox_id = match.group(1)
    select = b"".join(session.command(b"S", b"SELECT Projects"))
    assert b"* OK [MAILBOXID (" + mailbox_id + b")]" in select
    assert session.command(b"U", b"UNSELECT")[-1].startswith(b"U OK")
    assert session.command(b"R", b"RENAME Projects Archive/Projects")[-1].startswith(b"R OK")
    status = session.command(b"T", b"STATUS Archive/Projects (MESSAGES MAILBOXID)")
    assert status[0] == b"* STATUS Archive/Projects (MESSAGES 0 MAILBOXID (" + mailbox_id + b"))\r\n", status
    inbox = session.command(b"I", b"STATUS INBOX (MAILBOXID)")[0]
    assert mailbox_id not in inbox and b"MAILBOXID (" in inbox
    listed = b"".join(session.command(b"L", b'LIST "" "Archive/*" RETURN (STATUS (MAILBOXID))'))
    assert b"MAILBOXID (" + mailbox_id + b")" in listed


def test_messages_stored_before_the_fields_existed(stack, session: RawIMAP) -> None:
    """A message whose summary has no email_id, thread_id or preview (stored by an older version)."""
    key = f"spool/test/{new_queue_id()}.eml"
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=key, Body=REPLY)
    old = {k: v for k, v in summarize(REPLY).items() if k not in ("email_id", "thread_id", "preview")}
    store = stack.mail_store()
    for n, header in enumerate((REPLY[: old["body_start"]], None)):  # header in the index, or only in S3
        store.deliver(
            session.user,  # type: ignore[attr-defined]
            "INBOX",
            delivery_id=f"old-{n}-{new_queue_id()}",
            source_bucket=stack.resources.mail_bucket,
            source_key=key,
            size=len(REPLY),
            summary=old,
            header=header,
        )
    assert session.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    lazy = _fetch(session, b"FETCH 4:5 (PREVIEW (LAZY) THREADID)")
    for number in (4, 5):
        assert _item(lazy[number], b"PREVIEW") == b"NIL"  # LAZY: not computed, not waited for
        assert _item(lazy[number], b"THREADID").decode() == thread_id(REPLY)  # same rule, from the header
    full = _fetch(session, b"FETCH 4:5 (PREVIEW EMAILID)")
    assert _item(full[4], b"PREVIEW").decode() == "Gern, um zwölf ."
    assert _item(full[4], b"EMAILID") != _item(full[5], b"EMAILID")  # stable per message, from its key
    assert _item(full[4], b"EMAILID") == _item(_fetch(session, b"FETCH 4 EMAILID")[4], b"EMAILID")
    lines = session.command(b"T", b"SEARCH THREADID " + thread_id(REPLY).encode())
    assert lines[0] == b"* SEARCH 1 2 4 5\r\n", lines


def test_capabilities(stack) -> None:
    with RawIMAP(stack.imap_port) as raw:
        assert b" OBJECTID " in raw.greeting and b" PREVIEW " in raw.greeting, raw.greeting
