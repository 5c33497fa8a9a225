"""JMAP's sending half over real HTTP through the Lambda handler on the dev stack: identities (the
send-as rule SMTP submission applies), EmailSubmission through the spool (delivered to a local
user, read over IMAP; queued for a remote one and written by the outbound capture transport),
blob upload/download/import, and SearchSnippet/get. jmapc where it has the method, raw HTTP for
the errors."""

from __future__ import annotations

import email
import imaplib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, wait_for, wait_for_inbox
from jmap_support import CORE, MAIL, LoopbackClient, Raw
from jmapc.methods import (
    EmailGet,
    EmailSet,
    EmailSubmissionGet,
    EmailSubmissionQuery,
    EmailSubmissionSet,
    IdentityChanges,
    IdentityGet,
    MailboxGet,
    SearchSnippetGet,
)
from jmapc.models import (
    Email,
    EmailAddress,
    EmailBodyPart,
    EmailBodyValue,
    EmailQueryFilterCondition,
    EmailSubmission,
)

from mailpipe import aws
from mailpipe.dkim_signing.signer import MessageSigner
from mailpipe.dkim_signing.store import KeyStore
from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.outbound.state import QueueState
from mailpipe.outbound.transport_map import TransportMap
from mailpipe.spool import spool_key
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack

SUBMISSION = "urn:ietf:params:jmap:submission"
ALL = (CORE, MAIL, SUBMISSION)


@pytest.fixture
def user(new_user: Callable[..., str]) -> str:
    return new_user()


@pytest.fixture
def client(jmap_server: LocalHttpApi, user: str) -> LoopbackClient:
    return LoopbackClient(jmap_server.url, user, PASSWORD)


@pytest.fixture
def raw(jmap_server: LocalHttpApi, user: str) -> Raw:
    return Raw(jmap_server.url, user, PASSWORD)


def roles(client: LoopbackClient) -> dict[str, str]:
    return {m.role or m.name: m.id for m in client.request(MailboxGet(ids=None)).data}


def draft(
    client: LoopbackClient, sender: str, to: list[str], cc: list[str], bcc: list[str], subject: str
) -> str:
    boxes = roles(client)
    created = client.request(
        EmailSet(
            create={
                "d": Email(
                    mailbox_ids={boxes["drafts"]: True},
                    keywords={"$draft": True},
                    mail_from=[EmailAddress(name="Sender", email=sender)],
                    to=[EmailAddress(email=a) for a in to],
                    cc=[EmailAddress(email=a) for a in cc] or None,
                    bcc=[EmailAddress(email=a) for a in bcc] or None,
                    subject=subject,
                    body_values={"t": EmailBodyValue(value="sent over JMAP\r\n")},
                    text_body=[EmailBodyPart(part_id="t", type="text/plain")],
                )
            }
        )
    )
    assert created.created and created.created["d"], created
    return str(created.created["d"].id)


