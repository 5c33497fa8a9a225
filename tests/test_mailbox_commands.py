"""`mailpipe mailbox list|show|purge` against the dev stack's store."""

from __future__ import annotations

from conftest import DOMAIN
from test_cli import mailpipe

FIRST = b"From: Ann <ann@example.test>\r\nSubject: first\r\nX-Odd: \xe9t\xe9\r\n\r\nhello\r\n"
SECOND = b"From: ann@example.test\nSubject: second\n\nbare LF body\n"


def test_list_counts_and_sizes_per_mailbox(stack, owner: str) -> None:
    store = stack.mail_store()
    store.append(owner, "INBOX", FIRST, flags=["\\Seen"])
    store.append(owner, "INBOX", SECOND)
    store.append(owner, "Archive", SECOND)
    listed = mailpipe(stack, "mailbox", "list", owner.upper())
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["INBOX", "2", "messages", "1", "unseen", str(len(FIRST + SECOND)), "B"]
    assert "Archive 1 messages 1 unseen" in " ".join(lines[1].split())
    assert lines[-1] == f"{owner}: 6 mailboxes, 3 messages, {len(FIRST) + 2 * len(SECOND)} B"

    messages = mailpipe(stack, "mailbox", "list", owner, "INBOX")
    assert messages.returncode == 0, messages.stderr
    rows = messages.stdout.splitlines()
    assert rows[0].split()[:2] == ["1", str(len(FIRST))] and rows[0].endswith("first")
    assert "\\Seen" in rows[0] and rows[1].endswith("second")
    assert rows[-1].startswith(f"{owner} INBOX: 2 messages, UIDVALIDITY ")

    missing = mailpipe(stack, "mailbox", "list", owner, "Nope")
    assert (missing.returncode, missing.stderr) == (1, f"mailpipe: no mailbox 'Nope' for {owner}\n")


def test_show_prints_the_header_as_stored(stack, owner: str) -> None:
    stack.mail_store().append(owner, "INBOX", FIRST, flags=["\\Flagged"])
    shown = mailpipe(stack, "mailbox", "show", owner, "1")
    assert shown.returncode == 0, shown.stderr
    assert "flags         \\Flagged" in shown.stdout
    assert f"size          {len(FIRST)} octets" in shown.stdout
    assert "structure     text/plain" in shown.stdout
    # (text mode reads the CRLFs as newlines)
    assert shown.stdout.endswith("\n\nFrom: Ann <ann@example.test>\nSubject: first\nX-Odd: \ufffdt\ufffd\n\n")
    absent = mailpipe(stack, "mailbox", "show", owner, "99")
    assert (absent.returncode, absent.stderr) == (1, f"mailpipe: no message with UID 99 in {owner} INBOX\n")
    not_a_uid = mailpipe(stack, "mailbox", "show", owner, "one")
    assert not_a_uid.returncode == 2


def test_purge_asks_unless_yes_and_keeps_the_mailbox(stack, owner: str) -> None:
    store = stack.mail_store()
    for _ in range(3):
        store.append(owner, "Junk", SECOND)
    store.append(owner, "INBOX", FIRST)
    refused = mailpipe(stack, "mailbox", "purge", owner, "Junk")  # no terminal, no --yes
    assert refused.returncode == 1
    assert (
        refused.stderr
        == f"mailpipe: delete all 3 messages of {owner} Junk: say --yes (standard input is not a terminal)\n"
    )
    assert len(store.list_messages(owner, "Junk")[1]) == 3

    purged = mailpipe(stack, "mailbox", "purge", owner, "Junk", "--yes")
    assert (purged.returncode, purged.stdout) == (0, f"purged 3 messages from {owner} Junk\n")
    mailbox, left = store.list_messages(owner, "Junk")
    assert left == [] and mailbox.uidnext == 4  # the mailbox stays, its UIDs are not reused
    assert len(store.list_messages(owner, "INBOX")[1]) == 1


def test_postmaster_mailbox_without_a_user_is_listed(stack) -> None:
    postmaster = f"postmaster@{DOMAIN}"
    stack.mail_store().ensure_mailboxes(postmaster)
    listed = mailpipe(stack, "mailbox", "list", postmaster)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1].startswith(f"{postmaster}: 6 mailboxes")
