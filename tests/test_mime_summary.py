"""mailpipe.mime.summarize: envelope, body structure and byte offsets of a message, computed once."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpipe.mime import summarize, summary
from mailpipe.mime.headers import MISSING_DOMAIN, MISSING_MAILBOX, SYNTAX_ERROR

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MESSAGES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
NO_CORPUS = pytest.mark.skip(reason=f"the real-world mail corpus is missing: {CORPUS}")
ENVELOPE_KEYS = [
    "date",
    "subject",
    "from",
    "sender",
    "reply_to",
    "to",
    "cc",
    "bcc",
    "in_reply_to",
    "message_id",
]

# Messages the email package reads differently from Dovecot, whom the summary follows.
EMAIL_PACKAGE_DIFFERS = {
    "attachment_emails/attachment_message_rfc822_inline_image.eml": (
        "the enclosing boundary cuts the embedded message's header: an empty multipart"
    ),
    "error_emails/bad_date_header2.eml": "the boundary never appears: one empty text/plain part",
    "error_emails/empty_in_reply_to.eml": "the boundary never appears: one empty text/plain part",
    "error_emails/missing_body.eml": "the boundary never appears: one empty text/plain part",
    "error_emails/must_supply_encoding.eml": "the boundary never appears: one empty text/plain part",
    "mime_emails/raw_email4.eml": "'--boundary-' is a delimiter: only the beginning of the line must match",
    "plain_emails/raw_email_incorrect_header.eml": "a line without a field name does not end the header",
    "rfc2822/example13.eml": "a line without a colon does not end the header",
}


def corpus_params() -> list[Any]:
    if not MESSAGES:
        return [pytest.param(None, marks=NO_CORPUS)]
    return [pytest.param(path, id=str(path.relative_to(CORPUS))) for path in MESSAGES]


def corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"the real-world mail corpus is missing: {path}")
    return path.read_bytes()


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every part, embedded messages included, in IMAP section order."""
    yield node
    for part in node.get("parts", []):
        yield from nodes(part)
    if "bodystructure" in node:
        yield from nodes(node["bodystructure"])


def as_sent(data: bytes) -> bytes:
    """``data`` as IMAP sends it (gateway fetch.py): every bare LF as CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def leaves(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Non-multipart parts, message/rfc822 ones followed by their embedded message's."""
    return (part for part in nodes(node) if "parts" not in part)


def email_leaves(message: email.message.Message) -> Iterator[email.message.Message]:
    """The same walk over the email package's tree (which also splits message/delivery-status)."""
    content_type = message.get_content_type()
    if not message.is_multipart() or content_type == "message/delivery-status":
        yield message
        return
    if content_type == "message/rfc822":
        yield message
    for part in message.get_payload():
        yield from email_leaves(part)


def depth(node: dict[str, Any]) -> int:
    children = [*node.get("parts", []), *([node["bodystructure"]] if "bodystructure" in node else [])]
    return 1 + max((depth(child) for child in children), default=0)


def check_summary(raw: bytes, result: dict[str, Any]) -> None:
    """The invariants every summary keeps, whatever the input."""
    assert json.loads(json.dumps(result)) == result
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # no lone surrogates: DynamoDB can store it
    assert result["size"] == len(raw)
    root = result["bodystructure"]
    assert (result["header_start"], result["body_start"], result["end"]) == (
        root["header_start"],
        root["body_start"],
        root["end"],
    )
    assert root["header_start"] == 0
    assert root["end"] == len(raw)
    check_envelope(result["envelope"])
    check_part(raw, root, 0, len(raw))


