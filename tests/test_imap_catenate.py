"""CATENATE (RFC 4469) over a real socket against the server on the moto-backed store.

A message is built from literal text and IMAP URLs (RFC 5092) of the user's own messages, as
a client forwarding an attachment without downloading it does. URLs that name another user,
another server, a message that is not there or a UIDVALIDITY gone by are ``NO [BADURL]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest import PASSWORD
from raw_imap import Client, login

ORIGINAL = (
    b"Subject: original\r\nFrom: a@example.test\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nthe text\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQ=\r\n--b--\r\n"
)
SECRET = b"Subject: secret\r\nFrom: b@example.test\r\n\r\nnot for anyone else\r\n"


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.append(owner, "INBOX", ORIGINAL)
    return owner


@pytest.fixture
def client(stack, user) -> Iterator[Client]:
    connection = login(stack.imap_port, user, PASSWORD)
    yield connection
    connection.close()


def uidvalidity(stack, user: str) -> int:
    return stack.mail_store().get_mailbox(user, "INBOX").uidvalidity


def catenate(client: Client, tag: str, parts: list[bytes | str], mailbox: bytes = b"Drafts") -> list[bytes]:
    """APPEND mailbox CATENATE (...): bytes are TEXT literals, str are URLs."""
    wire = b"APPEND " + mailbox + b" CATENATE ("
    for index, part in enumerate(parts):
        wire += b" " if index else b""
        if isinstance(part, bytes):
            wire += b"TEXT {%d+}\r\n%s" % (len(part), part)
        else:
            wire += b'URL "%s"' % part.encode()
        del index
    return client.command(tag, wire + b")")


def stored(stack, user: str, mailbox: str = "Drafts") -> list[bytes]:
    store = stack.mail_store()
    return [store.read_body(m) for m in store.list_messages(user, mailbox)[1]]


def test_a_forward_built_from_text_and_a_stored_attachment(stack, user, client) -> None:
    v = uidvalidity(stack, user)
    head = (
        b'Subject: fwd\r\nContent-Type: multipart/mixed; boundary="n"\r\n\r\n--n\r\n\r\nsee below\r\n--n\r\n'
    )
    lines = catenate(
        client,
        "a",
        [
            head,
            f"/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=2.MIME",
            f"/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=2",
            b"\r\n--n--\r\n",
        ],
    )
    assert re.match(rb"a OK \[APPENDUID \d+ 1\]", lines[-1]), lines
    mime = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert stored(stack, user) == [head + mime + b"AAECAwQ=" + b"\r\n--n--\r\n"]


def test_absolute_and_relative_urls_and_partial(stack, user, client) -> None:
    v = uidvalidity(stack, user)
    host = stack.options.hostname
    client.ok("s", b"SELECT INBOX")
    me = user.replace("@", "%40")
    lines = catenate(client, "a", [f"imap://{me};AUTH=*@{host}/INBOX;UIDVALIDITY={v}/;UID=1"])
    assert lines[-1].startswith(b"a OK"), lines
    lines = catenate(client, "b", ["imap://127.0.0.1/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)"])
    assert lines[-1].startswith(b"b OK"), lines
    lines = catenate(client, "c", [";UID=1/;SECTION=1/;PARTIAL=4.4", b"\r\n"])  # the selected mailbox
    assert lines[-1].startswith(b"c OK"), lines
    assert stored(stack, user) == [ORIGINAL, b"Subject: original\r\n\r\n", b"text\r\n"]


def test_catenate_in_a_multiappend(stack, user, client) -> None:
    v = uidvalidity(stack, user)
    plain = b"Subject: plain\r\n\r\nplain\r\n"
    wire = b"APPEND Drafts {%d+}\r\n%s CATENATE (TEXT {12+}\r\nSubject: x\r\n URL " % (len(plain), plain)
    lines = client.command("a", wire + b'"/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=TEXT")' % v)
    assert re.match(rb"a OK \[APPENDUID \d+ 1:2\]", lines[-1]), lines
    assert stored(stack, user) == [plain, b"Subject: x\r\n" + ORIGINAL.split(b"\r\n\r\n", 1)[1]]


@pytest.mark.parametrize(
    "url",
    [
        "/INBOX;UIDVALIDITY=1/;UID=1",  # a UIDVALIDITY gone by
        "/INBOX/;UID=7",  # no such message
        "/Nowhere/;UID=1",  # no such mailbox
        "/INBOX",  # no message named
        "/INBOX/;UID=1/;URLAUTH=anonymous:internal:0123",  # URLAUTH: not supported
        "/INBOX/;UID=1/;SECTION=NONSENSE",
        "imap://elsewhere.example/INBOX/;UID=1",  # another server
        "http://example.test/",
        ";UID=1",  # relative to the selected mailbox: none is selected
    ],
)
def test_bad_urls(stack, user, client, url: str) -> None:
    lines = catenate(client, "a", [b"Subject: x\r\n\r\n", url])
    assert lines[-1].startswith(b"a NO [BADURL "), lines
    assert stored(stack, user) == []
    client.ok("b", b"NOOP")


def test_another_users_mail_is_never_reached(stack, user, client, new_user) -> None:
    """A URL naming another user is BADURL; a URL without a user names the session's own mail,
    never the other user's mailbox of the same name."""
    other = new_user()
    stack.mail_store().ensure_mailboxes(other)
    stack.mail_store().append(other, "Archive", SECRET)
    host = stack.options.hostname
    for tag, url in (
        ("a", f"imap://{other.replace('@', '%40')}@{host}/Archive/;UID=1"),
        ("b", f"imap://{other.replace('@', '%40')};AUTH=*@{host}/Archive/;UID=1"),
        ("c", "/Archive/;UID=1"),  # the session's user has no Archive with UID 1
    ):
        lines = catenate(client, tag, [url])
        assert lines[-1].startswith(tag.encode() + b" NO [BADURL "), lines
        assert b"not for anyone" not in b"".join(lines)
    assert stored(stack, user) == []


