"""JMAP mail (RFC 8621) with jmapc, the Python JMAP client, over real HTTP through the Lambda
handler, beside IMAP (imaplib) and SMTP on the same dev stack and store: what one side changes,
the other sees."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from conftest import PASSWORD, wait_for, wait_for_inbox
from jmap_support import LoopbackClient, Raw
from jmapc import Ref
from jmapc.methods import (
    CoreEcho,
    EmailChanges,
    EmailCopy,
    EmailGet,
    EmailQuery,
    EmailSet,
    MailboxChanges,
    MailboxGet,
    MailboxQuery,
    MailboxSet,
    ThreadGet,
)
from jmapc.models import Email, EmailQueryFilterCondition, Mailbox, MailboxQueryFilterCondition

from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack

ATTACHED = (
    b"From: Inner <inner@remote.test>\r\nTo: bob@example.test\r\nSubject: the inner one\r\n"
    b"Message-ID: <inner@remote.test>\r\n\r\ninner body\r\n"
)


def message(subject: str, body: str = "hello there", attach: bool = False) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Alice Example <alice@remote.test>"
    mail["To"] = "Bob <bob@example.test>, carol@example.test"
    mail["Subject"] = subject
    mail["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
    mail["Message-ID"] = f"<{subject.replace(' ', '.')}@remote.test>"
    mail["X-Custom"] = "  spaced   value "
    mail.set_content(body)
    mail.add_alternative(f"<p>{body}</p>", subtype="html")
    if attach:
        mail.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="doc.pdf")
        mail.add_attachment(ATTACHED, maintype="message", subtype="rfc822")
    return mail.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


@pytest.fixture
def client(jmap_server: LocalHttpApi, user: str) -> LoopbackClient:
    return LoopbackClient(jmap_server.url, user, PASSWORD)


def mailboxes(client: LoopbackClient) -> dict[str, Mailbox]:
    response = client.request(MailboxGet(ids=None))
    return {m.role or m.name: m for m in response.data}


def append(
    imap: imaplib.IMAP4, raw: bytes, mailbox: str = "INBOX", flags: str = "", received: str | None = None
) -> None:
    """APPENDs `raw`; `received` (an IMAP date-time) is its internal date, else the server's now."""
    status, _ = imap.append(mailbox, flags, received, raw)
    assert status == "OK"


def imap_flags(imap: imaplib.IMAP4, mailbox: str = "INBOX") -> list[bytes]:
    imap.select(mailbox)
    status, data = imap.fetch("1:*", "(FLAGS)")
    assert status == "OK"
    return [item for item in data if item]