def imap_messages(stack: DevStack, address: str) -> list[bytes]:
    connection = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        connection.login(address, PASSWORD)
        connection.select("INBOX")
        _, data = connection.fetch("1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        connection.logout()


def test_identities_are_the_addresses_the_user_may_send_as(
    stack: DevStack, client: LoopbackClient, raw: Raw, user: str
) -> None:
    alias = f"alias-{secrets.token_hex(3)}@example.test"
    stack.directory().add_alias(alias, [user])
    got = client.request(IdentityGet(ids=None))
    assert [i.email for i in got.data] == [user, alias]
    assert all(i.may_delete is False for i in got.data)
    assert client.request(IdentityChanges(since_state=got.state)).created == []

    ((name, result, _),) = raw.call(
        [
            "Identity/set",
            {
                "accountId": raw.account,
                "create": {"x": {"email": "someone@else.test"}, "y": {"email": alias}, "z": {"name": "n"}},
                "destroy": [got.data[0].id, "Inope"],
            },
            "c",
        ],
        using=ALL,
    )
    assert name == "Identity/set"
    assert {k: v["type"] for k, v in result["notCreated"].items()} == {
        "x": "forbiddenFrom",
        "y": "forbidden",
        "z": "invalidProperties",
    }
    assert {k: v["type"] for k, v in result["notDestroyed"].items()} == {
        got.data[0].id: "forbidden",
        "Inope": "notFound",
    }
    # Without the submission capability in `using`, the method is unknown.
    ((name, result, _),) = raw.call(["Identity/get", {"accountId": raw.account}, "c"])
    assert (name, result["type"]) == ("error", "unknownMethod")
    # Another alias appears: the old state cannot say what changed, the client fetches again.
    stack.directory().add_alias(f"more-{secrets.token_hex(3)}@example.test", [user])
    ((name, result, _),) = raw.call(
        ["Identity/changes", {"accountId": raw.account, "sinceState": got.state}, "c"], using=ALL
    )
    assert (name, result["type"]) == ("error", "cannotCalculateChanges")


@pytest.fixture
def capture(stack: DevStack, tmp_path: Path) -> Iterator[OutboundDelivery]:
    """An outbound engine writing remote mail to a folder (the dev stack's `capture` transport)."""
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"jmap-capture-{secrets.token_hex(4)}")["QueueUrl"]
    config = OutboundConfig(
        hostname="mail.example.test", transports=TransportMap.parse([f"*=capture:{tmp_path / 'outbox'}"])
    )
    table = aws.table(os.environ["MAILPIPE_OUTBOUND_TABLE"])
    yield OutboundDelivery(stack.spool(), QueueState(table), OutboundQueue(sqs, queue_url), config)
    sqs.delete_queue(QueueUrl=queue_url)


def test_submission_is_delivered_like_smtp_submission(
    stack: DevStack,
    client: LoopbackClient,
    raw: Raw,
    user: str,
    new_user: Callable[..., str],
    capture: OutboundDelivery,
    tmp_path: Path,
) -> None:
    to, hidden = new_user(), new_user()
    remote = "friend@remote.test"
    email_id = draft(client, user, [to], [remote], [hidden], "hello from jmap")
    boxes = roles(client)
    (identity,) = client.request(IdentityGet(ids=None)).data
    responses = client.request(
        [
            EmailSubmissionSet(
                create={"s": EmailSubmission(identity_id=identity.id, email_id=email_id)},
                on_success_update_email={
                    "#s": {
                        f"mailboxIds/{boxes['drafts']}": None,
                        f"mailboxIds/{boxes['sent']}": True,
                        "keywords/$draft": None,
                    }
                },
            ),
        ]
    )
    submitted, moved = (r.response for r in responses)
    submission_id = submitted.created["s"].id
    assert submitted.created["s"].undo_status.value == "final"
    assert moved.updated == {email_id: None}

    # The local recipients, Bcc'd one included, read it over IMAP, without the Bcc field.
    for address in (to, hidden):
        wait_for_inbox(stack, address, 1)
        (message,) = imap_messages(stack, address)
        parsed = email.message_from_bytes(message)
        assert parsed["Subject"] == "hello from jmap"
        assert user in parsed["From"] and parsed["Bcc"] is None and parsed["Message-ID"]
        assert b"with HTTPA id " + submission_id[1:].encode() in message
        assert hidden.encode() not in message

    # The draft moved to Sent and is no longer a draft.
    sent = client.request(EmailGet(ids=[email_id]))
    assert sent.not_found == [email_id]  # a move gives the Email a new id (docs/jmap.md)
    listed = raw.call(
        ["Email/query", {"accountId": raw.account, "filter": {"inMailbox": boxes["sent"]}}, "q"],
        [
            "Email/get",
            {
                "accountId": raw.account,
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["keywords", "subject"],
            },
            "g",
        ],
    )
    (sent_copy,) = listed[1][1]["list"]
    assert sent_copy["subject"] == "hello from jmap" and "$draft" not in sent_copy["keywords"]

    # The remote recipient went to the outbound queue (the stack's outbound function tried it);
    # the capture transport writes what would leave.
    state = QueueState(aws.table(os.environ["MAILPIPE_OUTBOUND_TABLE"]))
    queue_id = submission_id[1:]
    entries = wait_for(lambda: state.entries(queue_id), 60)
    assert set(entries) == {remote}
    record = client.request(EmailSubmissionGet(ids=[submission_id])).data[0]
    assert [r.email for r in record.envelope.rcpt_to] == [to, remote, hidden]
    sent_at = record.send_at
    capture.process(
        OutboundMessage(
            envelope_id=queue_id,
            s3_key=spool_key(queue_id, sent_at),
            mail_from=user,
            auth_user=user,
            received_at=sent_at.isoformat(),
            size=0,
            recipients=[OutboundRecipient(remote)],
        )
    )
    (written,) = (tmp_path / "outbox").glob("*.remote.test.eml")
    data = written.read_bytes()
    assert data.startswith(f"Return-Path: <{user}>\r\nX-Original-To: {remote}\r\n".encode())
    assert b"hello from jmap" in data and b"Bcc" not in data and hidden.encode() not in data

    query = client.request(EmailSubmissionQuery())
    assert query.ids == [submission_id]


