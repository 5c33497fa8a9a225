"""RFC 6855 (UTF8=ACCEPT) and literal8 over a real socket, command by command as clients send them.

Thunderbird, once it sent ``ENABLE UTF8=ACCEPT``, saves sent mail and drafts with APPEND's
``UTF8 (~{n+}`` form (issue 13); every other form here is one the grammar allows and some client
sends. Each stored message is compared byte for byte with what was sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest import CORPUS, PASSWORD
from raw_imap import Client, login

from mailpipe.store import MailStore

UTF8_MESSAGE = (CORPUS / "rfc6532" / "utf8_headers.eml").read_bytes().replace(b"\n", b"\r\n")
# Octets only a literal8 may carry: NUL, a bare LF and a bare CR, after UTF-8 headers.
BINARY_MESSAGE = "Subject: Grüße\r\nFrom: jürgen@example.test\r\n\r\nnul \0 lf \n cr \r end\r\n".encode()


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


@pytest.fixture
def client(stack, user) -> Iterator[Client]:
    connection = login(stack.imap_port, user, PASSWORD)
    yield connection
    connection.close()


def enabled(client: Client, *capabilities: bytes) -> Client:
    lines = client.ok("e", b"ENABLE " + b" ".join(capabilities))
    assert lines[0].upper() == b"* ENABLED " + b" ".join(capabilities).upper() + b"\r\n"
    return client


def appended(store: MailStore, user: str, mailbox: str, lines: list[bytes]) -> bytes:
    """The stored body of the message an APPEND answered with APPENDUID."""
    found = re.search(rb"\[APPENDUID \d+ (\d+)\]", lines[-1])
    assert found, lines
    uid = int(found.group(1))
    [message] = [m for m in store.list_messages(user, mailbox)[1] if m.uid == uid]
    return store.read_body(message)


# -- APPEND's UTF8 data item (RFC 6855 4) ----------------------------------------------------------


def test_thunderbird_saves_sent_mail_after_enable(stack, user, client) -> None:
    """The exact shape of issue 13: non-synchronizing literal8 inside UTF8 ( )."""
    enabled(client, b"UTF8=ACCEPT")
    head = b'15 append "Sent" (\\Seen) UTF8 (~{%d+}\r\n' % len(UTF8_MESSAGE)
    client.send(head + UTF8_MESSAGE + b")\r\n")
    lines = client.until("15")
    assert lines[-1].startswith(b"15 OK [APPENDUID "), lines
    store = stack.mail_store()
    assert appended(store, user, "Sent", lines) == UTF8_MESSAGE
    [message] = store.list_messages(user, "Sent")[1]
    assert set(message.flags) == {"\\Seen"}


def test_synchronizing_utf8_append_with_a_date_and_binary_octets(stack, user, client) -> None:
    enabled(client, b"UTF8=ACCEPT")
    client.send(
        b'a APPEND Drafts (\\Draft $MDNSent) "14-Nov-2023 22:13:20 +0000" UTF8 (~{%d}\r\n'
        % len(BINARY_MESSAGE)
    )
    client.continuation()
    client.send(BINARY_MESSAGE + b")\r\n")
    lines = client.until("a")
    assert lines[-1].startswith(b"a OK [APPENDUID "), lines
    store = stack.mail_store()
    assert appended(store, user, "Drafts", lines) == BINARY_MESSAGE
    [message] = store.list_messages(user, "Drafts")[1]
    assert set(message.flags) == {"\\Draft", "$MDNSent"}
    assert message.internaldate == 1_700_000_000


def test_utf8_append_is_refused_before_enable(stack, user, client) -> None:
    """Before ENABLE UTF8=ACCEPT the data item does not exist: BAD, and nothing is stored; the
    literal is still read, so the session goes on."""
    head = b'a APPEND "Sent" UTF8 (~{%d+}\r\n' % len(UTF8_MESSAGE)
    lines = client.command("a", head[2:] + UTF8_MESSAGE + b")")
    assert lines[-1].startswith(b"a BAD") and b"ENABLE UTF8=ACCEPT" in lines[-1], lines
    # IMAP4rev2 alone does not have it either: it is UTF8=ACCEPT's.
    enabled(client, b"IMAP4rev2")
    lines = client.command("b", head[2:] + UTF8_MESSAGE + b")")
    assert lines[-1].startswith(b"b BAD"), lines
    client.ok("c", b"NOOP")
    assert stack.mail_store().list_messages(user, "Sent")[1] == []


@pytest.mark.parametrize(
    "shape",
    [
        b"UTF8 ({%d+}\r\n%s)",  # a plain literal: the grammar says literal8
        b"UTF8 (~{%d+}\r\n%s",  # no closing parenthesis
        b"UTF8 ~{%d+}\r\n%s",  # no parentheses
        b"UTF8 (~{%d+}\r\n%s) x",  # something that is not another message after it
    ],
)
def test_malformed_utf8_append_is_bad(stack, user, client, shape: bytes) -> None:
    enabled(client, b"UTF8=ACCEPT")
    lines = client.command("a", b"APPEND INBOX " + shape % (len(UTF8_MESSAGE), UTF8_MESSAGE))
    assert lines[-1].startswith(b"a BAD"), lines
    client.ok("b", b"NOOP")
    assert stack.mail_store().list_messages(user, "INBOX")[1] == []


# -- literal8 (RFC 3516, RFC 7888) -----------------------------------------------------------------


@pytest.mark.parametrize("utf8", [False, True], ids=["before-enable", "after-enable"])
@pytest.mark.parametrize("synchronizing", [True, False], ids=["sync", "nonsync"])
def test_append_message_as_literal8(stack, user, client, utf8: bool, synchronizing: bool) -> None:
    """APPEND's message as ~{n} or ~{n+}, with or without UTF8=ACCEPT: stored byte for byte."""
    if utf8:
        enabled(client, b"UTF8=ACCEPT")
    plus = b"" if synchronizing else b"+"
    client.send(b"a APPEND INBOX ~{%d%s}\r\n" % (len(BINARY_MESSAGE), plus))
    if synchronizing:
        client.continuation()
    client.send(BINARY_MESSAGE + b"\r\n")
    lines = client.until("a")
    assert appended(stack.mail_store(), user, "INBOX", lines) == BINARY_MESSAGE