def test_mailboxes_roles_counts_and_changes_both_ways(
    client: LoopbackClient, imap: imaplib.IMAP4, raw_client: Raw
) -> None:
    boxes = mailboxes(client)
    assert set(boxes) == {"inbox", "sent", "drafts", "trash", "junk", "archive"}
    assert boxes["inbox"].name == "INBOX" and boxes["inbox"].total_emails == 0
    state = client.request(MailboxGet(ids=[])).state
    append(imap, message("one"))
    append(imap, message("two"), flags="(\\Seen)")
    boxes = mailboxes(client)
    assert (boxes["inbox"].total_emails, boxes["inbox"].unread_emails) == (2, 1)
    assert (boxes["inbox"].total_threads, boxes["inbox"].unread_threads) == (2, 1)
    changes = client.request(MailboxChanges(since_state=state))
    assert changes.updated == [boxes["inbox"].id] and changes.created == []
    counts = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
    assert raw_client.one("Mailbox/changes", {"sinceState": state})["updatedProperties"] == counts

    # JMAP creates, nests, renames: IMAP sees it.
    created = client.request(MailboxSet(create={"p": Mailbox(name="Projects", is_subscribed=True)}))
    parent = created.created["p"].id
    client.request(MailboxSet(create={"c": Mailbox(name="2026", parent_id=parent, is_subscribed=True)}))
    status, listing = imap.list()
    names = {line.decode().rsplit(" ", 1)[1].strip('"') for line in listing}
    assert {"Projects", "Projects/2026"} <= names
    renamed = client.request(MailboxSet(update={parent: {"name": "Work"}}))
    assert renamed.updated == {parent: None}

    # The IMAP process learns of another process's rename from the change feed, which may be late
    # under load (changes/feed.py): its LIST shows the new names once the notice has come.
    def renamed_in_imap() -> bool:
        status, listing = imap.list()
        names = {line.decode().rsplit(" ", 1)[1].strip('"') for line in listing}
        return status == "OK" and {"Work", "Work/2026"} <= names and "Projects" not in names

    wait_for(renamed_in_imap)

    # IMAP creates: JMAP's Mailbox/changes shows it.
    state = client.request(MailboxGet(ids=[])).state
    assert imap.create("FromImap")[0] == "OK"
    changes = client.request(MailboxChanges(since_state=state))
    (new_id,) = changes.created
    state = changes.new_state
    assert client.request(MailboxGet(ids=[new_id])).data[0].name == "FromImap"

    query = client.request(MailboxQuery(filter=MailboxQueryFilterCondition(parent_id=parent)))
    assert len(query.ids) == 1
    assert client.request(MailboxQuery(filter=MailboxQueryFilterCondition(role="inbox"))).ids == [
        boxes["inbox"].id
    ]

    # Destroying: INBOX never, a parent not before its child, a mailbox with mail only when asked.
    destroyed = client.request(MailboxSet(destroy=[boxes["inbox"].id, parent, new_id]))
    assert destroyed.destroyed == [new_id]
    assert destroyed.not_destroyed[boxes["inbox"].id].type == "forbidden"
    assert destroyed.not_destroyed[parent].type == "mailboxHasChild"
    status, listing = imap.list()
    assert status == "OK" and not any(b"FromImap" in line for line in listing)
    changes = client.request(MailboxChanges(since_state=state))
    assert changes.destroyed == [new_id]