def check_part(raw: bytes, node: dict[str, Any], low: int, high: int) -> None:
    assert low <= node["header_start"] <= node["body_start"] <= node["end"] <= high
    assert node["type"] == node["type"].lower()
    assert node["subtype"] == node["subtype"].lower()
    if "parts" in node:
        assert node["type"] == "multipart"
        assert node["parts"]
        boundary = dict(node["params"]).get("boundary", "").encode("latin-1")
        previous = node["body_start"]
        for part in node["parts"]:
            check_part(raw, part, previous, node["end"])
            previous = part["end"]
            if part["header_start"] == part["end"]:
                continue  # an empty part: the one Dovecot reports for a multipart without parts
            # a body part follows a delimiter line and ends at the next one (or its parent's end)
            line = raw.rfind(b"\n", 0, part["header_start"] - 1) + 1
            assert raw[line:].startswith(b"--" + boundary)
            assert part["end"] == node["end"] or re.match(rb"(\r?\n)?--", raw[part["end"] :])
        return
    assert node["size"] == len(as_sent(section(raw, node)))  # body-fld-octets: the size of BODY[n]
    assert node["encoding"] == node["encoding"].lower()
    if node["type"] == "text" or "bodystructure" in node:
        assert node["lines"] == raw.count(b"\n", node["body_start"], node["end"])
    else:
        assert node["lines"] is None
    if node["type"] == "text":
        assert "charset" in dict(node["params"])
    if "bodystructure" in node:
        inner = node["bodystructure"]
        assert (inner["header_start"], inner["end"]) == (node["body_start"], node["end"])
        check_envelope(node["envelope"])
        check_part(raw, inner, node["body_start"], node["end"])


def check_envelope(envelope: dict[str, Any]) -> None:
    assert list(envelope) == ENVELOPE_KEYS
    for key in ("from", "sender", "reply_to", "to", "cc", "bcc"):
        addresses = envelope[key]
        if addresses is None:
            continue
        assert addresses
        in_group = False
        for address in addresses:
            assert list(address) == ["name", "adl", "mailbox", "host"]
            assert address["adl"] is None or address["adl"].startswith("@")
            if address["host"] is None:  # a group's start (mailbox = its name) or end (mailbox None)
                assert in_group == (address["mailbox"] is None)
                in_group = not in_group
        assert not in_group
    for key in ("date", "subject", "in_reply_to", "message_id"):
        assert envelope[key] is None or isinstance(envelope[key], str)
    if envelope["from"] is not None:
        assert envelope["sender"] is not None
        assert envelope["reply_to"] is not None


def section(raw: bytes, node: dict[str, Any]) -> bytes:
    return raw[node["body_start"] : node["end"]]


def decoded(body: bytes, encoding: str | None) -> Any:
    """``body`` decoded the way the email package decodes a part with this transfer encoding."""
    part = email.message.Message()
    if encoding is not None:
        part["Content-Transfer-Encoding"] = encoding
    part.set_payload(body.decode("ascii", "surrogateescape"))
    return part.get_payload(decode=True)


# --- the real-world corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_message_summary_is_consistent(path: Path) -> None:
    raw = path.read_bytes()
    check_summary(raw, summarize(raw))


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_part_bodies_are_what_the_email_package_parses(path: Path) -> None:
    name = path.relative_to(CORPUS).as_posix()
    if name in EMAIL_PACKAGE_DIFFERS:
        pytest.skip(f"read as Dovecot does: {EMAIL_PACKAGE_DIFFERS[name]}")
    raw = path.read_bytes()
    ours = list(leaves(summarize(raw)["bodystructure"]))
    theirs = list(email_leaves(email.message_from_bytes(raw, policy=email.policy.compat32)))
    assert [f"{node['type']}/{node['subtype']}" for node in ours] == [
        part.get_content_type() for part in theirs
    ]
    for node, part in zip(ours, theirs, strict=True):
        if part.is_multipart():  # message/rfc822 (its message follows) or message/delivery-status
            continue
        encoding = part["Content-Transfer-Encoding"]
        assert decoded(section(raw, node), encoding) == part.get_payload(decode=True)
        del part["Content-Transfer-Encoding"]  # now get_payload(decode=True) gives the body's bytes
        assert section(raw, node) == part.get_payload(decode=True)


def test_raw_subject_is_unfolded_but_not_decoded() -> None:
    folded = summarize(corpus("rfc2822/example14.eml"))["envelope"]
    assert folded["subject"] == (
        "Re: TEST \t=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=  =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?="
    )
    encoded = summarize(corpus("mime_emails/raw_email_encoded_stack_level_too_deep.eml"))["envelope"]
    assert encoded["subject"] == "=?ISO-8859-1?Q?Nicolas_Fouch=E9_has_accepted_your_invitation_to_Gmail?="
    assert encoded["to"] == [
        {"name": "=?ISO-8859-1?Q?Nicolas_Fouch=E9?=", "adl": None, "mailbox": "a.b", "host": "gmail.com"}
    ]


