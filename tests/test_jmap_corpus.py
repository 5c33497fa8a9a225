"""Every corpus message (../shared/corpus) through Email/get with every property and all body
values, and Email/parse of its blob: each answers (no serverFail), with the summary's
hasAttachment and preview agreeing with the body's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import CORPUS, PASSWORD
from jmap_support import Raw

from mailpipe.store import MailStore
from mailpipe_tools.local.jmap_http import LocalHttpApi

ALL = [
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "headers",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
    "hasAttachment",
    "preview",
    "header:Subject:asText",
    "header:From:asGroupedAddresses",
    "header:Date:asDate",
    "header:List-Post:asURLs",
]


def test_every_corpus_message(
    jmap_server: LocalHttpApi, new_user: Callable[..., str], store: MailStore
) -> None:
    paths = sorted(CORPUS.rglob("*.eml"))
    if not paths:
        pytest.skip(f"no corpus under {CORPUS}")
    user = new_user()
    store.ensure_mailboxes(user)
    for path in paths:
        store.append_message(user, "INBOX", path.read_bytes())
    raw = Raw(jmap_server.url, user, PASSWORD)
    ids = raw.one("Email/query", {"limit": 256})["ids"]
    assert len(ids) == min(256, len(paths))
    for start in range(0, len(ids), 20):
        chunk = ids[start : start + 20]
        got = raw.one("Email/get", {"ids": chunk, "properties": ALL, "fetchAllBodyValues": True})
        assert len(got["list"]) == len(chunk), got.get("notFound")
        body_only = raw.one("Email/get", {"ids": chunk, "properties": ["textBody", "attachments"]})
        blobs = [email["blobId"] for email in got["list"]]
        parsed = raw.one("Email/parse", {"blobIds": blobs, "properties": ["hasAttachment", "preview"]})
        for email, again in zip(got["list"], body_only["list"], strict=True):
            assert set(email) == set(ALL)
            # From the index (summary) and from the body: the same preview, the same parts.
            assert email["preview"] == parsed["parsed"][email["blobId"]]["preview"], email["id"]
            assert again["attachments"] == email["attachments"]
