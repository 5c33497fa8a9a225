"""DELETE of a selected mailbox, against Dovecot as the reference (tests/dovecot.py).

RFC 9051 6.3.5 says nothing of a selected mailbox being deleted. Dovecot (2.3) answers the
DELETE OK and then, unasked, says BYE ("Selected mailbox was deleted, have to disconnect") and
closes the connection; every other session that had the mailbox selected gets BYE at its next
command. mailpipe does the same: the deleting session learns first that its DELETE succeeded.
Deleting a mailbox other than the selected one leaves the session as it was.
(tests/test_imap_rename_selected.py does the same for RENAME.)
"""

from __future__ import annotations

from conftest import PASSWORD
from dovecot import Dovecot, require_dovecot
from test_imap_rename_selected import Line


def rest(line: Line) -> list[str]:
    """What the server says unasked after a command's tagged answer, up to the end of the stream."""
    kinds = []
    while True:
        said = line.file.readline()
        if not said:
            return [*kinds, "closed"]
        kinds.append("BYE" if said.startswith(b"* BYE") else said.split()[1].decode())


def script(port: int, user: str, password: str) -> dict[str, list[str]]:
    """The same steps on any server; what each command was answered."""
    steps: dict[str, list[str]] = {}
    deleter, other, bystander = (Line(port, user, password) for _ in range(3))
    steps["create"] = (
        deleter.run(b"CREATE Box") + bystander.run(b"CREATE Kept") + bystander.run(b"CREATE Gone")
    )
    steps["select"] = deleter.run(b"SELECT Box") + other.run(b"SELECT Box") + bystander.run(b"SELECT Kept")
    steps["delete another"] = bystander.run(b"DELETE Gone")
    steps["bystander's next"] = bystander.run(b"NOOP")
    steps["delete"] = deleter.run(b"DELETE Box")
    steps["then, unasked"] = rest(deleter)
    steps["other's next"] = other.run(b"NOOP")
    steps["bystander's logout"] = bystander.run(b"LOGOUT")
    for line in (deleter, other, bystander):
        line.close()
    return steps


def test_delete_of_the_selected_mailbox_as_dovecot_does(stack, new_user) -> None:
    require_dovecot()
    with Dovecot({"delete@dovecot.test": "secret"}) as dovecot:
        theirs = script(dovecot.port, "delete@dovecot.test", "secret")
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    ours = script(stack.imap_port, owner, PASSWORD)
    assert theirs == {
        "create": ["OK", "OK", "OK"],
        "select": ["OK", "OK", "OK"],
        "delete another": ["OK"],
        "bystander's next": ["OK"],
        "delete": ["OK"],
        "then, unasked": ["BYE", "closed"],
        "other's next": ["BYE", "closed"],
        "bystander's logout": ["BYE", "OK"],
    }
    assert ours == theirs