def test_email_get_query_and_bodies(client: LoopbackClient, imap: imaplib.IMAP4, raw_client: Raw) -> None:
    append(imap, message("first note", "the body text"))
    append(imap, message("second note with files", "see attached", attach=True), flags="(\\Flagged $Work)")
    inbox = mailboxes(client)["inbox"].id
    query = client.request(
        EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox), calculate_total=True)
    )
    assert query.total == 2 and len(query.ids) == 2
    result = raw_client.one(
        "Email/get",
        {
            "ids": query.ids,
            "properties": [
                "subject",
                "from",
                "to",
                "keywords",
                "mailboxIds",
                "receivedAt",
                "sentAt",
                "messageId",
                "hasAttachment",
                "textBody",
                "htmlBody",
                "attachments",
                "bodyValues",
                "size",
                "blobId",
                "threadId",
                "header:X-Custom:asText",
                "header:X-Custom",
                "header:To:asAddresses:all",
            ],
            "fetchTextBodyValues": True,
        },
    )
    emails = {e["subject"]: e for e in result["list"]}
    first, second = emails["first note"], emails["second note with files"]
    assert first["from"] == [{"name": "Alice Example", "email": "alice@remote.test"}]
    assert first["to"] == [
        {"name": "Bob", "email": "bob@example.test"},
        {"name": None, "email": "carol@example.test"},
    ]
    assert first["header:X-Custom:asText"] == "spaced value"
    assert first["header:X-Custom"] == "   spaced   value "
    assert len(first["header:To:asAddresses:all"]) == 1
    assert first["messageId"] == ["first.note@remote.test"]
    assert first["sentAt"] == "2026-11-27T10:00:00Z"
    assert first["mailboxIds"] == {inbox: True} and first["keywords"] == {}
    assert second["keywords"] == {"$flagged": True, "$work": True}
    assert first["hasAttachment"] is False and second["hasAttachment"] is True
    (text,) = first["textBody"]
    assert text["type"] == "text/plain"
    assert first["bodyValues"][text["partId"]]["value"].strip() == "the body text"
    assert [p["type"] for p in first["htmlBody"]] == ["text/html"]
    assert [(a["type"], a["name"]) for a in second["attachments"]] == [
        ("application/pdf", "doc.pdf"),
        ("message/rfc822", None),
    ]
    # The attachment's blob downloads, and the attached message parses.
    pdf, attached = second["attachments"]
    parts = raw_client.one(
        "Email/get",
        {
            "ids": [second["id"]],
            "properties": ["attachments"],
            "bodyProperties": ["partId", "header:Content-Type:asRaw"],
        },
    )["list"][0]["attachments"]
    assert "application/pdf" in parts[0]["header:Content-Type:asRaw"]
    status, headers, data = raw_client.http(
        "GET", f"/jmap/download/{raw_client.account}/{pdf['blobId']}/doc.pdf?type=application/pdf"
    )
    assert (status, headers["Content-Type"], data) == (200, "application/pdf", b"%PDF-1.4 fake")
    parsed = raw_client.one("Email/parse", {"blobIds": [attached["blobId"]]})
    assert parsed["parsed"][attached["blobId"]]["subject"] == "the inner one"
    # Sorts and filters.
    by_subject = client.request(EmailQuery(sort=[{"property": "subject", "isAscending": True}]))
    assert by_subject.ids == [first["id"], second["id"]]
    flagged = client.request(EmailQuery(filter=EmailQueryFilterCondition(has_keyword="$flagged")))
    assert flagged.ids == [second["id"]]
    found = client.request(EmailQuery(filter=EmailQueryFilterCondition(body="see attached")))
    assert found.ids == [second["id"]]
    found = client.request(EmailQuery(filter=EmailQueryFilterCondition(mail_from="alice@remote")))
    assert set(found.ids) == {first["id"], second["id"]}
    capped = raw_client.one("Email/query", {"limit": 1_000_000_000, "collapseThreads": True})
    assert (
        capped["limit"]
        == raw_client.session()["capabilities"]["urn:ietf:params:jmap:core"].get(
            "maxQueryLimit", capped["limit"]
        )
        and capped["limit"] <= 256
    )
    paged = raw_client.one("Email/query", {"position": 1, "limit": 1, "sort": [{"property": "subject"}]})
    assert paged["ids"] == [second["id"]] and paged["position"] == 1
    # Threads: each Email its own for now.
    thread = client.request(ThreadGet(ids=[first["threadId"]])).data[0]
    assert thread.email_ids == [first["id"]]


@pytest.fixture
def raw_client(jmap_server: LocalHttpApi, user: str) -> Raw:
    return Raw(jmap_server.url, user, PASSWORD)