def test_submission_query_changes_adds_what_was_sent_since(
    client: LoopbackClient, raw: Raw, user: str, new_user: Callable[..., str]
) -> None:
    to = new_user()
    (identity,) = client.request(IdentityGet(ids=None)).data

    def call(name: str, arguments: dict[str, object]) -> tuple[str, dict[str, Any]]:
        ((answered, result, _),) = raw.call([name, {"accountId": raw.account, **arguments}, "c"], using=ALL)
        return answered, result

    def since(state: str, **arguments: object) -> tuple[str, dict[str, Any]]:
        return call("EmailSubmission/queryChanges", {"sinceQueryState": state, **arguments})

    def send(subject: str) -> tuple[str, str]:
        email_id = draft(client, user, [to], [], [], subject)
        submission = {"identityId": identity.id, "emailId": email_id}
        created = call("EmailSubmission/set", {"create": {"s": submission}})
        return created[1]["created"]["s"]["id"], email_id

    first, _ = send("first")
    query = call("EmailSubmission/query", {})[1]
    assert query["ids"] == [first] and query["canCalculateChanges"] is True
    second, _ = send("second")
    third, third_email = send("third")
    answered, changes = since(query["queryState"])
    assert answered == "EmailSubmission/queryChanges", changes
    assert changes["removed"] == []
    assert changes["added"] == [{"id": second, "index": 1}, {"id": third, "index": 2}]
    now = call("EmailSubmission/query", {})[1]
    assert changes["oldQueryState"] == query["queryState"] and changes["newQueryState"] == now["queryState"]
    # The same filter and sort as the query's: newest first, one Email's only; up to an id.
    newest = [{"property": "sentAt", "isAscending": False}]
    _, changes = since(query["queryState"], sort=newest, calculateTotal=True)
    assert changes["added"] == [{"id": third, "index": 0}, {"id": second, "index": 1}]
    assert changes["total"] == 3
    _, changes = since(query["queryState"], filter={"emailIds": [third_email]})
    assert changes["added"] == [{"id": third, "index": 0}]
    _, changes = since(query["queryState"], upToId=second)
    assert changes["added"] == [{"id": second, "index": 1}]
    _, changes = since(now["queryState"])
    assert changes["added"] == changes["removed"] == []
    # Errors: too many changes, a state of no one's, no state.
    assert since(query["queryState"], maxChanges=1) == (
        "error",
        {"type": "tooManyChanges", "description": "more than maxChanges (1) changes"},
    )
    assert since("nope")[1]["type"] == "cannotCalculateChanges"
    assert call("EmailSubmission/queryChanges", {})[1]["type"] == "invalidArguments"


