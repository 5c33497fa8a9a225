"""The IMAP gateway through the third-party client library imapclient, which parses every response.

The same commands as test_imap.py (imaplib) exercises; here the assertions are on what imapclient
makes of our answers: Envelope and Address objects, BodyData, datetimes, SearchIds, flag tuples.
"""

from __future__ import annotations

import datetime
import smtplib
import ssl

import pytest
from conftest import PASSWORD, wait_for_inbox

imapclient = pytest.importorskip(
    "imapclient", reason="missing tool: imapclient (the test extra; make test installs it)"
)
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError  # noqa: E402
from imapclient.imapclient import ARCHIVE, DRAFTS, JUNK, SENT, TRASH  # noqa: E402
from imapclient.response_types import Address, Envelope  # noqa: E402

PLAIN = (
    b"From: Alice <alice@remote.test>\r\nTo: bob@example.test\r\nSubject: hello imapclient\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@remote.test>\r\n\r\nHi Bob.\r\n"
)

RICH = (
    b'From: "Alice Example" <alice@remote.test>\r\n'
    b"Sender: list@remote.test\r\n"
    b"Reply-To: replies@remote.test\r\n"
    b"To: Bob <bob@example.test>, carol@example.test\r\n"
    b'Cc: "Dave, Jr." <dave@remote.test>\r\n'
    b"Bcc: eve@remote.test\r\n"
    b"Subject: =?UTF-8?Q?R=C3=A9union_de_projet?=\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <rich-1@remote.test>\r\n"
    b"In-Reply-To: <parent@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Bonjour, la r\xc3\xa9union est \xc3\xa0 10h.\r\n"
    b"--b1\r\n"
    b'Content-Type: application/pdf; name="agenda.pdf"\r\n'
    b'Content-Disposition: attachment; filename="agenda.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--b1--\r\n"
)

THUNDERBIRD_KEYWORDS = ("$label1", "$label2", "$label3", "$label4", "$label5", "NonJunk", "$Junk")


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


def connect(stack, port: int | None = None) -> imapclient.IMAPClient:
    return imapclient.IMAPClient("127.0.0.1", port=port or stack.imap_port, ssl=False, timeout=30)


@pytest.fixture
def client(stack, user):
    """A logged-in imapclient session for `user`, logged out at the end."""
    session = connect(stack)
    session.login(user, PASSWORD)
    yield session
    try:
        session.logout()
    except (IMAPClientError, OSError):
        session.shutdown()