def test_addresses_from_the_rfc_2822_examples() -> None:
    envelope = summarize(corpus("rfc2822/example03.eml"))["envelope"]
    assert envelope["from"] == [
        {"name": "Joe Q. Public", "adl": None, "mailbox": "john.q.public", "host": "example.com"}
    ]
    assert envelope["sender"] == envelope["reply_to"] == envelope["from"]
    assert envelope["subject"] is None
    assert [(a["name"], a["mailbox"], a["host"]) for a in envelope["to"]] == [
        ("Mary Smith", "mary", "x.test"),
        (None, "jdoe", "example.org"),
        ("Who?", "one", "y.test"),
    ]
    assert [(a["name"], a["mailbox"]) for a in envelope["cc"]] == [
        (None, "boss"),
        ('Giant; "Big" Box', "sysservices"),
    ]
    # comments everywhere, an obsolete route, an empty list element, spaces around a dot
    commented = summarize(corpus("rfc2822/example10.eml"))["envelope"]
    assert commented["from"] == [{"name": "Pete", "adl": None, "mailbox": "pete", "host": "silly.test"}]
    assert commented["message_id"] == "<testabcd.1234@silly.test>"
    obsolete = summarize(corpus("rfc2822/example11.eml"))["envelope"]
    assert obsolete["to"] == [
        {"name": "Mary Smith", "adl": "@machine.tld", "mailbox": "mary", "host": "example.net"},
        {"name": None, "adl": None, "mailbox": "jdoe", "host": "test.example"},
    ]


def test_group_addresses_are_sent_the_imap_way() -> None:
    envelope = summarize(corpus("rfc2822/example04.eml"))["envelope"]
    assert envelope["to"] == [
        {"name": None, "adl": None, "mailbox": "A Group", "host": None},
        {"name": "Chris Jones", "adl": None, "mailbox": "c", "host": "a.test"},
        {"name": None, "adl": None, "mailbox": "joe", "host": "where.test"},
        {"name": "John", "adl": None, "mailbox": "jdoe", "host": "one.test"},
        {"name": None, "adl": None, "mailbox": None, "host": None},
    ]
    assert envelope["cc"] == [
        {"name": None, "adl": None, "mailbox": "Undisclosed recipients", "host": None},
        {"name": None, "adl": None, "mailbox": None, "host": None},
    ]
    commented = summarize(corpus("rfc2822/example10.eml"))["envelope"]
    assert [a["mailbox"] for a in commented["to"]] == ["A Group", "c", "joe", "jdoe", None]
    assert commented["to"][1]["host"] == "public.example"


def addresses(value: str) -> list[tuple[str | None, str | None, str | None, str | None]]:
    """The From addresses of a message with this From value, as (name, adl, mailbox, host)."""
    found = summarize(message(f"From: {value}", "", ""))["envelope"]["from"]
    return [(a["name"], a["adl"], a["mailbox"], a["host"]) for a in found or []]


def test_source_routes_are_the_adl() -> None:
    assert addresses("Mary Smith <@machine.tld:mary@example.net>") == [
        ("Mary Smith", "@machine.tld", "mary", "example.net")
    ]
    # obs-domain-list: commas, empty members, CFWS and obsolete domains, written as Dovecot does
    route = ("@a.test,@b.test", "u", "h.test")
    assert addresses("<@a.test,@b.test:u@h.test>") == [(None, *route)]
    assert addresses("U <@a.test , ,@b . test (relay) : u@h.test>") == [("U", *route)]
    assert addresses("<@[10.0.0.1]:u@h.test>") == [(None, "@[10.0.0.1]", "u", "h.test")]
    # no route, or not one (no ":"; Dovecot's adl is then INVALID_ROUTE): no adl
    assert addresses("u@h.test, <u@h.test>") == [(None, None, "u", "h.test")] * 2
    assert addresses("<@h.test>") == [(None, None, MISSING_MAILBOX, "h.test")]