def test_submission_refusals(stack: DevStack, client: LoopbackClient, raw: Raw, user: str, new_user) -> None:
    other = new_user()
    forged = draft(client, other, ["x@remote.test"], [], [], "forged")  # From: someone else
    nobody = draft(client, user, [], [], [], "no recipients")
    (identity,) = client.request(IdentityGet(ids=None)).data
    create = {
        "forged": {"identityId": identity.id, "emailId": forged},
        "empty": {"identityId": identity.id, "emailId": nobody},
        "badid": {"identityId": "Inope", "emailId": nobody},
        "theirs": {"identityId": identity.id, "emailId": "E" + "0" * 32 + "-1"},
        "mailfrom": {
            "identityId": identity.id,
            "emailId": nobody,
            "envelope": {"mailFrom": {"email": other}, "rcptTo": [{"email": "x@remote.test"}]},
        },
        "badrcpt": {
            "identityId": identity.id,
            "emailId": nobody,
            "envelope": {"mailFrom": {"email": user}, "rcptTo": [{"email": "not an address"}]},
        },
        "typed": {"identityId": identity.id, "emailId": nobody, "envelope": "x"},
    }
    ((name, result, _),) = raw.call(
        ["EmailSubmission/set", {"accountId": raw.account, "create": create}, "c"], using=ALL
    )
    assert name == "EmailSubmission/set" and result["created"] is None
    assert {k: v["type"] for k, v in result["notCreated"].items()} == {
        "forged": "forbiddenFrom",
        "empty": "noRecipients",
        "badid": "invalidProperties",
        "theirs": "invalidProperties",
        "mailfrom": "forbiddenMailFrom",
        "badrcpt": "invalidRecipients",
        "typed": "invalidProperties",
    }
    assert result["notCreated"]["badrcpt"]["invalidRecipients"] == ["not an address"]
    ((name, result, _),) = raw.call(
        ["EmailSubmission/set", {"accountId": raw.account, "create": [1]}, "c"], using=ALL
    )
    assert (name, result["type"]) == ("error", "invalidArguments")
    ((name, result, _),) = raw.call(
        ["EmailSubmission/get", {"accountId": raw.account, "ids": "x"}, "c"], using=ALL
    )
    assert (name, result["type"]) == ("error", "invalidArguments")
    # Nothing was sent: no submissions, and the other user got nothing.
    assert client.request(EmailSubmissionGet(ids=None)).data == []