def test_login_and_capabilities(stack, user) -> None:
    session = connect(stack)
    assert session.welcome.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    before = set(session.capabilities())
    assert {b"STARTTLS", b"AUTH=PLAIN", b"AUTH=LOGIN", b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE"} <= before
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        session.login(user, "wrong password")
    assert session.login(user, PASSWORD).endswith(b"] Logged in")
    after = set(session.capabilities())
    assert not any(cap.startswith(b"AUTH=") for cap in after) and b"STARTTLS" not in after
    for cap in (b"IDLE", b"NAMESPACE", b"SPECIAL-USE", b"QRESYNC", b"ESEARCH", b"APPENDLIMIT=41943040"):
        assert session.has_capability(cap.decode()), cap
    session.logout()

    session = connect(stack)
    assert session.plain_login(user, PASSWORD).endswith(b"Logged in")
    session.logout()


def test_starttls_then_login(stack, user) -> None:
    imap = stack.build_imap(plaintext_loopback=False)
    stack.loop.run(imap.start())
    try:
        session = connect(stack, imap.port)
        assert b"LOGINDISABLED" in session.capabilities()
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        session.starttls(context)
        caps = session.capabilities()
        assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
        session.login(user, PASSWORD)
        assert session.select_folder("INBOX")[b"EXISTS"] == 0
        session.logout()
    finally:
        stack.loop.run(imap.stop())


def test_list_folders_xlist_and_special_folders(stack, client) -> None:
    assert client.list_folders() == [
        ((b"\\HasNoChildren",), b"/", "INBOX"),
        ((b"\\HasNoChildren", b"\\Archive"), b"/", "Archive"),
        ((b"\\HasNoChildren", b"\\Drafts"), b"/", "Drafts"),
        ((b"\\HasNoChildren", b"\\Junk"), b"/", "Junk"),
        ((b"\\HasNoChildren", b"\\Sent"), b"/", "Sent"),
        ((b"\\HasNoChildren", b"\\Trash"), b"/", "Trash"),
    ]
    # XLIST is Gmail's forerunner of SPECIAL-USE; we do not offer it, and imapclient checks first.
    with pytest.raises(CapabilityError, match="XLIST"):
        client.xlist_folders()
    special = {flag: client.find_special_folder(flag) for flag in (SENT, DRAFTS, TRASH, JUNK, ARCHIVE)}
    assert special == {SENT: "Sent", DRAFTS: "Drafts", TRASH: "Trash", JUNK: "Junk", ARCHIVE: "Archive"}
    # The attribute follows the mailbox through a rename, so a client finds it by use, not by name.
    client.rename_folder("Sent", "Gesendet")
    assert client.find_special_folder(SENT) == "Gesendet"
    assert ((b"\\HasNoChildren", b"\\Sent"), b"/", "Gesendet") in client.list_folders()
    # Non-ASCII names travel as modified UTF-7; imapclient encodes and decodes them.
    client.create_folder("Réunions/Été 2026")
    assert client.list_folders(pattern="R*") == [
        ((b"\\HasChildren",), b"/", "Réunions"),
        ((b"\\HasNoChildren",), b"/", "Réunions/Été 2026"),
    ]
    assert client.list_folders("Réunions/", "%") == [((b"\\HasNoChildren",), b"/", "Réunions/Été 2026")]
    assert client.folder_exists("Réunions/Été 2026") and not client.folder_exists("Été")


def test_create_rename_delete_subscribe(stack, client, user) -> None:
    created = client.create_folder("Projects/2026")  # with the new mailbox's id (RFC 8474 OBJECTID)
    assert created.startswith(b"[MAILBOXID (") and created.endswith(b"] CREATE completed"), created
    assert client.folder_exists("Projects") and client.folder_exists("Projects/2026")
    with pytest.raises(IMAPClientError, match="ALREADYEXISTS"):
        client.create_folder("Projects")
    client.rename_folder("Projects", "Work")
    names = [name for _, _, name in client.list_folders()]
    assert "Work" in names and "Work/2026" in names and "Projects" not in names
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.rename_folder("Projects", "Elsewhere")

    client.unsubscribe_folder("Work/2026")
    subscribed = [name for _, _, name in client.list_sub_folders()]
    assert "Work" in subscribed and "Work/2026" not in subscribed and "INBOX" in subscribed
    client.subscribe_folder("Work/2026")
    assert "Work/2026" in [name for _, _, name in client.list_sub_folders()]

    with pytest.raises(IMAPClientError, match="INUSE"):
        client.delete_folder("Work")  # it still has Work/2026 below it
    client.delete_folder("Work/2026")
    client.delete_folder("Work")
    assert not client.folder_exists("Work")
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.select_folder("Work")
    with pytest.raises(IMAPClientError, match="CANNOT"):
        client.delete_folder("INBOX")
    assert stack.mail_store().get_mailbox(user, "Work") is None


def test_select_and_examine(stack, client, user) -> None:
    store = stack.mail_store()
    store.append(user, "INBOX", PLAIN, flags=["\\Seen", "$label1"])
    store.append(user, "INBOX", PLAIN)
    mailbox = store.get_mailbox(user, "INBOX")

    selected = client.select_folder("INBOX")
    assert selected[b"EXISTS"] == 2 and selected[b"RECENT"] == 2  # the first session to see them
    assert selected[b"UIDVALIDITY"] == mailbox.uidvalidity and selected[b"UIDNEXT"] == 3
    assert selected[b"HIGHESTMODSEQ"] == mailbox.highestmodseq
    assert selected[b"FLAGS"] == (
        b"\\Answered",
        b"\\Flagged",
        b"\\Deleted",
        b"\\Seen",
        b"\\Draft",
        b"$label1",
    )
    assert selected[b"PERMANENTFLAGS"] == (*selected[b"FLAGS"], b"\\*")
    assert selected[b"READ-WRITE"] is True
    assert client.unselect_folder() == b"UNSELECT completed"

    examined = client.select_folder("INBOX", readonly=True)
    assert examined[b"EXISTS"] == 2 and examined[b"PERMANENTFLAGS"] == ()
    assert b"READ-WRITE" not in examined and b"READ-ONLY" in examined
    client.fetch([2], ["BODY[]"])  # in a read-only mailbox even BODY[] leaves \Seen alone
    assert client.get_flags([2]) == {2: ()}
    with pytest.raises(IMAPClientError, match="READ-ONLY"):
        client.add_flags([2], ["\\Flagged"])
    client.close_folder()

    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.select_folder("Nope")


def test_append_with_flags_and_date(stack, client, user) -> None:
    when = datetime.datetime(2026, 11, 27, 9, 30, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    answer = client.append("Drafts", PLAIN, flags=("\\Draft", "\\Flagged", "$label3"), msg_time=when)
    mailbox = stack.mail_store().get_mailbox(user, "Drafts")
    assert answer == b"[APPENDUID %d 1] APPEND completed" % mailbox.uidvalidity
    client.append("Drafts", RICH)  # no flags, no date: now

    client.normalise_times = False  # keep the server's zone, do not convert to local naive times
    client.select_folder("Drafts")
    data = client.fetch([1, 2], ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]"])
    assert set(data[1][b"FLAGS"]) == {b"\\Draft", b"\\Flagged", b"$label3", b"\\Recent"}
    assert data[1][b"INTERNALDATE"] == when
    assert data[1][b"INTERNALDATE"].utcoffset() is not None
    assert data[1][b"RFC822.SIZE"] == len(PLAIN) and data[1][b"BODY[]"] == PLAIN
    assert data[2][b"FLAGS"] == (b"\\Recent",)
    now = datetime.datetime.now(datetime.UTC)
    assert abs((data[2][b"INTERNALDATE"] - now).total_seconds()) < 120
    assert data[2][b"BODY[]"] == RICH
    with pytest.raises(IMAPClientError, match="TRYCREATE"):
        client.append("Nope", PLAIN)


def test_fetch_envelope_bodystructure_and_sections(stack, client, user) -> None:
    stack.mail_store().append(user, "INBOX", RICH, internaldate=1_795_000_000)
    client.select_folder("INBOX")
    client.normalise_times = False  # keep each date's own zone, do not convert to local naive times
    [uid] = client.search()
    data = client.fetch([uid], ["ENVELOPE", "BODYSTRUCTURE", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "UID"])
    item = data[uid]
    assert item[b"SEQ"] == 1 and item[b"RFC822.SIZE"] == len(RICH)  # imapclient keys the result by UID
    assert isinstance(item[b"MODSEQ"], tuple) and item[b"MODSEQ"][0] >= 1

    envelope = item[b"ENVELOPE"]
    assert isinstance(envelope, Envelope)
    assert envelope.date == datetime.datetime(
        2026, 11, 27, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert envelope.subject == b"=?UTF-8?Q?R=C3=A9union_de_projet?="
    assert envelope.from_ == (Address(b"Alice Example", None, b"alice", b"remote.test"),)
    assert envelope.sender == (Address(None, None, b"list", b"remote.test"),)
    assert envelope.reply_to == (Address(None, None, b"replies", b"remote.test"),)
    assert envelope.to == (
        Address(b"Bob", None, b"bob", b"example.test"),
        Address(None, None, b"carol", b"example.test"),
    )
    assert envelope.cc == (Address(b"Dave, Jr.", None, b"dave", b"remote.test"),)
    assert envelope.bcc == (Address(None, None, b"eve", b"remote.test"),)
    assert envelope.in_reply_to == b"<parent@remote.test>"
    assert envelope.message_id == b"<rich-1@remote.test>"
    assert str(envelope.from_[0]) == "Alice Example <alice@remote.test>"

    structure = item[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    text, pdf = structure[0]
    # Sizes count up to, not including, the CRLF that belongs to the next boundary (RFC 2046 5.1.1).
    assert text[:7] == (b"text", b"plain", (b"charset", b"utf-8"), None, None, b"8bit", 32)
    assert isinstance(text[7], int)  # body lines (how a last line without CRLF counts is for the oracle)
    assert pdf[:7] == (b"application", b"pdf", (b"name", b"agenda.pdf"), None, None, b"base64", 12)
    assert (b"attachment", (b"filename", b"agenda.pdf")) in pdf[7:]
    assert structure[1] == b"mixed"

    sections = client.fetch(
        [uid],
        [
            "BODY.PEEK[1]",
            "BODY.PEEK[2]",
            "BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)]",
            "BODY.PEEK[1.MIME]",
        ],
    )[uid]
    assert sections[b"BODY[1]"] == "Bonjour, la réunion est à 10h.".encode()
    assert sections[b"BODY[2]"] == b"JVBERi0xLjQK"
    assert sections[b"BODY[HEADER.FIELDS (SUBJECT MESSAGE-ID)]"] == (
        b"Subject: =?UTF-8?Q?R=C3=A9union_de_projet?=\r\nMessage-ID: <rich-1@remote.test>\r\n\r\n"
    )
    assert sections[b"BODY[1.MIME]"] == (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    assert client.get_flags([uid]) == {uid: (b"\\Recent",)}, "BODY.PEEK leaves \\Seen alone"
    partial = client.fetch([uid], ["BODY[]<0.20>"])[uid]
    assert partial[b"BODY[]<0>"] == RICH[:20]
    assert client.get_flags([uid]) == {uid: (b"\\Seen", b"\\Recent")}, "BODY[] sets \\Seen"
    when = client.fetch([uid], ["INTERNALDATE"])[uid][b"INTERNALDATE"]
    assert when == datetime.datetime.fromtimestamp(1_795_000_000, datetime.UTC)


def test_search_with_criteria_lists_and_charset(stack, client, user) -> None:
    store = stack.mail_store()
    store.append(user, "INBOX", PLAIN, flags=["\\Seen"], internaldate=1_700_000_000)
    store.append(user, "INBOX", RICH, flags=["$label2"])
    store.append(user, "INBOX", PLAIN.replace(b"hello imapclient", b"second hello") + b"x" * 2000)
    client.select_folder("INBOX")

    assert client.search() == [1, 2, 3]
    assert client.search(["UNSEEN"]) == [2, 3]
    assert client.search(["FROM", "alice", "NOT", "SEEN"]) == [2, 3]
    assert client.search(["SUBJECT", "hello"]) == [1, 3]
    assert client.search(["OR", "SUBJECT", "second", "KEYWORD", "$label2"]) == [2, 3]
    assert client.search(["LARGER", 1000, "SMALLER", 2500]) == [3]
    assert client.search(["BEFORE", datetime.date(2024, 1, 1)]) == [1]
    assert client.search(["SENTON", datetime.date(2026, 11, 27)]) == [1, 2, 3]
    assert client.search(["HEADER", "Message-ID", "<rich-1@remote.test>"]) == [2]
    assert client.search(["CC", "Dave"]) == [2]
    assert client.search(["UID", "2:*"]) == [2, 3]
    assert client.search(["NOT", ["OR", "SEEN", "KEYWORD", "$label2"]]) == [3]
    # Non-ASCII criteria go as a UTF-8 literal; encoded words in the header and the 8-bit body match.
    assert client.search(["SUBJECT", "Réunion"], charset="UTF-8") == [2]
    assert client.search(["BODY", "réunion est à"], charset="UTF-8") == [2]
    assert client.search(["TEXT", "Bonjour"], charset="US-ASCII") == [2]
    assert client.search(["TEXT", "rich-1@remote"]) == [2]
    with pytest.raises(IMAPClientError, match="BADCHARSET"):
        client.search(["SUBJECT", "x"], charset="KOI8-R")
    client.use_uid = False
    assert client.search(["SUBJECT", "second"]) == [3]


def test_uid_expunge_copy_and_move(stack, client, user) -> None:
    for _ in range(4):
        client.append("INBOX", PLAIN)
    client.select_folder("INBOX")
    client.delete_messages([1, 2, 3])
    assert client.get_flags([1, 2, 3, 4]) == {  # this session selected them first: \Recent
        1: (b"\\Deleted", b"\\Recent"),
        2: (b"\\Deleted", b"\\Recent"),
        3: (b"\\Deleted", b"\\Recent"),
        4: (b"\\Recent",),
    }
    client.uid_expunge([2])
    assert client.search() == [1, 3, 4]
    answer, responses = client.expunge()
    assert answer == b"EXPUNGE completed" and [kind for _, kind in responses] == [b"EXPUNGE"] * 2
    # Each EXPUNGE renumbers the rest at once (RFC 9051 7.5.1): replayed in order, only UID 4 is left.
    numbering = [1, 3, 4]
    for number, _ in responses:
        del numbering[number - 1]
    assert numbering == [4] and client.search() == [4]

    client.append("INBOX", PLAIN)
    archive = stack.mail_store().get_mailbox(user, "Archive")
    client.copy([4, 5], "Archive")  # imapclient returns imaplib's untagged COPY data (None) for UID COPY
    assert client._imap.untagged_responses.pop("COPYUID") == [b"%d 4:5 1:2" % archive.uidvalidity]
    client.move([5], "Trash")
    trash = stack.mail_store().get_mailbox(user, "Trash")
    assert client._imap.untagged_responses.pop("COPYUID") == [b"%d 5 1" % trash.uidvalidity]
    assert client.search() == [4]
    with pytest.raises(IMAPClientError, match="TRYCREATE"):
        client.copy([4], "Nope")
    assert client.folder_status("Archive", ["MESSAGES"]) == {b"MESSAGES": 2}
    assert client.folder_status("Trash", ["MESSAGES", "UIDNEXT"]) == {b"MESSAGES": 1, b"UIDNEXT": 2}
    _, archived = stack.mail_store().list_messages(user, "Archive")
    assert [stack.mail_store().read_body(m) for m in archived] == [PLAIN, PLAIN]


def test_flags_and_thunderbird_keywords_persist(stack, client, user) -> None:
    client.append("INBOX", PLAIN)
    client.append("INBOX", PLAIN)
    client.select_folder("INBOX")  # the first session to see them: \Recent in every FLAGS
    assert client.add_flags([1], ["\\Flagged", *THUNDERBIRD_KEYWORDS[:3]]) == {
        1: (b"$label1", b"$label2", b"$label3", b"\\Flagged", b"\\Recent")
    }
    assert client.add_flags([2], THUNDERBIRD_KEYWORDS[3:]) == {
        2: (b"$Junk", b"$label4", b"$label5", b"NonJunk", b"\\Recent")
    }
    assert client.remove_flags([1], ["$label2", "\\Flagged"]) == {1: (b"$label1", b"$label3", b"\\Recent")}
    assert client.set_flags([2], ["\\Answered", "NonJunk"]) == {2: (b"NonJunk", b"\\Answered", b"\\Recent")}
    assert client.add_flags([1, 2], ["\\Seen"], silent=True) is None

    # Another session, later: the keywords are there, and listed in FLAGS for the mailbox.
    other = connect(stack)
    other.login(user, PASSWORD)
    selected = other.select_folder("INBOX", readonly=True)
    assert {b"$label1", b"$label3", b"NonJunk"} <= set(selected[b"FLAGS"])
    assert other.get_flags([1, 2]) == {
        1: (b"$label1", b"$label3", b"\\Seen"),
        2: (b"NonJunk", b"\\Answered", b"\\Seen"),
    }
    other.logout()
    stored_flags = {m.uid: set(m.flags) for m in stack.mail_store().list_messages(user, "INBOX")[1]}
    assert stored_flags == {1: {"$label1", "$label3", "\\Seen"}, 2: {"NonJunk", "\\Answered", "\\Seen"}}

    client.set_flags([1], list(THUNDERBIRD_KEYWORDS))
    assert set(client.get_flags([1])[1]) == {k.encode() for k in THUNDERBIRD_KEYWORDS} | {b"\\Recent"}


def test_idle_sees_mail_delivered_over_smtp(stack, client, user) -> None:
    client.select_folder("INBOX")
    client.idle()
    assert client.idle_check(timeout=0.5) == []
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.sendmail("alice@remote.test", [user], PLAIN)
    responses = client.idle_check(timeout=15)
    assert responses == [(1, b"EXISTS"), (1, b"RECENT")]
    text, more = client.idle_done()
    assert text == b"IDLE terminated" and more == []
    [delivered] = wait_for_inbox(stack, user, 1)
    body = client.fetch([delivered.uid], ["BODY.PEEK[]"])[delivered.uid][b"BODY[]"]
    assert body.endswith(PLAIN) and body.startswith(b"Received: ")

    # A flag change by another session shows up in IDLE as an untagged FETCH.
    client.idle()
    other = connect(stack)
    other.login(user, PASSWORD)
    other.select_folder("INBOX")
    other.add_flags([delivered.uid], ["$label4"])
    other.logout()
    responses = client.idle_check(timeout=15)
    client.idle_done()
    # $label4 is new to the mailbox: FLAGS and PERMANENTFLAGS come first (RFC 9051 7.3.5).
    assert len(responses) == 3 and responses[0][0] == b"FLAGS" and b"$label4" in responses[0][1]
    assert responses[1][1].startswith(b"[PERMANENTFLAGS (")
    number, kind, attributes = responses[2][0], responses[2][1], dict(imapclient_pairs(responses[2][2]))
    assert (number, kind) == (1, b"FETCH") and attributes[b"FLAGS"] == (b"$label4", b"\\Recent")
    assert attributes[b"UID"] == delivered.uid

    # And an expunge by another session, as an EXPUNGE response.
    client.idle()
    other = connect(stack)
    other.login(user, PASSWORD)
    other.select_folder("INBOX")
    other.delete_messages([delivered.uid])
    other.expunge()
    other.logout()
    responses = client.idle_check(timeout=15)
    if (1, b"EXPUNGE") not in responses:  # the FETCH for \Deleted may come in its own poll first
        responses += client.idle_check(timeout=15)
    client.idle_done()
    assert (1, b"EXPUNGE") in responses
    assert client.search() == []


def imapclient_pairs(items: tuple) -> list[tuple]:
    return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]


def test_folder_status(stack, client, user) -> None:
    client.append("INBOX", PLAIN, flags=["\\Seen"])
    client.append("INBOX", RICH)
    mailbox = stack.mail_store().get_mailbox(user, "INBOX")
    status = client.folder_status("INBOX")  # imapclient's default: MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN
    assert status == {
        b"MESSAGES": 2,
        b"RECENT": 2,  # no session selected INBOX since they came
        b"UIDNEXT": 3,
        b"UIDVALIDITY": mailbox.uidvalidity,
        b"UNSEEN": 1,
    }
    status = client.folder_status("INBOX", ["SIZE", "HIGHESTMODSEQ", "DELETED"])
    assert status == {b"SIZE": len(PLAIN) + len(RICH), b"HIGHESTMODSEQ": mailbox.highestmodseq, b"DELETED": 0}
    with pytest.raises(IMAPClientError, match="NONEXISTENT"):
        client.folder_status("Nope")


def test_enable_condstore_and_changedsince(stack, client, user) -> None:
    for _ in range(3):
        client.append("INBOX", PLAIN)
    assert client.enable("CONDSTORE") == [b"CONDSTORE"]
    assert client.enable("CONDSTORE") == []  # already enabled: nothing newly enabled
    selected = client.select_folder("INBOX")
    highest = selected[b"HIGHESTMODSEQ"]
    modseqs = {uid: item[b"MODSEQ"][0] for uid, item in client.fetch([1, 2, 3], ["MODSEQ"]).items()}
    assert max(modseqs.values()) == highest and len(set(modseqs.values())) == 3

    client.add_flags([2], ["$label5"])
    changed = client.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"])
    assert list(changed) == [2]
    assert changed[2][b"FLAGS"] == (b"$label5", b"\\Recent") and changed[2][b"MODSEQ"][0] > highest
    # With CONDSTORE on, plain FETCH FLAGS carry MODSEQ too.
    assert b"MODSEQ" in client.fetch([1], ["FLAGS"])[1]
    found = client.search(["MODSEQ", highest + 1])
    assert found == [2] and found.modseq == changed[2][b"MODSEQ"][0]
    assert client.folder_status("INBOX", ["HIGHESTMODSEQ"]) == {b"HIGHESTMODSEQ": changed[2][b"MODSEQ"][0]}


def test_namespace_and_id(stack, client) -> None:
    namespaces = client.namespace()
    assert namespaces.personal == (("", "/"),)
    assert namespaces.other is None and namespaces.shared is None
    assert client.id_({"name": "pytest", "version": "1"}) == ((b"name", b"mailpipe", b"vendor", b"mailpipe"),)
    assert client.id_() == ((b"name", b"mailpipe", b"vendor", b"mailpipe"),)


def test_noop_reports_changes_from_other_sessions(stack, client, user) -> None:
    client.append("INBOX", PLAIN)
    client.select_folder("INBOX")
    other = connect(stack)
    other.login(user, PASSWORD)
    other.append("INBOX", PLAIN)
    other.select_folder("INBOX")
    other.add_flags([1], ["\\Deleted"])
    other.expunge()
    other.logout()
    text, responses = client.noop()
    assert text == b"NOOP completed"
    assert (1, b"EXPUNGE") in responses and (1, b"EXISTS") in responses
    assert client.search() == [2]


def test_search_text_includes_mime_header_fields(stack, client, user) -> None:
    stack.mail_store().append(user, "INBOX", RICH)
    client.select_folder("INBOX")
    assert client.search(["TEXT", "agenda.pdf"]) == [1]
