"""Large JMAP downloads (jmap/downloads.py) over real HTTP through the Lambda handler on the dev
stack: a blob over the inline limit is a redirect to a presigned URL of moto's S3, a large MIME
part is decoded once into the bucket and reused, `?redirect=json` hands the URL to a client that
cannot follow the redirect (the webmail), and another user's blob id is refused first. The limit
is lowered (MAILPIPE_JMAP_INLINE_DOWNLOAD) so most of this needs kilobytes; one test downloads a
part of the real size, which the local server, like Lambda, could not answer inline."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from conftest import PASSWORD
from jmap_support import Raw

from mailpipe import aws
from mailpipe.config import ENV_JMAP_INLINE_DOWNLOAD
from mailpipe.jmap import ids
from mailpipe.jmap.downloads import DOWNLOADS_PREFIX, INLINE_DOWNLOAD
from mailpipe.jmap.http import DOWNLOAD_LINK
from mailpipe.jmap.ids import MessageRef
from mailpipe.store import MailStore
from mailpipe_tools.local.jmap_http import MAX_RESPONSE, LocalHttpApi
from mailpipe_tools.local.stack import DevStack

LIMIT = 4096


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def unfollowed(raw: Raw, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET `path` as `raw` signs in, answering a redirect itself rather than following it."""
    request = urllib.request.Request(raw.base_url + path, headers={"Authorization": raw.auth})
    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def fetch(url: str) -> tuple[dict[str, str], bytes]:
    """A presigned URL, fetched as a browser would: no credentials of ours."""
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        return dict(response.headers), response.read()


def with_attachments(sender: str, to: str, subject: str, files: dict[str, bytes]) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, subject
    mail.set_content("see attached\n")
    for name, data in files.items():
        mail.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return mail.as_bytes()