@pytest.mark.parametrize(
    "command",
    [
        b"SELECT ~{5+}\r\nINBOX",
        b"STATUS ~{5+}\r\nINBOX (MESSAGES)",
        b"CREATE ~{3+}\r\nabc",
        b"SELECT INBOX\r\na2 SEARCH SUBJECT ~{3+}\r\nabc",
    ],
)
def test_literal8_is_refused_where_only_a_string_may_be(stack, client, command: bytes) -> None:
    enabled(client, b"UTF8=ACCEPT")
    tag = "a2" if b"\r\na2 " in command else "a"
    lines = client.command("a", command)
    if tag == "a2":
        lines = client.until("a2")
    assert lines[-1].startswith(tag.encode() + b" BAD"), lines
    assert b"literal8" in lines[-1]
    client.ok("b", b"NOOP")


# -- mailbox names in UTF-8 (RFC 6855 3) -----------------------------------------------------------


def test_mailbox_names_are_utf8_once_enabled(stack, user, client) -> None:
    enabled(client, b"UTF8=ACCEPT")
    client.ok("a", 'CREATE "Entwürfe/Grüße"'.encode())
    listing = client.ok("b", b'LIST "" "Entw*"')
    assert listing[:2] == [
        '* LIST (\\HasChildren) "/" "Entwürfe"\r\n'.encode(),
        '* LIST (\\HasNoChildren) "/" "Entwürfe/Grüße"\r\n'.encode(),
    ]
    assert '* LSUB (\\Subscribed) "/" "Entwürfe/Grüße"\r\n'.encode() in client.ok("c", b'LSUB "" "*"')
    client.ok("d", 'RENAME "Entwürfe/Grüße" "Entwürfe/Привет"'.encode())
    status = client.ok("e", 'STATUS "Entwürfe/Привет" (MESSAGES UIDNEXT)'.encode())
    assert status[0] == '* STATUS "Entwürfe/Привет" (MESSAGES 0 UIDNEXT 1)\r\n'.encode()
    client.send('f APPEND "Entwürfe/Привет" UTF8 (~{%d+}\r\n'.encode() % len(UTF8_MESSAGE))
    client.send(UTF8_MESSAGE + b")\r\n")
    assert client.until("f")[-1].startswith(b"f OK")
    assert b"* 1 EXISTS\r\n" in client.ok("g", 'SELECT "Entwürfe/Привет"'.encode())
    client.ok("h", b"UNSELECT")
    # Modified UTF-7 is no longer decoded: "&AOQ-" is a name of five characters now.
    client.ok("i", b'CREATE "&AOQ-"')
    assert stack.mail_store().get_mailbox(user, "&AOQ-") is not None

    # A client that did not enable UTF8=ACCEPT sees the same names in modified UTF-7.
    other = login(stack.imap_port, user, PASSWORD)
    try:
        names = b"".join(other.ok("a", b'LIST "" "*"'))
        assert b'"/" Entw&APw-rfe/&BB8EQAQ4BDIENQRC-\r\n' in names
        assert b'"/" &-AOQ-\r\n' in names
        assert re.search(rb"[\x80-\xff]", names) is None
    finally:
        other.close()