def test_keywords_and_flags_and_changes_both_ways(
    stack: DevStack, client: LoopbackClient, imap: imaplib.IMAP4, user: str
) -> None:
    append(imap, message("flag me"))
    (email_id,) = client.request(EmailQuery()).ids
    state = client.request(EmailGet(ids=[])).state

    # JMAP -> IMAP: $seen is \Seen, other keywords IMAP keywords.
    client.request(EmailSet(update={email_id: {"keywords/$seen": True, "keywords/$custom": True}}))
    (flags,) = imap_flags(imap)
    assert b"\\Seen" in flags and b"$custom" in flags
    changes = client.request(EmailChanges(since_state=state))
    assert (changes.created, changes.updated, changes.destroyed) == ([], [email_id], [])
    state = changes.new_state

    # IMAP -> JMAP: STORE shows in Email/changes and keywords.
    imap.select("INBOX")
    assert imap.store("1", "+FLAGS", "(\\Flagged \\Answered)")[0] == "OK"
    changes = client.request(EmailChanges(since_state=state))
    assert changes.updated == [email_id]
    email = client.request(EmailGet(ids=[email_id], properties=["keywords"])).data[0]
    assert email.keywords == {"$seen": True, "$custom": True, "$flagged": True, "$answered": True}
    state = changes.new_state

    # New mail over SMTP shows as created.
    with smtplib.SMTP("127.0.0.1", stack.smtp_port) as smtp:
        smtp.sendmail("alice@remote.test", [user], message("by smtp"))
    wait_for_inbox(stack, user, 2)
    changes = client.request(EmailChanges(since_state=state))
    (created,) = changes.created
    assert changes.updated == [] and changes.destroyed == []
    assert client.request(EmailGet(ids=[created], properties=["subject"])).data[0].subject == "by smtp"
    state = changes.new_state

    # Replacing keywords keeps nothing else; IMAP's expunge shows as destroyed.
    client.request(EmailSet(update={created: {"keywords": {"$draft": True}}}))
    imap.select("INBOX")
    status, data = imap.fetch("2", "(FLAGS)")
    assert status == "OK" and b"\\Draft" in data[0] and b"\\Seen" not in data[0]
    imap.store("1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    changes = client.request(EmailChanges(since_state=state))
    assert changes.destroyed == [email_id] and changes.updated == [created]
    assert client.request(EmailChanges(since_state=changes.new_state)).created == []


def test_changes_in_pages(client: LoopbackClient, imap: imaplib.IMAP4) -> None:
    state = client.request(EmailGet(ids=[])).state
    for n in range(5):
        append(imap, message(f"page {n}"))
    seen: list[str] = []
    pages = 0
    while True:
        changes = client.request(EmailChanges(since_state=state, max_changes=2))
        assert len(changes.created) + len(changes.updated) <= 2
        seen += changes.created
        state = changes.new_state
        pages += 1
        if not changes.has_more_changes:
            break
    assert pages == 3 and len(set(seen)) == 5
    assert sorted(seen) == sorted(client.request(EmailQuery()).ids)


def test_create_move_destroy_and_import(client: LoopbackClient, imap: imaplib.IMAP4, raw_client: Raw) -> None:
    boxes = mailboxes(client)
    draft = Email(
        mailbox_ids={boxes["drafts"].id: True},
        keywords={"$draft": True, "$seen": True},
        mail_from=[{"name": "Me", "email": "me@example.test"}],  # type: ignore[list-item]
        to=[{"name": None, "email": "you@remote.test"}],  # type: ignore[list-item]
        subject="a draft from JMAP",
        body_values={"t": {"value": "draft body"}},  # type: ignore[dict-item]
        text_body=[{"partId": "t", "type": "text/plain"}],  # type: ignore[list-item]
    )
    created = client.request(EmailSet(create={"d": draft}))
    draft_id = created.created["d"].id
    imap.select("Drafts")
    status, data = imap.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    assert status == "OK"
    assert b"\\Draft" in data[0][0] and b"a draft from JMAP" in data[0][1] and b"draft body" in data[1][1]

    # Move to Archive: a new Email in the target, the original gone (docs/jmap.md).
    state = client.request(EmailGet(ids=[])).state
    moved = client.request(EmailSet(update={draft_id: {"mailboxIds": {boxes["archive"].id: True}}}))
    assert moved.updated == {draft_id: None}
    changes = client.request(EmailChanges(since_state=state))
    assert changes.destroyed == [draft_id] and len(changes.created) == 1
    imap.select("Archive")
    assert imap.fetch("1", "(FLAGS)")[1][0] is not None
    assert imap.select("Drafts")[1] == [b"0"]
    (archived,) = changes.created
    two = client.request(
        EmailSet(update={archived: {"mailboxIds": {boxes["archive"].id: True, boxes["inbox"].id: True}}})
    )
    assert two.not_updated[archived].type == "tooManyMailboxes"

    # Import a blob (the archived message's) into INBOX; then destroy the original.
    blob = client.request(EmailGet(ids=[archived], properties=["blobId"])).data[0].blob_id
    imported = raw_client.one(
        "Email/import",
        {
            "emails": {
                "i": {"blobId": blob, "mailboxIds": {boxes["inbox"].id: True}, "keywords": {"$seen": True}}
            }
        },
    )
    new_id = imported["created"]["i"]["id"]
    assert (
        client.request(EmailGet(ids=[new_id], properties=["subject"])).data[0].subject == "a draft from JMAP"
    )
    destroyed = client.request(EmailSet(destroy=[archived, "Enotanemail"]))
    assert destroyed.destroyed == [archived] and destroyed.not_destroyed["Enotanemail"].type == "notFound"
    assert imap.select("Archive")[1] == [b"0"]


def test_creation_ids_and_references_across_calls(client: LoopbackClient, raw_client: Raw) -> None:
    """A mailbox created in a call and used by the next one's create, by "#" creation id; and
    Email/query feeding Email/get by a result reference (jmapc's Ref)."""
    responses = raw_client.call(
        ["Mailbox/set", {"accountId": raw_client.account, "create": {"box": {"name": "Fresh"}}}, "a"],
        [
            "Email/set",
            {
                "accountId": raw_client.account,
                "create": {
                    "m": {
                        "mailboxIds": {"#box": True},
                        "subject": "into the new box",
                        "bodyValues": {"1": {"value": "x"}},
                        "textBody": [{"partId": "1"}],
                    }
                },
            },
            "b",
        ],
        ["Email/get", {"accountId": raw_client.account, "ids": ["#m"], "properties": ["mailboxIds"]}, "c"],
    )
    box = responses[0][1]["created"]["box"]["id"]
    assert responses[2][1]["list"][0]["mailboxIds"] == {box: True}
    results = client.request(
        [
            EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=box)),
            EmailGet(ids=Ref("/ids"), properties=["subject"]),
        ]
    )
    assert [e.subject for e in results[1].response.data] == ["into the new box"]