def test_upload_download_import_and_scoping(
    jmap_server: LocalHttpApi, client: LoopbackClient, raw: Raw, new_user, stack: DevStack
) -> None:
    message = b"From: a@remote.test\r\nTo: b@example.test\r\nSubject: uploaded\r\n\r\nbody\r\n"
    status, _, body = raw.http(
        "POST", f"/jmap/upload/{raw.account}/", message, {"Content-Type": "message/rfc822"}
    )
    assert status == 201, body
    blob = json.loads(body)
    assert (blob["accountId"], blob["type"], blob["size"]) == (raw.account, "message/rfc822", len(message))
    status, headers, data = raw.http(
        "GET", f"/jmap/download/{raw.account}/{blob['blobId']}/m.eml?type=text/plain"
    )
    assert (status, data, headers["Content-Type"]) == (200, message, "text/plain")

    inbox = roles(client)["inbox"]
    result = raw.one(
        "Email/import", {"emails": {"i": {"blobId": blob["blobId"], "mailboxIds": {inbox: True}}}}
    )
    imported = result["created"]["i"]
    got = client.request(EmailGet(ids=[imported["id"]], properties=["subject"]))
    assert got.data[0].subject == "uploaded"

    # An upload attached to a new Email (a draft with an attachment), read back as its part.
    pdf = b"%PDF-1.4 uploaded attachment"
    status, _, body = raw.http(
        "POST", f"/jmap/upload/{raw.account}/", pdf, {"Content-Type": "application/pdf"}
    )
    attachment = json.loads(body)["blobId"]
    result = raw.one(
        "Email/set",
        {
            "create": {
                "a": {
                    "mailboxIds": {inbox: True},
                    "subject": "with attachment",
                    "bodyValues": {"t": {"value": "see attached"}},
                    "textBody": [{"partId": "t", "type": "text/plain"}],
                    "attachments": [{"blobId": attachment, "type": "application/pdf", "name": "a.pdf"}],
                }
            }
        },
    )
    with_attachment = result["created"]["a"]["id"]
    (got_email,) = raw.one("Email/get", {"ids": [with_attachment], "properties": ["attachments"]})["list"]
    (part,) = got_email["attachments"]
    assert (part["name"], part["type"], part["size"]) == ("a.pdf", "application/pdf", len(pdf))
    status, _, data = raw.http("GET", f"/jmap/download/{raw.account}/{part['blobId']}/a.pdf")
    assert (status, data) == (200, pdf)

    # Another user: neither the download nor an import finds the blob.
    other = Raw(jmap_server.url, new_user(), PASSWORD)
    status, _, _ = other.http("GET", f"/jmap/download/{other.account}/{blob['blobId']}/m.eml")
    assert status == 404
    status, _, _ = other.http("GET", f"/jmap/download/{raw.account}/{blob['blobId']}/m.eml")
    assert status == 404
    status, _, _ = other.http("POST", f"/jmap/upload/{raw.account}/", b"x")
    assert status == 404
    result = other.one(
        "Email/import",
        {"emails": {"i": {"blobId": blob["blobId"], "mailboxIds": {roles_raw(other)["inbox"]: True}}}},
    )
    assert result["notCreated"]["i"]["type"] == "blobNotFound"

    # Too large: the request-level limit problem, nothing stored.
    limit = raw.session()["capabilities"][CORE]["maxSizeUpload"]
    status, _, body = raw.http("POST", f"/jmap/upload/{raw.account}/", b"x" * (limit + 1))
    problem = json.loads(body)
    assert (status, problem["type"], problem["limit"]) == (
        413,
        "urn:ietf:params:jmap:error:limit",
        "maxSizeUpload",
    )
    status, _, _ = raw.http("GET", f"/jmap/upload/{raw.account}/")
    assert status == 405

    # A blob too large for a Lambda response is fetched from S3 by a presigned URL (urllib follows).
    big = secrets.token_bytes(limit)
    status, _, body = raw.http("POST", f"/jmap/upload/{raw.account}/", big)
    assert status == 201
    blob_id = json.loads(body)["blobId"]
    status, headers, data = raw.http("GET", f"/jmap/download/{raw.account}/{blob_id}/big.bin")
    assert status == 200 and data == big
    assert headers["Content-Disposition"] == 'attachment; filename="big.bin"'


def roles_raw(raw: Raw) -> dict[str, str]:
    result = raw.one("Mailbox/get", {"ids": None, "properties": ["role", "name"]})
    return {m["role"] or m["name"]: m["id"] for m in result["list"]}


def test_search_snippets_mark_the_terms_html_escaped(client: LoopbackClient, raw: Raw, user: str) -> None:
    email_id = draft(client, user, ["x@remote.test"], [], [], "Budget <draft> & budgeting plan")
    snippets = client.request(
        SearchSnippetGet(ids=[email_id, "Enope"], filter=EmailQueryFilterCondition(text="budget JMAP"))
    )
    (snippet,) = snippets.data
    assert snippet.subject == "<mark>Budget</mark> &lt;draft&gt; &amp; <mark>budget</mark>ing plan"
    assert snippet.preview == "sent over <mark>JMAP</mark>"
    assert snippets.not_found == ["Enope"]
    none = raw.one("SearchSnippet/get", {"emailIds": [email_id], "filter": {"subject": "absent"}})
    assert none["list"] == [{"emailId": email_id, "subject": None, "preview": None}]
    ((name, result, _),) = raw.call(["SearchSnippet/get", {"accountId": raw.account, "emailIds": "x"}, "c"])
    assert (name, result["type"]) == ("error", "invalidArguments")
    ((name, result, _),) = raw.call(
        ["SearchSnippet/get", {"accountId": raw.account, "emailIds": [], "filter": {"text": 5}}, "c"]
    )
    assert (name, result["type"]) == ("error", "invalidArguments")