def test_a_local_part_is_dot_separated_words() -> None:
    # words without dots between them are no local part: a name without an address, as in Dovecot
    assert addresses("Big Bug bb@bug.com") == [("Big Bug bb", None, MISSING_MAILBOX, MISSING_DOMAIN)]
    assert addresses('first "last"@h.test') == [("first last", None, MISSING_MAILBOX, MISSING_DOMAIN)]
    # atoms and quoted strings with dots between them; spaces around a dot are obsolete but valid.
    # RFC 5322 obs-local-part, where Dovecot reads only a dot-atom or a single quoted string
    assert addresses('first.last@h.test, "a b".c@h.test, a . b@h.test, a..b@h.test') == [
        (None, None, "first.last", "h.test"),
        (None, None, "a b.c", "h.test"),
        (None, None, "a.b", "h.test"),
        (None, None, "a..b", "h.test"),
    ]
    # in an angle-addr, what is not local-part "@" domain keeps the local part, with Dovecot's host
    # (where Dovecot stops reading the list, we go on to the next member)
    assert addresses("<Undisclosed-Recipient:@mailman.enron.com;>") == [
        (None, None, "Undisclosed-Recipient", SYNTAX_ERROR)
    ]
    assert addresses("Joe <j oe@h.test>, <;>") == [
        ("Joe", None, "j", SYNTAX_ERROR),
        (None, None, MISSING_MAILBOX, SYNTAX_ERROR),
    ]
    assert addresses("<joe>") == [(None, None, "joe", MISSING_DOMAIN)]


def test_local_parts_in_the_corpus() -> None:
    caps = summarize(corpus("plain_emails/mix_caps_content_type.eml"))["envelope"]
    name_only = [{"name": "Big Bug bb", "adl": None, "mailbox": MISSING_MAILBOX, "host": MISSING_DOMAIN}]
    assert caps["from"] == caps["sender"] == caps["reply_to"] == name_only
    undisclosed = summarize(corpus("error_emails/missing_body.eml"))["envelope"]
    assert undisclosed["to"] == [
        {"name": None, "adl": None, "mailbox": "Undisclosed-Recipient", "host": SYNTAX_ERROR}
    ]


def test_multiparts_with_boundaries_that_prefix_each_other() -> None:
    raw = corpus("mime_emails/email_with_similar_boundaries.eml")
    root = summarize(raw)["bodystructure"]
    assert (root["type"], root["subtype"], len(root["parts"])) == ("multipart", "mixed", 2)
    alternative, attachment = root["parts"]
    assert alternative["subtype"] == "alternative"
    assert [(p["type"], p["subtype"], p["encoding"]) for p in alternative["parts"]] == [
        ("text", "plain", "8bit"),
        ("text", "html", "8bit"),
    ]
    assert section(raw, alternative["parts"][0]) == b"Test\r\n"
    assert attachment["type"] == "application"
    assert attachment["disposition"] == ["attachment", [["filename", "LOGO.png"]]]
    assert attachment["id"] == "<LOGO.png>"
    assert section(raw, attachment) == b"SNIP\r\n"
    # BODY[1.MIME]: the part's header, ending with its empty line
    assert raw[alternative["header_start"] : alternative["body_start"]].startswith(
        b"Content-Type: multipart/"
    )
    assert raw[alternative["header_start"] : alternative["body_start"]].endswith(b"\r\n\r\n")


def test_nested_message_rfc822() -> None:
    raw = corpus("attachment_emails/attachment_message_rfc822.eml")
    result = summarize(raw)
    assert result["envelope"]["subject"] == "testing"
    text, forwarded = result["bodystructure"]["parts"]
    assert text["params"] == [["charset", "ISO-8859-1"], ["delsp", "yes"], ["format", "flowed"]]
    assert text["encoding"] == "quoted-printable"
    assert (forwarded["type"], forwarded["subtype"]) == ("message", "rfc822")
    assert forwarded["params"] == [["name", "ForwardedMessage.eml"]]
    assert forwarded["envelope"]["subject"] == "Another PDF"
    assert forwarded["envelope"]["from"] == [
        {"name": "Test Tester", "adl": None, "mailbox": "xxxx", "host": "xxxx.com"}
    ]
    inner = forwarded["bodystructure"]
    assert inner["header_start"] == forwarded["body_start"]
    assert raw[inner["header_start"] :].startswith(b"From xxxx@xxxx.com Tue May 10")
    assert [(p["type"], p["subtype"]) for p in inner["parts"]] == [("text", "plain"), ("application", "pdf")]
    pdf = inner["parts"][1]
    assert pdf["disposition"] == ["attachment", [["filename", "broken.pdf"]]]
    assert decoded(section(raw, pdf), "base64").startswith(b"%PDF-")
    assert forwarded["lines"] == raw.count(b"\n", forwarded["body_start"], forwarded["end"])