def test_a_catenated_message_is_bounded_by_appendlimit(stack, new_user) -> None:
    server = stack.build_imap(append_limit=len(ORIGINAL) + 10)
    stack.loop.run(server.start())
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.append(owner, "INBOX", ORIGINAL)
    try:
        client = login(server.port, owner, PASSWORD)
        lines = catenate(client, "a", [b"Subject: padding\r\n", "/INBOX/;UID=1"])
        assert lines[-1].startswith(b"a NO [TOOBIG]"), lines
        lines = catenate(client, "b", ["/INBOX/;UID=1", "/INBOX/;UID=1/;SECTION=TEXT"])
        assert lines[-1].startswith(b"b NO [TOOBIG]"), lines
        assert stored(stack, owner) == []
        lines = catenate(client, "c", ["/INBOX/;UID=1"])
        assert lines[-1].startswith(b"c OK"), lines
        client.close()
    finally:
        stack.loop.run(server.stop())


def test_capability_is_advertised(client) -> None:
    [caps, _] = client.ok("c", b"CAPABILITY")
    assert b" CATENATE" in caps


def test_catenated_messages_of_one_command_stay_within_its_bound(stack, new_user) -> None:
    """Each CATENATEd message fits APPENDLIMIT, but a MULTIAPPEND of them may hold no more than one
    command may (APPENDLIMIT plus a line), as literals may not: four copies of 30 kB are too many
    under a 40 kB limit, three are not."""
    server = stack.build_imap(append_limit=40_000)
    stack.loop.run(server.start())
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    big = b"Subject: big\r\n\r\n" + b"y" * 30_000 + b"\r\n"
    store.append(owner, "INBOX", big)
    try:
        client = login(server.port, owner, PASSWORD)
        four = b"APPEND Drafts" + b' CATENATE (URL "/INBOX/;UID=1")' * 4
        assert client.command("a", four)[-1].startswith(b"a NO [TOOBIG]")
        assert stored(stack, owner) == []
        three = b"APPEND Drafts" + b' CATENATE (URL "/INBOX/;UID=1")' * 3
        assert client.command("b", three)[-1].startswith(b"b OK [APPENDUID ")
        assert stored(stack, owner) == [big] * 3
        client.close()
    finally:
        stack.loop.run(server.stop())


def test_badurl_echoes_no_characters_that_would_break_the_response(stack, user, client) -> None:
    url = b"/INBOX]\r\n* OK injected\r\n/;UID=9"
    lines = client.command("a", b"APPEND Drafts CATENATE (URL {%d+}\r\n%s)" % (len(url), url))
    assert len(lines) == 1 and lines[0].startswith(b"a NO [BADURL /INBOX???* OK injected??/;UID=9] "), lines
