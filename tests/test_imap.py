"""The IMAP gateway with Python's imaplib (a real client), on the dev stack's store."""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import ssl

import pytest
from conftest import PASSWORD, wait_for_inbox

MESSAGE = (
    b"From: Alice <alice@remote.test>\r\nTo: bob@example.test\r\nSubject: hello imap\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@remote.test>\r\n\r\nHi Bob.\r\n"
)


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


def connect(stack, port: int | None = None) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", port or stack.imap_port, timeout=30)


def login(stack, user: str) -> imaplib.IMAP4:
    client = connect(stack)
    client.login(user, PASSWORD)
    return client


def ok(result: tuple) -> list:
    status, data = result
    assert status == "OK", data
    return data


def test_greeting_and_capabilities(stack) -> None:
    client = connect(stack)
    caps = set(client.capabilities)
    expected = (
        "IMAP4REV1 IMAP4REV2 STARTTLS AUTH=PLAIN AUTH=LOGIN SASL-IR IDLE UIDPLUS MOVE SPECIAL-USE NAMESPACE"
        " ENABLE ID UNSELECT LITERAL+ CHILDREN CONDSTORE QRESYNC ESEARCH STATUS=SIZE APPENDLIMIT=41943040"
    )
    for cap in expected.split():
        assert cap in caps, cap
    client.logout()


def test_login_failures_and_throttling(stack, user) -> None:
    imap = stack.build_imap()
    stack.loop.run(imap.start())
    try:
        for _ in range(5):
            client = connect(stack, imap.port)
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                client.login(user, "wrong")
            client.logout()
        client = connect(stack, imap.port)
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            client.login(user, PASSWORD)
    finally:
        stack.loop.run(imap.stop())


def test_logindisabled_until_starttls(stack, user) -> None:
    imap = stack.build_imap(plaintext_loopback=False)
    stack.loop.run(imap.start())
    try:
        client = connect(stack, imap.port)
        assert "LOGINDISABLED" in client.capabilities and "AUTH=PLAIN" not in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            client.login(user, PASSWORD)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.starttls(context)
        assert "AUTH=PLAIN" in client.capabilities
        ok(client.login(user, PASSWORD))
        client.logout()
    finally:
        stack.loop.run(imap.stop())


def test_authenticate_plain(stack, user) -> None:
    client = connect(stack)
    ok(client.authenticate("PLAIN", lambda _: f"\0{user}\0{PASSWORD}".encode()))
    ok(client.select("INBOX"))
    client.logout()


def test_list_create_rename_delete_subscribe(stack, user) -> None:
    client = login(stack, user)
    listing = ok(client.list())
    assert b'(\\HasNoChildren \\Sent) "/" Sent' in listing
    assert any(line.endswith(b'"/" INBOX') for line in listing)
    ok(client.create("Projects/2026"))
    listing = b"\n".join(ok(client.list('""', "Projects*")))
    assert b'(\\HasChildren) "/" Projects' in listing and b'(\\HasNoChildren) "/" Projects/2026' in listing
    ok(client.rename("Projects", "Work"))
    assert b"Work/2026" in b"\n".join(ok(client.list('""', "*")))
    ok(client.unsubscribe("Work/2026"))
    lsub = b"\n".join(ok(client.lsub()))
    assert b"Work/2026" not in lsub and b"INBOX" in lsub
    status, _ = client.delete("Work")
    assert status == "NO"
    ok(client.delete("Work/2026"))
    ok(client.delete("Work"))
    status, data = client.select("Work")
    assert status == "NO" and b"NONEXISTENT" in data[0]
    ok(client.create("R&AOk-unions"))  # "Réunions" in modified UTF-7
    assert b"R&AOk-unions" in b"\n".join(ok(client.list()))
    client.logout()


def test_select_append_fetch_store(stack, user) -> None:
    client = login(stack, user)
    typ, data = client.append(
        "INBOX", r"(\Flagged $label1)", imaplib.Time2Internaldate(1_700_000_000), MESSAGE
    )
    assert typ == "OK" and re.search(rb"APPENDUID \d+ 1", data[0])
    ok(client.select("INBOX"))
    assert client.untagged_responses.get("EXISTS") == [b"1"]
    permanent = client.untagged_responses["OK"]
    assert any(b"PERMANENTFLAGS" in line and b"\\*" in line for line in permanent)
    data = ok(client.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE UID)"))
    assert b"FLAGS ($label1 \\Flagged \\Recent)" in data[0]  # the first session to select it
    assert b'INTERNALDATE "14-Nov-2023 22:13:20 +0000"' in data[0]
    assert b"RFC822.SIZE %d" % len(MESSAGE) in data[0]
    assert b'"hello imap"' in data[0] and b"UID 1" in data[0]
    peek = ok(client.fetch("1", "(BODY.PEEK[])"))
    assert peek[0][1] == MESSAGE
    assert b"\\Seen" not in ok(client.fetch("1", "(FLAGS)"))[0]
    body = ok(client.fetch("1", "(BODY[TEXT])"))
    assert body[0][1] == b"Hi Bob.\r\n"
    assert b"\\Seen" in ok(client.fetch("1", "(FLAGS)"))[0]
    assert b"$label2" in ok(client.store("1", "+FLAGS", "($label2 NonJunk)"))[0]
    ok(client.store("1", "-FLAGS.SILENT", r"(\Flagged)"))
    flags = ok(client.fetch("1", "(FLAGS)"))[0]
    assert b"\\Flagged" not in flags and b"NonJunk" in flags and b"$label1" in flags
    client.logout()