def test_bare_lf_message_is_measured_as_sent() -> None:
    for crlf_name, lf_name in [
        ("plain_emails/basic_email.eml", "plain_emails/basic_email_lf.eml"),
        ("attachment_emails/attachment_pdf.eml", "attachment_emails/attachment_pdf_lf.eml"),
    ]:
        crlf, lf = corpus(crlf_name), corpus(lf_name)
        assert b"\r" not in lf
        with_cr, without = summarize(crlf), summarize(lf)
        assert without["size"] == len(lf) < with_cr["size"]  # the top level: the stored size
        assert without["envelope"] == with_cr["envelope"]
        assert lf[without["body_start"] - 2 : without["body_start"]] == b"\n\n"
        pairs = list(zip(nodes(with_cr["bodystructure"]), nodes(without["bodystructure"]), strict=True))
        for ours, theirs in pairs:
            assert (ours["type"], ours["subtype"], ours["params"]) == (
                theirs["type"],
                theirs["subtype"],
                theirs["params"],
            )
            # the offsets are raw (fetch.py slices the stored bytes), the sizes as sent (CRLF)
            assert section(crlf, ours).replace(b"\r\n", b"\n") == section(lf, theirs)
            assert ours.get("lines") == theirs.get("lines")
            if "size" in ours:
                assert ours["size"] == theirs["size"] == len(as_sent(section(lf, theirs)))


def test_part_sizes_count_a_cr_for_each_bare_lf() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\none\ntwo\n\n--b\r\n"  # bare LFs
        b"Content-Type: text/plain\r\n\r\nmixed\r\nends\nlast\r\n--b\n"  # CRLF and a bare LF
        b"Content-Type: message/rfc822\n\nSubject: in\n\nbody\n--b--\n"
    )
    result = summarize(raw)
    check_summary(raw, result)
    assert result["size"] == len(raw)
    lf, mixed, forwarded = result["bodystructure"]["parts"]
    assert section(raw, lf) == b"one\ntwo\n"
    assert (lf["size"], lf["lines"]) == (8 + 2, 2)
    assert section(raw, mixed) == b"mixed\r\nends\nlast"
    assert (mixed["size"], mixed["lines"]) == (16 + 1, 2)
    assert section(raw, forwarded) == b"Subject: in\n\nbody"
    assert (forwarded["size"], forwarded["lines"]) == (17 + 2, 2)
    assert forwarded["bodystructure"]["size"] == 4
    root = summarize(b"Subject: x\n\nline\n\n")["bodystructure"]
    assert (root["body_start"], root["end"], root["size"], root["lines"]) == (12, 18, 8, 2)


def test_fallback_part_size_counts_a_cr_for_each_bare_lf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "_part", None)  # not callable: summarize falls back
    raw = b"Subject: x\n\none\r\ntwo\n"
    root = summarize(raw)["bodystructure"]
    assert (root["body_start"], root["end"], root["size"], root["lines"]) == (12, len(raw), 9 + 1, 2)


def test_utf8_headers_keep_their_bytes() -> None:
    envelope = summarize(corpus("rfc6532/utf8_headers.eml"))["envelope"]
    assert envelope["subject"].encode("latin-1").decode("utf-8") == "Säying Hello"
    (sender,) = envelope["from"]
    assert sender["name"].encode("latin-1").decode("utf-8") == "Jöhn Doe"
    assert sender["host"].encode("latin-1").decode("utf-8") == "mächine.example"