def test_another_users_objects_are_not_found(
    jmap_server: LocalHttpApi, client: LoopbackClient, imap: imaplib.IMAP4, new_user: Callable[..., str]
) -> None:
    append(imap, message("private"), flags="")
    (email_id,) = client.request(EmailQuery()).ids
    email = client.request(EmailGet(ids=[email_id], properties=["blobId", "threadId", "mailboxIds"])).data[0]
    (mailbox_id,) = email.mailbox_ids
    other = Raw(jmap_server.url, new_user(), PASSWORD)
    got = other.one("Email/get", {"ids": [email_id], "properties": ["subject"]})
    assert got["list"] == [] and got["notFound"] == [email_id]
    assert other.one("Thread/get", {"ids": [email.thread_id]})["notFound"] == [email.thread_id]
    assert other.one("Mailbox/get", {"ids": [mailbox_id]})["notFound"] == [mailbox_id]
    changed = other.one("Email/set", {"update": {email_id: {"keywords/$seen": True}}, "destroy": [email_id]})
    assert changed["notUpdated"][email_id]["type"] == "notFound"
    assert changed["notDestroyed"][email_id]["type"] == "notFound"
    assert other.one("Email/parse", {"blobIds": [email.blob_id]})["notFound"] == [email.blob_id]
    status, _, _ = other.http("GET", f"/jmap/download/{other.account}/{email.blob_id}/x")
    assert status == 404
    wait_for(lambda: imap_flags(imap) and b"\\Seen" not in imap_flags(imap)[0])
    assert client.request(EmailGet(ids=[email_id], properties=["subject"])).data[0].subject == "private"


