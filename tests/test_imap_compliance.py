"""Compliance defects a compliance tester found (issue 11), each against the real IMAP server."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from raw_imap import Client, login


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