# --- synthetic edge cases ---------------------------------------------------------------------------


def message(*lines: str, eol: str = "\r\n") -> bytes:
    return eol.join(lines).encode("latin-1")


def test_part_offsets_leave_the_line_break_before_a_delimiter_to_the_delimiter() -> None:
    raw = message(
        "From: a@example.com",
        "Content-Type: multipart/mixed; boundary=outer",
        "",
        "preamble",
        "--outer",
        "Content-Type: text/plain",
        "",
        "one",
        "--outer  ",  # transport padding
        "",
        "two",
        "",
        "--outer--",
        "epilogue",
    )
    root = summarize(raw)["bodystructure"]
    one, two = root["parts"]
    assert section(raw, one) == b"one"
    assert raw[one["header_start"] : one["body_start"]] == b"Content-Type: text/plain\r\n\r\n"
    assert one["lines"] == 0
    assert two["header_start"] + 2 == two["body_start"]  # only the empty line: no header fields
    assert section(raw, two) == b"two\r\n"
    assert (two["size"], two["lines"]) == (5, 1)
    assert root["end"] == len(raw)
    assert section(raw, root).startswith(b"preamble\r\n--outer\r\n")


def test_no_body_and_no_header_separator() -> None:
    no_body = summarize(b"Subject: hi\r\n\r\n")
    assert no_body["body_start"] == no_body["end"] == no_body["size"] == 15
    assert no_body["bodystructure"]["size"] == 0
    assert no_body["envelope"]["subject"] == "hi"

    no_separator = b"Subject: hi\r\nFrom: a@example.com"
    result = summarize(no_separator)
    check_summary(no_separator, result)
    assert result["body_start"] == result["end"] == len(no_separator)
    assert result["envelope"]["from"] == [{"name": None, "adl": None, "mailbox": "a", "host": "example.com"}]

    for raw in (b"", b"\r\n", b"\n\nbody", b"no header at all"):
        check_summary(raw, summarize(raw))
    assert section(b"\n\nbody", summarize(b"\n\nbody")["bodystructure"]) == b"\nbody"


def test_header_lines_without_colon_and_delimiters_with_junk() -> None:
    raw = message(
        "Subject: a",
        "not a header field",
        "From: b@example.com",
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "",
        "one",
        "--b-and-junk",
        "",
        "two",
        "--b--",
    )
    result = summarize(raw)
    check_summary(raw, result)
    assert result["envelope"]["from"] == [{"name": None, "adl": None, "mailbox": "b", "host": "example.com"}]
    assert [section(raw, part) for part in result["bodystructure"]["parts"]] == [b"one", b"two"]


def test_missing_final_boundary() -> None:
    raw = message(
        "Content-Type: multipart/alternative; boundary=b", "", "--b", "", "one", "--b", "", "two", ""
    )
    result = summarize(raw)
    check_summary(raw, result)
    one, two = result["bodystructure"]["parts"]
    assert section(raw, one) == b"one"
    assert section(raw, two) == b"two\r\n"
    assert two["end"] == len(raw)


def test_multipart_without_parts_gets_one_empty_text_part() -> None:
    for header in ("Content-Type: multipart/mixed; boundary=never", "Content-Type: multipart/mixed"):
        raw = message(header, "", "just text", "--not-the-boundary", "")
        result = summarize(raw)
        check_summary(raw, result)
        root = result["bodystructure"]
        assert root["end"] == len(raw)
        (empty,) = root["parts"]
        assert (empty["type"], empty["subtype"], empty["size"], empty["lines"]) == ("text", "plain", 0, 0)
        assert empty["params"] == [["charset", "us-ascii"]]