def test_threads_from_references(client: LoopbackClient, imap: imaplib.IMAP4, raw_client: Raw) -> None:
    """Thread ids are mime/threading.py's (from References), across mailboxes, in Thread/get,
    collapseThreads, the mailbox counts and Thread/changes."""
    # A Thread's Emails are in receivedAt order (RFC 8621 3), which IMAP keeps to the second: two
    # APPENDs within one second tie, and the order of a tie is not the test's to assume.
    append(imap, message("start"), received='"27-Nov-2026 10:00:00 +0000"')
    state = client.request(EmailGet(ids=[])).state
    reply = message("Re: start").replace(
        b"Message-ID:", b"In-Reply-To: <start@remote.test>\r\nReferences: <start@remote.test>\r\nMessage-ID:"
    )
    append(imap, reply, mailbox="Archive", flags="(\\Seen)", received='"27-Nov-2026 10:05:00 +0000"')
    append(imap, message("elsewhere"))
    emails = raw_client.one(
        "Email/get", {"ids": client.request(EmailQuery()).ids, "properties": ["subject", "threadId"]}
    )
    by_subject = {e["subject"]: e for e in emails["list"]}
    start, answer, other = by_subject["start"], by_subject["Re: start"], by_subject["elsewhere"]
    assert start["threadId"] == answer["threadId"] != other["threadId"]
    thread = raw_client.one("Thread/get", {"ids": [start["threadId"]]})["list"][0]
    assert thread["emailIds"] == [start["id"], answer["id"]]
    collapsed = raw_client.one("Email/query", {"collapseThreads": True, "calculateTotal": True})
    assert collapsed["total"] == 2
    some = raw_client.one("Email/query", {"filter": {"someInThreadHaveKeyword": "$seen"}})
    assert set(some["ids"]) == {start["id"], answer["id"]}
    none = raw_client.one("Email/query", {"filter": {"noneInThreadHaveKeyword": "$seen"}})
    assert none["ids"] == [other["id"]]
    inbox = mailboxes(client)["inbox"]
    assert (inbox.total_emails, inbox.total_threads) == (2, 2)
    changes = raw_client.one("Thread/changes", {"sinceState": state})
    assert changes["updated"] == [start["threadId"]] and changes["created"] == [other["threadId"]]


def test_destroying_a_mailbox_with_mail(client: LoopbackClient, imap: imaplib.IMAP4, raw_client: Raw) -> None:
    """mailboxHasEmail unless onDestroyRemoveEmails; then IMAP no longer lists it, and Email/changes
    from before says cannotCalculateChanges (its messages went with it: docs/jmap.md)."""
    assert imap.create("Doomed")[0] == "OK"
    append(imap, message("in doomed"), mailbox="Doomed")
    doomed = mailboxes(client)["Doomed"].id
    state = raw_client.one("Email/get", {"ids": []})["state"]
    kept = raw_client.one("Mailbox/set", {"destroy": [doomed]})
    assert kept["notDestroyed"][doomed]["type"] == "mailboxHasEmail"
    current = raw_client.one("Mailbox/get", {"ids": []})["state"]
    gone = raw_client.one(
        "Mailbox/set", {"ifInState": current, "destroy": [doomed], "onDestroyRemoveEmails": True}
    )
    assert gone["destroyed"] == [doomed]
    status, listing = imap.list()
    assert status == "OK" and not any(b"Doomed" in line for line in listing)
    ((name, error, _),) = raw_client.call(
        ["Email/changes", {"accountId": raw_client.account, "sinceState": state}, "c"]
    )
    assert (name, error["type"]) == ("error", "cannotCalculateChanges")


def test_echo_and_copy_through_jmapc(client: LoopbackClient, user: str) -> None:
    """Core/echo gives back what it got; Email/copy copies between accounts, and each user here has
    one: from another account it is fromAccountNotFound, from the same one invalidArguments."""
    assert client.request(CoreEcho(data={"ping": [1, "two"]})).data == {"ping": [1, "two"]}
    elsewhere = client.request(EmailCopy(from_account_id="Asomeone-else", create={}))
    assert (type(elsewhere).__name__, elsewhere.type) == ("Error", "fromAccountNotFound")
    own = client.jmap_session.primary_accounts.mail
    same = client.request(EmailCopy(from_account_id=own, create={}))
    assert (type(same).__name__, same.type) == ("InvalidArguments", "invalidArguments")
