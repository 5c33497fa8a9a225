"""The per-message objects the core computes once for IMAP (PREVIEW, OBJECTID) and JMAP:
mailpipe.mime.preview, mailpipe.mime.threading and the summary fields carrying them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailpipe.mime import summarize
from mailpipe.mime.preview import PREVIEW_CHARS, preview
from mailpipe.mime.threading import message_ids, thread_id, thread_root

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"  # as the Dovecot oracle


def test_plain_text_preview_collapses_whitespace() -> None:
    raw = b"Subject: hi\r\n\r\nHello   there,\r\n\r\n\tthis is\r\nthe body.\r\n"
    assert preview(raw) == "Hello there, this is the body."


def test_preview_is_cut_to_256_characters() -> None:
    raw = b"Subject: long\r\n\r\n" + ("word " * 200).encode()
    text = preview(raw)
    assert len(text) <= PREVIEW_CHARS and text.startswith("word word")
    assert len(text) >= PREVIEW_CHARS - 5


def test_first_text_plain_part_wins_over_html_and_attachments() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n"
        b"attached\r\n"
        b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
        b"--c\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
        b"--c\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n"
        b"--c--\r\n--b--\r\n"
    )
    assert preview(raw) == "Grüße aus Köln"


def test_html_only_message_is_stripped_to_its_text() -> None:
    body = (
        "<html><head><title>T</title><style>p {color: red}</style></head>"
        "<body><script>alert(1)</script><p>Caf&eacute; &amp;\n<b>menu</b></p><!-- hidden --></body></html>"
    )
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(body.encode("latin-1"))
    )
    assert preview(raw) == "Café & menu"


def test_message_without_text_has_an_empty_preview() -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\r\n"
    assert preview(raw) == ""


def test_broken_input_still_gives_a_preview() -> None:
    raw = (
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64\x00\x01\xff\r\n"
    )
    assert isinstance(preview(raw), str)
    assert preview(b"") == ""
    assert preview(b"\x00\x01 control \x02 chars") == ""  # all header, no body


def test_thread_root_prefers_first_reference_then_in_reply_to_then_own_id() -> None:
    reply = b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x>\r\n <b@x>\r\n\r\nbody"
    assert thread_root(reply) == "a@x"
    assert thread_root(b"Message-ID: <c@x>\r\nIn-Reply-To: Joe's note <b@x>\r\n\r\n") == "b@x"
    assert thread_root(b"Message-ID: <a@x>\r\nSubject: start\r\n\r\n") == "a@x"
    assert thread_id(reply) == thread_id(b"Message-ID: <a@x>\r\n\r\n")  # root and reply: one thread


def test_thread_root_without_ids_is_a_hash_of_the_header() -> None:
    one = thread_root(b"Subject: one\r\n\r\nbody")
    assert one.startswith("sha256:")
    assert one == thread_root(b"Subject: one\r\n\r\nanother body")  # only the header counts
    assert one != thread_root(b"Subject: two\r\n\r\nbody")


def test_thread_id_is_an_objectid() -> None:
    tid = thread_id(b"References: <a@x>\r\n\r\n")
    assert tid[0] == "T" and tid.isalnum() and len(tid) == 17


def test_message_ids_skip_junk_and_folding() -> None:
    assert message_ids("<a@x> (comment) <b\r\n @y> <> junk <c@z>") == ["a@x", "b@y", "c@z"]
    assert message_ids(None) == [] and message_ids("no ids here") == []


def test_summary_carries_ids_and_preview() -> None:
    raw = b"Message-ID: <m1@x>\r\nReferences: <r@x>\r\nSubject: s\r\n\r\nHello\r\n"
    summary = summarize(raw)
    assert summary["preview"] == "Hello"
    assert summary["thread_id"] == thread_id(raw)
    assert summary["email_id"].startswith("M") and summary["email_id"].isalnum()
    assert summary["email_id"] == summarize(raw)["email_id"]  # stable for the same bytes
    assert summary["email_id"] != summarize(raw + b"!")["email_id"]


def test_every_corpus_message_gets_a_bounded_preview() -> None:
    paths = sorted(CORPUS.rglob("*.eml"))
    if not paths:
        pytest.skip(f"no corpus at {CORPUS}")
    for path in paths:
        summary = summarize(path.read_bytes())
        assert len(summary["preview"]) <= PREVIEW_CHARS, path
        assert summary["thread_id"].startswith("T"), path