def test_enclosing_delimiters_end_inner_parts_and_headers() -> None:
    raw = message(
        "Content-Type: multipart/mixed; boundary=outer",
        "",
        "--outer",
        "Content-Type: multipart/alternative; boundary=inner",
        "",
        "--inner",
        "",
        "unterminated inner part",
        "--outer",
        "Content-Type: message/rfc822",
        "",
        "Subject: cut short",
        "--outer",
        "Content-Type: text/plain",
        "--outer--",
        "",
    )
    result = summarize(raw)
    check_summary(raw, result)
    inner, forwarded, cut = result["bodystructure"]["parts"]
    assert section(raw, inner["parts"][0]) == b"unterminated inner part"
    assert inner["end"] == inner["parts"][0]["end"]
    assert forwarded["envelope"]["subject"] == "cut short"
    assert forwarded["bodystructure"]["size"] == 0
    assert raw[cut["header_start"] : cut["body_start"]] == b"Content-Type: text/plain"
    assert cut["size"] == 0


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = message(
        "Content-Type: multipart/digest; boundary=d",
        "",
        "--d",
        "",
        "Subject: first",
        "",
        "body",
        "--d--",
    )
    (part,) = summarize(raw)["bodystructure"]["parts"]
    assert (part["type"], part["subtype"], part["params"]) == ("message", "rfc822", [])
    assert part["envelope"]["subject"] == "first"
    assert section(raw, part["bodystructure"]) == b"body"


def test_content_headers() -> None:
    raw = message(
        "MIME-Version: 1.0",
        "Content-Type: TEXT/Plain; Format=Flowed; name*0*=utf-8''%E2%82; name*1*=%AC.txt;",
        '  title*1=" two"; title*0=one; broken; =x; Charset="UTF-8" (comment)',
        "Content-Type: text/html",
        "Content-Transfer-Encoding: BASE64",
        'Content-Disposition: Attachment; filename="a \\"b\\".txt"',
        "Content-Language: en-GB, de",
        "Content-Location: http://example.com/a",
        "Content-ID: <id@example.com>",
        "Content-Description: a file",
        "",
        "",
    )
    node = summarize(raw)["bodystructure"]
    assert (node["type"], node["subtype"], node["encoding"]) == ("text", "plain", "base64")
    assert node["params"] == [
        ["format", "Flowed"],
        ["charset", "UTF-8"],
        ["name*", "utf-8''%E2%82%AC.txt"],
        ["title", "one two"],
    ]
    assert node["disposition"] == ["attachment", [["filename", 'a "b".txt']]]
    assert node["language"] == ["en-GB", "de"]
    assert node["location"] == "http://example.com/a"
    assert (node["id"], node["description"], node["md5"]) == ("<id@example.com>", "a file", None)


def test_content_header_defaults() -> None:
    def root(*lines: str) -> dict[str, Any]:
        return summarize(message(*lines, "", "body"))["bodystructure"]

    not_mime = root("Content-Transfer-Encoding: base64", "Content-Disposition: inline")
    assert (not_mime["type"], not_mime["encoding"], not_mime["disposition"]) == ("text", "7bit", None)
    assert not_mime["params"] == [["charset", "us-ascii"]]
    no_subtype = root("Content-Type: image", "Content-Transfer-Encoding: 8bit; junk")
    assert (no_subtype["type"], no_subtype["subtype"], no_subtype["encoding"]) == ("text", "plain", "7bit")
    image = root("Content-Type: image/png; name=a.png")
    assert (image["params"], image["lines"]) == ([["name", "a.png"]], None)
    illegal = root('Content-Type: multipart/mixed; boundary=----=_Part_1 ;x="y"')
    assert illegal["params"] == [["boundary", "----=_Part_1"], ["x", "y"]]


def test_envelope_rules() -> None:
    raw = message(
        "Subject: first",
        "Subject:",
        "  second",
        'From: root (Charlie Root), "Just A Name", <>, undisclosed:;',
        "Reply-To: Replies <r@example.com>",
        "To:",
        "Cc: a@example.com b@example.com",
        "In-Reply-To: <x@y>",
        "",
        "",
    )
    envelope = summarize(raw)["envelope"]
    assert envelope["subject"] == "second"  # the last one, as Dovecot does
    assert envelope["from"] == [
        {"name": "Charlie Root", "adl": None, "mailbox": "root", "host": MISSING_DOMAIN},
        {"name": "Just A Name", "adl": None, "mailbox": MISSING_MAILBOX, "host": MISSING_DOMAIN},
        {"name": None, "adl": None, "mailbox": MISSING_MAILBOX, "host": MISSING_DOMAIN},
        {"name": None, "adl": None, "mailbox": "undisclosed", "host": None},
        {"name": None, "adl": None, "mailbox": None, "host": None},
    ]
    assert envelope["sender"] == envelope["from"]
    assert envelope["sender"] is not envelope["from"]
    assert envelope["reply_to"] == [{"name": "Replies", "adl": None, "mailbox": "r", "host": "example.com"}]
    assert envelope["to"] is None  # present but empty: NIL
    assert envelope["cc"] == [{"name": None, "adl": None, "mailbox": "a", "host": "example.com"}]
    assert (envelope["in_reply_to"], envelope["message_id"], envelope["date"]) == ("<x@y>", None, None)


