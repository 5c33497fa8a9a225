"""The autologout timer (RFC 9051 5.4): a client silent for the whole period gets BYE and the
connection closes; a partial command line does not count as speaking up. The timer is renewed at
each read of the client's bytes (session.py's next_event), against the real IMAP server."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from raw_imap import Client, login

from mailpipe_tools.local.stack import DevStack

SHORT = 0.5  # seconds: this test's autologout, instead of 30 minutes


@pytest.fixture
def short_autologout(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Read by each session at each read: sessions opened from now on see it.
    monkeypatch.setattr(stack.imap.context, "autologout", SHORT)


def bye_then_closed(client: Client) -> None:
    """The next line is the autologout BYE, after which the server closes the connection."""
    assert client.file.readline() == b"* BYE autologout: idle for too long\r\n"
    assert client.file.readline() == b""


def test_a_silent_client_is_logged_out_before_and_after_login(
    stack: DevStack, user: str, short_autologout: None
) -> None:
    stranger = Client(stack.imap_port)
    try:
        bye_then_closed(stranger)
    finally:
        stranger.close()
    client = login(stack.imap_port, user, PASSWORD)
    try:
        client.ok("s", b"SELECT INBOX")
        bye_then_closed(client)
    finally:
        client.close()


def test_half_a_command_line_does_not_keep_a_session_open(stack: DevStack, short_autologout: None) -> None:
    client = Client(stack.imap_port)
    try:
        client.send(b"a1 NOO")
        bye_then_closed(client)
    finally:
        client.close()
