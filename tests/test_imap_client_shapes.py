"""The command shapes of clients that cannot run here, replayed over a socket (docs/clients.md).

Apple Mail and iOS Mail, Outlook, Gmail's app, Thunderbird for Android (K-9), Evolution and
Roundcube: each test is one session as that client opens it, with the commands in the form it
sends them (its source, or server logs in public issue trackers; docs/clients.md says which).
Each command must complete OK, and what it changes is checked in the mail store.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from conftest import PASSWORD
from raw_imap import Client

from mailpipe.store import MailStore

PLAIN = (
    b"From: Alice <alice@remote.test>\r\nTo: someone@example.test\r\nSubject: plain one\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <plain@remote.test>\r\n\r\nHello.\r\n"
)
SECOND = PLAIN.replace(b"plain one", b"second one").replace(b"<plain@", b"<second@")
MULTIPART = (
    b"From: Bob <bob@remote.test>\r\nTo: someone@example.test\r\nSubject: with a file\r\n"
    b"Date: Fri, 27 Nov 2026 11:00:00 +0000\r\nMessage-ID: <multi@remote.test>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the file.\r\n"
    b"--b1\r\nContent-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAw==\r\n--b1--\r\n"
)
OUTGOING = b"From: someone@example.test\r\nTo: friend@remote.test\r\nSubject: sent copy\r\n\r\nSent.\r\n"


@dataclass
class Account:
    user: str
    store: MailStore
    uids: list[int]  # PLAIN, SECOND, MULTIPART in INBOX

    def flags(self, mailbox: str) -> dict[int, set[str]]:
        return {m.uid: set(m.flags) for m in self.store.list_messages(self.user, mailbox)[1]}

    def bodies(self, mailbox: str) -> list[bytes]:
        return [self.store.read_body(m) for m in self.store.list_messages(self.user, mailbox)[1]]


@pytest.fixture
def account(stack, new_user) -> Account:
    user = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(user)
    uids = [store.append(user, "INBOX", raw)[1] for raw in (PLAIN, SECOND, MULTIPART)]
    return Account(user, store, uids)


@pytest.fixture
def connect(stack) -> Iterator[Callable[[], Client]]:
    opened: list[Client] = []

    def make() -> Client:
        client = Client(stack.imap_port)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def plain_ir(user: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{PASSWORD}".encode())


def untagged(lines: list[bytes], prefix: bytes) -> list[bytes]:
    return [line for line in lines if line.startswith(prefix)]


def append(
    client: Client, tag: str, head: bytes, message: bytes, *, synchronizing: bool = True
) -> list[bytes]:
    """APPEND with the message as a literal, waiting for ``+`` when it is synchronizing."""
    plus = b"" if synchronizing else b"+"
    client.send(tag.encode() + b" " + head + b" {%d%s}\r\n" % (len(message), plus))
    if synchronizing:
        client.continuation()
    client.send(message + b"\r\n")
    lines = client.until(tag)
    assert lines[-1].startswith(f"{tag} OK".encode()), lines
    return lines


def test_apple_mail_and_ios(account: Account, connect) -> None:
    client = connect()
    ids = client.ok(
        "A1", b'ID ("name" "iPhone Mail" "version" "22G100" "os" "iOS" "os-version" "18.6.2 (22G100)")'
    )
    assert untagged(ids, b"* ID (")
    client.ok("A2", b"AUTHENTICATE PLAIN " + plain_ir(account.user))
    # iOS pipelines these two in one packet.
    client.send(b'A3 NAMESPACE\r\nA4 LIST "" "*" RETURN (SPECIAL-USE)\r\n')
    assert client.until("A3")[-1].startswith(b"A3 OK")
    listing = client.until("A4")
    assert listing[-1].startswith(b"A4 OK") and any(b"\\Sent" in line for line in listing)
    client.ok("A5", b'STATUS "INBOX" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)')
    assert untagged(client.ok("A6", b'SELECT "INBOX" (CONDSTORE)'), b"* OK [HIGHESTMODSEQ ")
    assert len(untagged(client.ok("A7", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)"), b"* ")) == 3
    headers = client.ok(
        "A8",
        b"UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE "
        b"BODY.PEEK[HEADER.FIELDS (DATE SUBJECT FROM TO CC MESSAGE-ID REFERENCES IN-REPLY-TO)])",
    )
    assert sum(b"Subject: " in line for line in headers) == 3
    # iOS 18 sends DONE and the next command in one packet.
    client.send(b"A9 IDLE\r\n")
    client.continuation()
    client.send(b"DONE\r\nA10 UID STORE %d +FLAGS.SILENT (\\Seen)\r\n" % account.uids[0])
    assert client.until("A9")[-1].startswith(b"A9 OK")
    assert client.until("A10")[-1].startswith(b"A10 OK")
    # Apple Mail sends a line end before some commands.
    client.send(b'\r\nA11 UID MOVE %d "Trash"\r\n' % account.uids[1])
    assert client.until("A11")[-1].startswith(b"A11 OK")
    append(client, "A12", b'APPEND "Sent" (\\Seen) "05-Dec-2026 12:00:00 +0000"', OUTGOING)

    assert account.flags("INBOX")[account.uids[0]] == {"\\Seen"}
    assert account.uids[1] not in account.flags("INBOX") and account.bodies("Trash") == [SECOND]
    assert account.bodies("Sent") == [OUTGOING]


def test_outlook(account: Account, connect) -> None:
    client = connect()
    client.ok("o1", b"CAPABILITY")
    # AUTHENTICATE PLAIN without an initial response: the credentials after "+ ".
    client.send(b"o2 AUTHENTICATE PLAIN\r\n")
    client.continuation()
    client.send(plain_ir(account.user) + b"\r\n")
    assert client.until("o2")[-1].startswith(b"o2 OK")
    # The hierarchy delimiter, then everything.
    assert untagged(client.ok("o3", b'LIST "" ""'), b'* LIST (\\Noselect) "/" ""')
    client.ok("o4", b'LIST "" "*"')
    assert len(untagged(client.ok("o5", b'LSUB "" "*"'), b"* LSUB ")) >= 6
    client.ok("o6", b'SELECT "INBOX"')
    assert len(untagged(client.ok("o7", b"UID FETCH 1:* (UID FLAGS)"), b"* ")) == 3
    client.ok(
        "o8",
        b"UID FETCH %d (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
        b"Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])"
        % account.uids[0],
    )
    body = client.ok("o9", b"UID FETCH %d (UID RFC822.SIZE BODY.PEEK[])" % account.uids[0])
    assert PLAIN in body[0]
    client.ok("o10", b"UID STORE %d +FLAGS (\\Seen)" % account.uids[0])
    # Delete: copy to the trash, flag \Deleted, EXPUNGE.
    client.ok("o11", b'UID COPY %d "Trash"' % account.uids[1])
    client.ok("o12", b"UID STORE %d +FLAGS (\\Deleted)" % account.uids[1])
    assert untagged(client.ok("o13", b"EXPUNGE"), b"* 2 EXPUNGE")
    client.ok("o14", b'STATUS "Sent" (MESSAGES UNSEEN)')
    client.ok("o15", b"CHECK")
    client.ok("o16", b"NOOP")
    append(client, "o17", b'APPEND "Sent" (\\Seen) "05-Dec-2026 12:00:00 +0000"', OUTGOING)

    assert account.flags("INBOX") == {account.uids[0]: {"\\Seen"}, account.uids[2]: set()}
    assert account.bodies("Trash") == [SECOND] and account.bodies("Sent") == [OUTGOING]


def test_gmail_app(account: Account, connect) -> None:
    client = connect()
    client.ok("1", b'ID ("name" "com.google.android.gm" "os" "android" "os-version" "14" "vendor" "Google")')
    client.ok("2", b'LOGIN "%s" "%s"' % (account.user.encode(), PASSWORD.encode()))
    client.ok("3", b'LIST "" "*"')
    client.ok("4", b'SELECT "INBOX"')
    found = client.ok("5", b"UID SEARCH 1:* NOT DELETED")
    assert found[0] == b"* SEARCH %d %d %d\r\n" % tuple(account.uids)
    assert client.ok("6", b"UID SEARCH SINCE 01-Jan-2000 NOT DELETED")[0] == found[0]
    uids = b",".join(b"%d" % uid for uid in reversed(account.uids))
    client.ok(
        "7",
        b"UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE "
        b"BODY.PEEK[HEADER.FIELDS (date subject from content-type to cc message-id)])" % uids,
    )
    structure = client.ok("8", b"UID FETCH %d (UID BODYSTRUCTURE)" % account.uids[2])
    assert b'"MIXED"' in structure[0].upper()
    part = client.ok("9", b"UID FETCH %d (UID BODY.PEEK[1]<0.2048>)" % account.uids[2])
    assert b"See the file." in part[0]
    client.ok("10", b"UID FETCH %d (UID BODY.PEEK[TEXT]<0.2048>)" % account.uids[0])
    # Upper-case system flags, as the app writes them.
    client.ok("11", b"UID STORE %d +FLAGS.SILENT (\\DELETED)" % account.uids[1])
    client.ok("12", b"EXPUNGE")
    append(client, "13", b'APPEND "Sent" (\\SEEN)', OUTGOING)

    assert account.uids[1] not in account.flags("INBOX")
    assert list(account.flags("Sent").values()) == [{"\\Seen"}]
    assert all(flags == set() for flags in account.flags("INBOX").values())  # nothing read by PEEK


def test_thunderbird_android_k9(account: Account, connect) -> None:
    client = connect()
    client.ok("1", b"AUTHENTICATE PLAIN " + plain_ir(account.user))
    client.ok("2", b"CAPABILITY")
    client.ok("3", b"NAMESPACE")
    client.ok("4", b'LIST "" "*"')
    client.ok("5", b'STATUS "Drafts" (UIDVALIDITY)')
    client.ok("6", b'EXAMINE "INBOX"')
    assert client.ok("7", b"UID SEARCH *:*")[0] == b"* SEARCH %d\r\n" % account.uids[2]
    assert client.ok("8", b"SEARCH 1:* UNSEEN NOT DELETED")[0] == b"* SEARCH 1 2 3\r\n"
    client.ok("9", b'SELECT "INBOX"')
    client.ok("10", b"UID SEARCH 1:3 SINCE 01-Jan-2000 NOT DELETED")
    uids = b",".join(b"%d" % uid for uid in reversed(account.uids))
    fetched = client.ok(
        "11",
        b"UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (date subject from "
        b"content-type to cc bcc reply-to message-id references in-reply-to list-post list-unsubscribe "
        b"sender X-K9mail-Identity Chat-Version)] BODYSTRUCTURE BODY.PEEK[]<0.25600>)" % uids,
    )
    assert sum(b"BODY[]<0>" in line for line in fetched) == 3
    client.ok("12", b"UID FETCH %d (UID BODY.PEEK[TEXT]<0.25600>)" % account.uids[0])
    client.ok("13", b"UID FETCH %d (UID BODY.PEEK[2])" % account.uids[2])
    found = client.ok("14", b'UID SEARCH HEADER MESSAGE-ID "<second@remote.test>"')
    assert found[0] == b"* SEARCH %d\r\n" % account.uids[1]
    client.ok("15", b"UID STORE 1:* +FLAGS.SILENT (\\Seen)")
    client.ok("16", b'UID MOVE %d "Trash"' % account.uids[1])
    client.ok("17", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % account.uids[2])
    client.ok("18", b"UID EXPUNGE %d" % account.uids[2])
    client.send(b"19 IDLE\r\n")
    client.continuation()
    client.send(b"DONE\r\n")
    assert client.until("19")[-1].startswith(b"19 OK")
    client.ok("20", b'SELECT "Sent"')
    append(client, "21", b'APPEND "Sent" (\\Seen $Forwarded)', OUTGOING)

    assert account.flags("INBOX") == {account.uids[0]: {"\\Seen"}}
    assert account.bodies("Trash") == [SECOND]
    assert list(account.flags("Sent").values()) == [{"\\Seen", "$Forwarded"}]


def test_evolution(account: Account, connect) -> None:
    client = connect()
    client.ok("A00001", b"AUTHENTICATE PLAIN " + plain_ir(account.user))
    client.ok("A00002", b"ENABLE CONDSTORE QRESYNC")
    client.ok("A00003", b"ENABLE UTF8=ACCEPT")
    client.ok("A00004", b"NAMESPACE")
    listing = client.ok(
        "A00005",
        b'LIST "" "*" RETURN (CHILDREN SUBSCRIBED SPECIAL-USE '
        b"STATUS (MESSAGES UNSEEN UIDVALIDITY UIDNEXT HIGHESTMODSEQ))",
    )
    [status] = untagged(listing, b'* STATUS "INBOX" ') or untagged(listing, b"* STATUS INBOX ")
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", status).group(1))  # type: ignore[union-attr]
    client.ok("A00006", 'CREATE "Entwürfe-Archiv"'.encode())
    selected = client.ok("A00007", b"SELECT INBOX (QRESYNC (%d 1))" % uidvalidity)
    assert untagged(selected, b"* OK [HIGHESTMODSEQ ")
    client.ok("A00008", b"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 1 VANISHED)")
    header = client.ok("A00009", b"UID FETCH %d (UID FLAGS RFC822.SIZE RFC822.HEADER)" % account.uids[0])
    assert b"RFC822.HEADER" in header[0]
    assert PLAIN in client.ok("A00010", b"UID FETCH %d BODY.PEEK[]" % account.uids[0])[0]
    client.ok("A00011", b"UID STORE %d +FLAGS.SILENT (\\Seen)" % account.uids[2])
    client.ok("A00012", b"UID MOVE %d Trash" % account.uids[1])

    # RFC822.HEADER and BODY.PEEK[] do not set \Seen: only the STORE did.
    assert account.flags("INBOX") == {account.uids[0]: set(), account.uids[2]: {"\\Seen"}}
    assert account.bodies("Trash") == [SECOND]
    assert account.store.get_mailbox(account.user, "Entwürfe-Archiv") is not None


def test_roundcube(account: Account, connect) -> None:
    client = connect()
    client.ok("A0001", b'ID ("name" "Roundcube" "version" "1.6.9" "php" "8.2.7" "os" "Linux" "command" "/")')
    client.ok("A0002", b"AUTHENTICATE PLAIN " + plain_ir(account.user))
    client.ok("A0003", b"ENABLE QRESYNC")
    client.ok("A0004", b'LIST "" "*"')
    client.ok("A0005", b'LSUB "" "*"')
    client.ok("A0006", b'LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    client.ok("A0007", b'SELECT "INBOX"')
    found = client.ok("A0008", b"UID SEARCH RETURN (ALL) ALL UNDELETED")
    assert untagged(found, b'* ESEARCH (TAG "A0008") UID ALL ')
    counted = client.ok("A0009", b"SEARCH RETURN (COUNT) ALL UNSEEN")
    assert untagged(counted, b'* ESEARCH (TAG "A0009") COUNT 3')
    client.ok(
        "A0010",
        b"UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS "
        b"(DATE FROM TO SUBJECT CONTENT-TYPE CC REPLY-TO LIST-POST DISPOSITION-NOTIFICATION-TO X-PRIORITY)])",
    )
    client.ok("A0011", b"UID FETCH %d (BODY.PEEK[1.MIME] BODY.PEEK[2.MIME])" % account.uids[2])
    part = client.ok("A0012", b"UID FETCH %d (BODY.PEEK[2])" % account.uids[2])
    assert b"AAECAw==" in part[0]
    client.ok("A0013", b"UID FETCH %d (BODY.PEEK[HEADER])" % account.uids[0])
    client.ok("A0014", b'STATUS "Drafts" (MESSAGES UNSEEN)')
    client.ok("A0015", b'GETQUOTAROOT "INBOX"')
    client.ok("A0016", b"UID STORE %d +FLAGS.SILENT (\\Seen)" % account.uids[0])
    client.ok("A0017", b'UID MOVE %d "Trash"' % account.uids[1])
    append(client, "A0018", b'APPEND "Sent" (\\Seen)', OUTGOING, synchronizing=False)

    assert account.flags("INBOX") == {account.uids[0]: {"\\Seen"}, account.uids[2]: set()}
    assert account.bodies("Trash") == [SECOND] and account.bodies("Sent") == [OUTGOING]