def test_eight_bit_headers_are_decoded_as_latin_1() -> None:
    raw = (
        b"Subject: caf\xe9 \xff\xfe\r\nFrom: \xc4pfel <\xe4@b\xfccher.example>\r\n"
        b"Content-Type: text/plain; charset=\xff\r\n\r\n\xe9t\xe9\r\n"
    )
    result = summarize(raw)
    check_summary(raw, result)
    envelope = result["envelope"]
    assert envelope["subject"] == "caf\xe9 \xff\xfe"
    assert envelope["subject"].encode("latin-1") == b"caf\xe9 \xff\xfe"
    assert envelope["from"] == [
        {"name": "\xc4pfel", "adl": None, "mailbox": "\xe4", "host": "b\xfccher.example"}
    ]
    assert result["bodystructure"]["params"] == [["charset", "\xff"]]


def test_deep_nesting_is_capped() -> None:
    levels = 200
    multiparts = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%03d\r\n\r\n--b%03d\r\n" % (level, level)
        for level in range(levels)
    )
    raw = (
        multiparts
        + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
        + b"".join(b"--b%03d--\r\n" % level for level in reversed(range(levels)))
    )
    result = summarize(raw)
    check_summary(raw, result)
    assert depth(result["bodystructure"]) == summary.MAX_DEPTH + 1
    deepest = result["bodystructure"]
    while "parts" in deepest:
        (deepest,) = deepest["parts"]
    assert (deepest["type"], deepest["subtype"]) == ("application", "octet-stream")
    # its own delimiters are plain text to it: it runs to the next enclosing delimiter
    closes = b"\r\n".join(b"--b%03d--" % level for level in reversed(range(summary.MAX_DEPTH, levels)))
    assert section(raw, deepest).endswith(b"deep\r\n" + closes)

    messages = b"Content-Type: message/rfc822\r\n\r\n" * levels + b"Subject: deep\r\n\r\nbody"
    result = summarize(messages)
    check_summary(messages, result)
    assert depth(result["bodystructure"]) == summary.MAX_DEPTH + 1


def test_many_parts_are_capped() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\npart\r\n" * 2000 + b"--b--\r\n"
    result = summarize(raw)
    check_summary(raw, result)
    assert len(result["bodystructure"]["parts"]) == summary.MAX_PARTS - 1
    assert len(json.dumps(result)) < 400_000


def test_unexpected_errors_fall_back_to_one_text_part(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(summary, "_part", broken)
    raw = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nbody\r\n--b--\r\n"
    result = summarize(raw)
    check_summary(raw, result)
    assert result["envelope"] == dict.fromkeys(ENVELOPE_KEYS)
    assert result["bodystructure"]["body_start"] == raw.index(b"--b")


def test_mangled_messages_never_break_the_invariants() -> None:
    if not MESSAGES:
        pytest.skip(f"the real-world mail corpus is missing: {CORPUS}")
    rng = random.Random(5322)
    snippets = [
        b"\r\n",
        b"\n",
        b"--",
        b"\r\n--",
        b":",
        b"\r\n\r\n",
        b"\xff",
        b"Content-Type: multipart/x;b=",
        b"\t",
    ]
    for _ in range(300):
        raw = bytearray(rng.choice(MESSAGES).read_bytes())
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(raw) + 1)
            if rng.random() < 0.5:
                raw[at:at] = rng.choice(snippets)
            else:
                del raw[at : at + rng.randint(1, 40)]
        check_summary(bytes(raw), summarize(bytes(raw)))