def test_draft_and_submission_in_one_request_as_an_alias(
    stack: DevStack, client: LoopbackClient, raw: Raw, user: str, new_user: Callable[..., str]
) -> None:
    alias = f"team-{secrets.token_hex(3)}@example.test"
    stack.directory().add_alias(alias, [user])
    to = new_user()
    identities = {
        i["email"]: i["id"]
        for i in raw.call(["Identity/get", {"accountId": raw.account}, "i"], using=ALL)[0][1]["list"]
    }
    before = raw.call(["EmailSubmission/get", {"accountId": raw.account, "ids": []}, "g"], using=ALL)[0][1][
        "state"
    ]
    drafts = roles_raw(raw)["drafts"]
    responses = raw.call(
        [
            "Email/set",
            {
                "accountId": raw.account,
                "create": {
                    "d": {
                        "mailboxIds": {drafts: True},
                        "from": [{"email": alias}],
                        "to": [{"email": to}],
                        "subject": "from the team",
                        "bodyValues": {"t": {"value": "hi"}},
                        "textBody": [{"partId": "t", "type": "text/plain"}],
                    }
                },
            },
            "e",
        ],
        [
            "EmailSubmission/set",
            {
                "accountId": raw.account,
                "create": {"s": {"identityId": identities[alias], "emailId": "#d"}},
                "onSuccessDestroyEmail": ["#s"],
            },
            "s",
        ],
        using=ALL,
    )
    assert [r[0] for r in responses] == ["Email/set", "EmailSubmission/set", "Email/set"]
    email_id = responses[0][1]["created"]["d"]["id"]
    submission_id = responses[1][1]["created"]["s"]["id"]
    assert responses[2][1]["destroyed"] == [email_id] and responses[2][2] == "s"

    wait_for_inbox(stack, to, 1)
    (message,) = imap_messages(stack, to)
    assert email.message_from_bytes(message)["From"] == alias

    changes = raw.call(
        ["EmailSubmission/changes", {"accountId": raw.account, "sinceState": before}, "c"], using=ALL
    )
    assert changes[0][1]["created"] == [submission_id] and changes[0][1]["newState"] != before
    got = raw.call(
        [
            "EmailSubmission/query",
            {"accountId": raw.account, "filter": {"emailIds": [email_id]}, "sort": [{"property": "sentAt"}]},
            "q",
        ],
        [
            "EmailSubmission/get",
            {
                "accountId": raw.account,
                "#ids": {"resultOf": "q", "name": "EmailSubmission/query", "path": "/ids"},
            },
            "g",
        ],
        using=ALL,
    )
    (record,) = got[1][1]["list"]
    assert record["envelope"]["mailFrom"]["email"] == alias and record["identityId"] == identities[alias]
    assert record["envelope"]["rcptTo"] == [{"email": to, "parameters": None}]
    ((_, result, _),) = raw.call(
        [
            "EmailSubmission/set",
            {
                "accountId": raw.account,
                "update": {submission_id: {"undoStatus": "canceled"}},
                "destroy": [submission_id],
            },
            "x",
        ],
        using=ALL,
    )
    assert result["notUpdated"][submission_id]["type"] == "cannotUnsend"
    assert result["notDestroyed"][submission_id]["type"] == "forbidden"
    ((name, result, _),) = raw.call(
        ["EmailSubmission/query", {"accountId": raw.account, "sort": [{"property": "nope"}]}, "q"], using=ALL
    )
    assert (name, result["type"]) == ("error", "unsupportedSort")


