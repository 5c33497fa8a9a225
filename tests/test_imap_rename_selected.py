"""RENAME of a selected mailbox, against Dovecot as the reference (tests/dovecot.py).

RFC 9051 6.3.6 says nothing of a selected mailbox being renamed. Dovecot (2.3) answers the RENAME
OK, and every session that had the mailbox (or one under a renamed parent) selected, the renaming
one included, gets BYE at its next command ("IMAP session state is inconsistent, please relogin").
mailpipe does the same: the renaming session learns first that its RENAME succeeded. LOGOUT is
still answered as LOGOUT.
"""

from __future__ import annotations

import socket

from conftest import PASSWORD
from dovecot import Dovecot, require_dovecot


class Line:
    """A plain IMAP connection: each command's responses, reduced to their kind."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        assert self.run(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))[-1] == "OK"

    def run(self, command: bytes) -> list[str]:
        """'OK', 'NO' or 'BAD' for the tagged answer, 'BYE' for an untagged BYE, 'closed' at EOF."""
        self.sock.sendall(b"t " + command + b"\r\n")
        kinds = []
        while True:
            line = self.file.readline()
            if not line:
                return [*kinds, "closed"]
            if line.startswith(b"* BYE"):
                kinds.append("BYE")
            elif line.startswith(b"t "):
                return [*kinds, line.split()[1].decode()]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def script(port: int, user: str, password: str) -> dict[str, list[str]]:
    """The same steps on any server; what each command was answered."""
    steps: dict[str, list[str]] = {}
    renamer, other, child, logout = (Line(port, user, password) for _ in range(4))
    steps["create"] = renamer.run(b"CREATE Box") + renamer.run(b"CREATE Box/Sub")
    steps["select"] = renamer.run(b"SELECT Box") + other.run(b"SELECT Box") + child.run(b"SELECT Box/Sub")
    steps["rename"] = renamer.run(b"RENAME Box Moved")
    steps["renamer's next"] = renamer.run(b"NOOP")
    steps["other's next"] = other.run(b"NOOP")
    steps["child's next"] = child.run(b"NOOP")
    steps["select again"] = logout.run(b"SELECT Moved/Sub")
    steps["rename a parent"] = logout.run(b"RENAME Moved Again")
    steps["then logout"] = logout.run(b"LOGOUT")
    for line in (renamer, other, child, logout):
        line.close()
    return steps


def test_rename_of_the_selected_mailbox_as_dovecot_does(stack, new_user) -> None:
    require_dovecot()
    with Dovecot({"rename@dovecot.test": "secret"}) as dovecot:
        theirs = script(dovecot.port, "rename@dovecot.test", "secret")
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    ours = script(stack.imap_port, owner, PASSWORD)
    assert theirs == {
        "create": ["OK", "OK"],
        "select": ["OK", "OK", "OK"],
        "rename": ["OK"],
        "renamer's next": ["BYE", "closed"],
        "other's next": ["BYE", "closed"],
        "child's next": ["BYE", "closed"],
        "select again": ["OK"],
        "rename a parent": ["OK"],
        "then logout": ["BYE", "OK"],
    }
    assert ours == theirs