def test_copy_move_expunge(stack, user) -> None:
    client = login(stack, user)
    for _ in range(3):
        ok(client.append("INBOX", None, None, MESSAGE))
    ok(client.select("INBOX"))
    typ, _ = client.uid("COPY", "1:2", "Archive")
    assert typ == "OK" and re.fullmatch(rb"\d+ 1:2 1:2", client.untagged_responses["COPYUID"][-1])
    typ, _ = client.uid("MOVE", "3", "Trash")
    assert typ == "OK" and re.fullmatch(rb"\d+ 3 1", client.untagged_responses["COPYUID"][-1])
    assert client.response("EXPUNGE") == ("EXPUNGE", [b"3"])  # response() also clears it
    ok(client.store("1", "+FLAGS", r"(\Deleted)"))
    data = ok(client.expunge())
    assert data == [b"1"]
    assert ok(client.search(None, "ALL")) == [b"1"]
    ok(client.select("Archive", readonly=True))
    assert ok(client.search(None, "ALL")) == [b"1 2"]
    typ, _ = client.store("1", "+FLAGS", r"(\Deleted)")
    assert typ == "NO"
    client.logout()


def test_search(stack, user) -> None:
    client = login(stack, user)
    ok(client.append("INBOX", r"(\Seen)", None, MESSAGE))
    ok(client.append("INBOX", None, None, MESSAGE.replace(b"hello imap", b"other subject")))
    ok(client.select("INBOX"))
    assert ok(client.search(None, "UNSEEN")) == [b"2"]
    assert ok(client.search(None, "SUBJECT", '"hello"')) == [b"1"]
    assert ok(client.search(None, "FROM", "alice")) == [b"1 2"]
    assert ok(client.search(None, "NOT", "SEEN", "LARGER", "10")) == [b"2"]
    assert ok(client.uid("SEARCH", "UID", "2:*")) == [b"2"]
    typ, _ = client.search(None, "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK" and re.search(rb"MIN 1 MAX 2 COUNT 2", client.untagged_responses["ESEARCH"][-1])
    typ, data = client.search("KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    client.logout()


def test_status(stack, user) -> None:
    client = login(stack, user)
    ok(client.append("Drafts", r"(\Draft)", None, MESSAGE))
    data = ok(client.status("Drafts", "(MESSAGES UNSEEN UIDNEXT SIZE HIGHESTMODSEQ)"))
    assert re.search(rb"MESSAGES 1 UNSEEN 1 UIDNEXT 2 SIZE %d HIGHESTMODSEQ \d+" % len(MESSAGE), data[0])
    client.logout()


def test_two_sessions_stay_consistent(stack, user) -> None:
    first, second = login(stack, user), login(stack, user)
    ok(first.append("INBOX", None, None, MESSAGE))
    ok(first.select("INBOX"))
    ok(second.select("INBOX"))
    ok(second.append("INBOX", None, None, MESSAGE))
    ok(first.noop())
    assert first.untagged_responses["EXISTS"][-1] == b"2"
    ok(second.store("1", "+FLAGS", r"(\Answered)"))
    ok(first.noop())
    assert any(b"\\Answered" in line for line in first.untagged_responses.get("FETCH", []))
    ok(second.store("1", "+FLAGS", r"(\Deleted)"))
    ok(second.expunge())
    ok(first.noop())
    assert first.untagged_responses.get("EXPUNGE") == [b"1"]
    assert ok(first.search(None, "ALL")) == [b"1"]
    first.logout()
    second.logout()


def test_idle_sees_new_mail_from_the_pipeline(stack, user) -> None:
    with socket.create_connection(("127.0.0.1", stack.imap_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f'a LOGIN {user} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while not reader.readline().startswith(b"b OK"):
            pass
        sock.sendall(b"c IDLE\r\n")
        assert reader.readline().startswith(b"+ ")
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
            smtp.sendmail("alice@remote.test", [user], MESSAGE)
        assert reader.readline() == b"* 1 EXISTS\r\n"
        assert reader.readline() == b"* 1 RECENT\r\n"  # the one session to see it
        sock.sendall(b"DONE\r\n")
        assert reader.readline().startswith(b"c OK")


def test_condstore_and_qresync(stack, user) -> None:
    client = login(stack, user)
    for _ in range(2):
        ok(client.append("INBOX", None, None, MESSAGE))
    ok(client._simple_command("ENABLE", "QRESYNC"))
    ok(client.select("INBOX"))
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(client.untagged_responses["OK"])).group(1))
    uidvalidity = int(client.untagged_responses["UIDVALIDITY"][0])
    data = ok(client.fetch("1:*", "(MODSEQ)"))
    assert all(b"MODSEQ (" in line for line in data)
    # Message 1 has MODSEQ highest-1, message 2 highest: only message 1 is unchanged since highest-1.
    typ, data = client._simple_command(
        "STORE", "1:2", f"(UNCHANGEDSINCE {highest - 1})", "+FLAGS", r"(\Seen)"
    )
    assert typ == "OK" and b"[MODIFIED 2]" in data[-1]
    ok(client.store("2", "+FLAGS", r"(\Deleted)"))
    ok(client.expunge())
    ok(client.close())
    typ, _ = client._simple_command("SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {highest}))")
    assert typ == "OK"
    assert client.untagged_responses["VANISHED"][-1] == b"(EARLIER) 2"
    client.logout()


def test_vanished_earlier_names_only_expunges_since_the_modseq_and_in_the_set(stack, user) -> None:
    store = stack.mail_store()
    for _ in range(5):
        store.append(user, "INBOX", MESSAGE)
    store.expunge(user, "INBOX", [1])  # before the client's MODSEQ: not to be reported
    since = store.get_mailbox(user, "INBOX").highestmodseq
    store.expunge(user, "INBOX", [2, 4])
    uidvalidity = store.get_mailbox(user, "INBOX").uidvalidity
    client = login(stack, user)
    ok(client._simple_command("ENABLE", "QRESYNC"))
    # SELECT with QRESYNC and the UIDs the client knows (RFC 7162 3.2.5): 4 is outside them.
    ok(client._simple_command("SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {since} 1:3))"))
    assert client.untagged_responses["VANISHED"][-1] == b"(EARLIER) 2"
    client.state = "SELECTED"  # imaplib does not follow a SELECT sent as a raw command
    # UID FETCH ... (CHANGEDSINCE m VANISHED): the same, within the UID set asked for.
    typ, _ = client._simple_command("UID", "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {since} VANISHED)")
    assert typ == "OK"
    assert client.untagged_responses["VANISHED"][-1] == b"(EARLIER) 2,4"
    client.logout()


def test_bad_commands_do_not_end_the_session(stack, user) -> None:
    with socket.create_connection(("127.0.0.1", stack.imap_port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for line, reply in [
            (b"a1 FROB\r\n", b"a1 BAD"),
            (b"a2 SELECT INBOX\r\n", b"a2 BAD"),
            (b"no-command\r\n", b"no-command BAD"),
            (f"a3 LOGIN {{{len(user)}+}}\r\n{user} {PASSWORD!r}\r\n".replace("'", '"').encode(), b"a3 OK"),
            (b"a4 FETCH 1 (FLAGS)\r\n", b"a4 BAD"),
            (b"a5 APPEND INBOX {99999999999}\r\n", b"a5 NO [TOOBIG]"),
            (b"a6 NOOP\r\n", b"a6 OK"),
        ]:
            sock.sendall(line)
            answer = reader.readline()
            while answer.startswith(b"* ") and not reply.startswith(b"*"):
                answer = reader.readline()
            assert answer.startswith(reply), (line, answer)


def test_users_cannot_see_each_other(stack, user, new_user) -> None:
    other = new_user()
    mine = login(stack, user)
    ok(mine.append("INBOX", None, None, MESSAGE))
    theirs = login(stack, other)
    ok(theirs.select("INBOX"))
    assert theirs.untagged_responses.get("EXISTS") == [b"0"]
    status, _ = theirs.select(f"../{user}/INBOX")
    assert status == "NO"
    mine.logout()
    theirs.logout()


def test_delivered_mail_is_fetched_byte_exact(stack, user) -> None:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.sendmail("alice@remote.test", [user], MESSAGE)
    [stored] = wait_for_inbox(stack, user, 1)
    client = login(stack, user)
    ok(client.select("INBOX"))
    body = ok(client.fetch("1", "(BODY.PEEK[])"))[0][1]
    assert body == stack.mail_store().read_body(stored) and body.endswith(MESSAGE)
    client.logout()


def test_quota_reports_usage(stack, user) -> None:
    client = login(stack, user)
    ok(client.append("INBOX", None, None, MESSAGE))
    ok(client.append("Archive", None, None, MESSAGE * 20))
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK"
    used = -(-(len(MESSAGE) * 21) // 1024)
    assert data == [[b'INBOX ""'], [b'"" (STORAGE %d 10485760)' % used]]
    assert client.getquota('""')[1] == [b'"" (STORAGE %d 10485760)' % used]
    typ, data = client.setquota('""', "(STORAGE 1)")
    assert typ == "NO" and b"NOPERM" in data[0]
    client.logout()