BAD_SUBMISSIONS: list[object] = [
    5,
    [],
    {},
    {"identityId": 5, "emailId": []},
    {"identityId": "Inope", "emailId": "Enope"},
    {"emailId": "#nope"},
    {"envelope": {"mailFrom": "x", "rcptTo": 5}},
    {"envelope": {"mailFrom": {"email": 5}, "rcptTo": [{"email": "a@b.test"}]}},
    {"envelope": {"mailFrom": {"email": "a@b.test"}, "rcptTo": ["x"]}},
    {"undoStatus": "pending"},
    {"sendAt": "2026-01-01T00:00:00Z"},
]


def test_bad_submissions_get_set_errors(raw: Raw) -> None:
    objects = {str(i): o for i, o in enumerate(BAD_SUBMISSIONS)}
    responses = raw.call(
        [
            "EmailSubmission/set",
            {
                "accountId": raw.account,
                "create": objects,
                "onSuccessUpdateEmail": {"#0": 5, "Snope": {"keywords": 5}},
                "onSuccessDestroyEmail": ["#1", "Snope"],
            },
            "c",
        ],
        ["Identity/set", {"accountId": raw.account, "create": objects, "update": {"Inope": 5}}, "i"],
        using=ALL,
    )
    for name, result, _ in responses:
        assert name != "error", result
        assert set(result["notCreated"]) == set(objects), result
        assert result["created"] is None


def test_a_jmap_submission_is_dkim_signed_like_smtp_submission(
    stack: DevStack, jmap_server: LocalHttpApi, tmp_path: Path
) -> None:
    # A domain of its own with a DKIM key, so no other test's mail is signed.
    domain = f"jmapsign-{secrets.token_hex(4)}.test"
    stack.directory().add_domain(domain)
    sender = f"writer@{domain}"
    stack.directory().add_user(sender, PASSWORD)
    keys = KeyStore(aws.client("secretsmanager"))
    keys.create(domain)
    client = LoopbackClient(jmap_server.url, sender, PASSWORD)
    email_id = draft(client, sender, ["friend@remote.test"], [], [], "signed")
    (identity,) = client.request(IdentityGet(ids=None)).data
    sent = client.request(
        EmailSubmissionSet(create={"s": EmailSubmission(identity_id=identity.id, email_id=email_id)})
    )
    queue_id = sent.created["s"].id[1:]
    state = QueueState(aws.table(os.environ["MAILPIPE_OUTBOUND_TABLE"]))
    wait_for(lambda: state.entries(queue_id), 60)
    record = client.request(EmailSubmissionGet(ids=[sent.created["s"].id])).data[0]
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"jmap-sign-{secrets.token_hex(4)}")["QueueUrl"]
    try:
        # The outbound function's configuration: its signer, the capture transport.
        config = OutboundConfig(
            hostname="mail.example.test",
            transports=TransportMap.parse([f"*=capture:{tmp_path / 'outbox'}"]),
            sign=MessageSigner(keys).sign,
        )
        engine = OutboundDelivery(stack.spool(), state, OutboundQueue(sqs, queue_url), config)
        engine.process(
            OutboundMessage(
                envelope_id=queue_id,
                s3_key=spool_key(queue_id, record.send_at),
                mail_from=sender,
                auth_user=sender,
                received_at=record.send_at.isoformat(),
                size=0,
                recipients=[OutboundRecipient("friend@remote.test")],
            )
        )
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
    (written,) = (tmp_path / "outbox").glob("*.remote.test.eml")
    parsed = email.message_from_bytes(written.read_bytes())
    signatures = parsed.get_all("DKIM-Signature") or []
    assert signatures and all(f"d={domain}" in s.replace(" ", "") for s in signatures), signatures