def attachments(raw: Raw, subject: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    (email_id,) = raw.one("Email/query", {"filter": {"subject": subject}})["ids"]
    (email,) = raw.one("Email/get", {"ids": [email_id], "properties": ["blobId", "size", "attachments"]})[
        "list"
    ]
    return email, {a["name"]: a for a in email["attachments"]}


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv(ENV_JMAP_INLINE_DOWNLOAD, str(LIMIT))
    return LIMIT


def test_large_parts_go_by_presigned_url_decoded_once(
    jmap_server: LocalHttpApi,
    new_user: Callable[..., str],
    store: MailStore,
    stack: DevStack,
    small_limit: int,
) -> None:
    user = new_user()
    store.ensure_mailboxes(user)
    big, small = secrets.token_bytes(3 * small_limit), secrets.token_bytes(small_limit // 4)
    subject = f"files {secrets.token_hex(3)}"
    store.append_message(
        user, "INBOX", with_attachments("a@remote.test", user, subject, {"big.bin": big, "small.bin": small})
    )
    raw = Raw(jmap_server.url, user, PASSWORD)
    email, parts = attachments(raw, subject)
    big_id, small_id = parts["big.bin"]["blobId"], parts["small.bin"]["blobId"]
    path = f"/jmap/download/{raw.account}/{big_id}/report%20final.pdf?type=application/pdf"

    # A large part: a redirect to S3, under the account's own key, with the URL's name and type.
    status, headers, _ = unfollowed(raw, path)
    assert status == 302 and headers["Cache-Control"] == "no-store"
    location = urlsplit(headers["Location"])
    key = f"{DOWNLOADS_PREFIX}{raw.account}/{big_id}"
    assert unquote(location.path) == f"/{stack.resources.mail_bucket}/{key}"
    got_headers, data = fetch(headers["Location"])
    assert data == big
    assert got_headers["Content-Type"] == "application/pdf"
    assert got_headers["Content-Disposition"] == 'attachment; filename="report final.pdf"'
    # A client that follows redirects (urllib here, any JMAP library) gets the bytes.
    assert raw.http("GET", path)[::2] == (200, big)

    # Decoded once: the next download hands out the copy already in the bucket (marked here, so a
    # second decoding would show).
    s3 = aws.client("s3")
    copy = s3.get_object(Bucket=stack.resources.mail_bucket, Key=key)["Body"].read()
    assert copy == big
    s3.put_object(Bucket=stack.resources.mail_bucket, Key=key, Body=b"the copy")
    assert raw.http("GET", path)[::2] == (200, b"the copy")
    s3.put_object(Bucket=stack.resources.mail_bucket, Key=key, Body=big)

    # A small part stays inline, whatever type is asked for; nothing is written for it.
    status, headers, data = unfollowed(raw, f"/jmap/download/{raw.account}/{small_id}/s.bin")
    assert (status, data) == (200, small) and "Location" not in headers
    listed = s3.list_objects_v2(
        Bucket=stack.resources.mail_bucket, Prefix=f"{DOWNLOADS_PREFIX}{raw.account}/"
    )
    assert [o["Key"] for o in listed["Contents"]] == [key]
    status, headers, data = unfollowed(raw, f"/jmap/download/{raw.account}/{small_id}/s?type={DOWNLOAD_LINK}")
    assert (status, headers["Content-Type"], data) == (200, "application/octet-stream", small)

    # The whole message is larger too: a redirect to its own stored object.
    status, headers, _ = unfollowed(raw, f"/jmap/download/{raw.account}/{email['blobId']}/m.eml")
    assert status == 302 and "/messages/" in urlsplit(headers["Location"]).path
    got_headers, data = fetch(headers["Location"])
    assert len(data) == email["size"]
    stored = BytesParser(policy=policy.default).parsebytes(data)
    assert {a.get_filename(): a.get_content() for a in stored.iter_attachments()}["big.bin"] == big

    # ?redirect=json: the URL as JSON in a type of its own (the webmail navigates to it).
    for blob_id, expected in ((big_id, big), (email["blobId"], data)):
        status, headers, body = unfollowed(raw, f"/jmap/download/{raw.account}/{blob_id}/x.bin?redirect=json")
        assert (status, headers["Content-Type"], headers["Cache-Control"]) == (200, DOWNLOAD_LINK, "no-store")
        assert fetch(json.loads(body)["url"])[1] == expected
    # ... and small blobs are the bytes still.
    assert unfollowed(raw, f"/jmap/download/{raw.account}/{small_id}/s?redirect=json")[::2] == (200, small)


def test_another_users_large_part_is_refused_though_copied(
    jmap_server: LocalHttpApi, new_user: Callable[..., str], store: MailStore, small_limit: int
) -> None:
    user, other_user = new_user(), new_user()
    store.ensure_mailboxes(user)
    subject = f"private {secrets.token_hex(3)}"
    store.append_message(
        user,
        "INBOX",
        with_attachments("a@remote.test", user, subject, {"p.bin": secrets.token_bytes(2 * small_limit)}),
    )
    raw, other = Raw(jmap_server.url, user, PASSWORD), Raw(jmap_server.url, other_user, PASSWORD)
    email, parts = attachments(raw, subject)
    part_id = parts["p.bin"]["blobId"]
    assert unfollowed(raw, f"/jmap/download/{raw.account}/{part_id}/p.bin")[0] == 302  # copied now
    for blob_id in (part_id, email["blobId"]):
        for account in (other.account, raw.account):
            status, headers, body = unfollowed(
                other, f"/jmap/download/{account}/{blob_id}/p.bin?redirect=json"
            )
            assert status == 404 and "Location" not in headers and b"amazonaws" not in body, (
                blob_id,
                account,
            )
    # A made-up part of a real message, and of no message: not found, nothing written.
    ref = ids.parse(part_id, "B")
    assert ref is not None
    for made_up in (
        MessageRef(ref.mailbox_id, ref.uid, "9").blob_id(),
        MessageRef(ref.mailbox_id, ref.uid + 76, ref.part).blob_id(),
    ):
        assert unfollowed(raw, f"/jmap/download/{raw.account}/{made_up}/x")[0] == 404, made_up


def test_a_part_of_the_real_size_downloads(
    jmap_server: LocalHttpApi, new_user: Callable[..., str], store: MailStore
) -> None:
    """Over Lambda's 6 MB once base64-encoded: the local server, like Lambda, cannot answer it
    inline (MAX_RESPONSE), so only the presigned URL gets it to the client."""
    user = new_user()
    store.ensure_mailboxes(user)
    big = secrets.token_bytes(MAX_RESPONSE * 3 // 4 + 64 * 1024)
    assert len(big) > INLINE_DOWNLOAD
    assert len(base64.b64encode(big)) > MAX_RESPONSE
    subject = f"large {secrets.token_hex(3)}"
    store.append_message(user, "INBOX", with_attachments("a@remote.test", user, subject, {"large.bin": big}))
    raw = Raw(jmap_server.url, user, PASSWORD)
    _, parts = attachments(raw, subject)
    status, headers, data = raw.http(
        "GET", f"/jmap/download/{raw.account}/{parts['large.bin']['blobId']}/l.bin"
    )
    assert (status, headers["Content-Disposition"]) == (200, 'attachment; filename="l.bin"')
    assert data == big


def test_the_local_server_refuses_a_response_lambda_would_refuse() -> None:
    """What made large parts undownloadable on AWS, shown locally: a response over Lambda's limit."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        size = int(event["queryStringParameters"]["size"])
        body = base64.b64encode(b"x" * size).decode()
        return {"statusCode": 200, "headers": {}, "body": body, "isBase64Encoded": True}

    api = LocalHttpApi(handler, "Sized")
    api.start()
    try:
        answers = {}
        for size in (MAX_RESPONSE // 2, MAX_RESPONSE):
            try:
                with urllib.request.urlopen(f"{api.url}/x?size={size}", timeout=60) as response:
                    answers[size] = (response.status, len(response.read()))
            except urllib.error.HTTPError as error:
                answers[size] = (error.code, len(error.read()))
    finally:
        api.stop()
    assert answers[MAX_RESPONSE // 2] == (200, MAX_RESPONSE // 2)
    assert answers[MAX_RESPONSE][0] == 500