@pytest.mark.parametrize("name", ["bad\u0085name", "bad\u2028name", "bad\x7fname", "bad\x01name"])
def test_names_with_control_characters_are_refused(stack, user, client, name: str) -> None:
    """RFC 6855 3: no C0 or C1 control, DEL, line or paragraph separator in a mailbox name."""
    enabled(client, b"UTF8=ACCEPT")
    lines = client.command("a", b'CREATE "%s"' % name.encode())
    assert lines[-1].startswith(b"a NO [CANNOT]"), lines
    lines = client.command("b", b'RENAME Drafts "%s"' % name.encode())
    assert lines[-1].startswith(b"b NO [CANNOT]"), lines
    assert stack.mail_store().get_mailbox(user, name) is None


# -- SEARCH (RFC 6855 3) ---------------------------------------------------------------------------


def test_search_charset_after_enable(stack, user, client) -> None:
    store = stack.mail_store()
    store.append(user, "INBOX", UTF8_MESSAGE)
    store.append(user, "INBOX", b"Subject: plain\r\n\r\nbody\r\n")
    # Before ENABLE: an unknown charset is NO [BADCHARSET], as RFC 9051 says.
    client.ok("a", b"SELECT INBOX")
    lines = client.command("b", b"SEARCH CHARSET ISO-8859-1 SUBJECT hello")
    assert lines[-1].startswith(b"b NO [BADCHARSET"), lines
    client.ok("c", b"UNSELECT")

    enabled(client, b"UTF8=ACCEPT")
    client.ok("d", b"SELECT INBOX")
    # A charset other than UTF-8 contradicts the UTF-8 the client said it sends: BAD.
    for tag, charset in (("e", b"ISO-8859-1"), ("f", b"KOI8-R")):
        lines = client.command(tag, b"SEARCH CHARSET " + charset + b" SUBJECT hello")
        assert lines[-1].startswith(tag.encode() + b" BAD"), lines
    # UTF-8 strings without CHARSET, quoted or as a literal; CHARSET UTF-8 is no contradiction.
    assert client.ok("g", 'SEARCH SUBJECT "Säying"'.encode())[0] == b"* SEARCH 1\r\n"
    client.send(b"h UID SEARCH FROM {5+}\r\n" + "Jöhn".encode() + b"\r\n")
    assert client.until("h")[0] == b"* SEARCH 1\r\n"
    assert client.ok("i", 'SEARCH CHARSET UTF-8 SUBJECT "Säying"'.encode())[0] == b"* SEARCH 1\r\n"
    assert client.ok("j", b"SEARCH CHARSET US-ASCII SUBJECT plain")[0] == b"* SEARCH 2\r\n"
