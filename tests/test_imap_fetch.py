"""IMAP FETCH responses rendered from stored messages (mailpipe_gateway.imap.fetch)."""

from __future__ import annotations

import calendar
import email
import email.message
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest

from mailpipe.mime import summarize
from mailpipe.mime.lines import crlf_size
from mailpipe.store import StoredMessage
from mailpipe.store.model import pack_summary
from mailpipe_gateway.imap.commands import Fetch, FetchAttr, FetchItem
from mailpipe_gateway.imap.fetch import UnknownCTE, find_part, needs_body, render_fetch, sets_seen
from mailpipe_gateway.imap.parser import parse_command
from mailpipe_gateway.imap.reader import RawCommand

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
MESSAGES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
JULY_17_1996 = calendar.timegm((1996, 7, 17, 9, 44, 25))


def corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"the real-world mail corpus is missing: {path}")
    return path.read_bytes()


def stored(raw: bytes, **fields: Any) -> StoredMessage:
    values: dict[str, Any] = {
        "uid": 42,
        "modseq": 7,
        "flags": (),
        "internaldate": JULY_17_1996,
        "size": len(raw),
        "blob_key": "x",
        "delivery_id": "d",
        "summary": summarize(raw),
        "crlf_size": crlf_size(raw),
    }
    values.update(fields)
    values["packed_summary"] = pack_summary(values.pop("summary"))
    return StoredMessage(**values)


def items(text: str) -> tuple[FetchItem, ...]:
    """The FETCH items of ``text`` as the parser gives them, e.g. ``(FLAGS BODY.PEEK[1])``."""
    command = parse_command(RawCommand((b"a FETCH 1 " + text.encode(),)))
    assert isinstance(command, Fetch)
    return command.items


def fetch(raw: bytes, text: str, message: StoredMessage | None = None, **options: Any) -> dict[str, Any]:
    """Render FETCH ``text`` for ``raw`` and read the response back: item label -> value."""
    message = message or stored(raw)
    options = {"add_uid": False, "add_modseq": False, **options}
    response = render_fetch(3, message, items(text), raw, **options)
    number, values = parse_fetch(response)
    assert number == 3
    return dict(values)


def parse_fetch(response: bytes) -> tuple[int, list[tuple[str, Any]]]:
    """A literal-aware reader of ``* n FETCH (label value ...)`` CRLF: string values become bytes
    (literal8 ones ``Literal8`` bytes), numbers int, lists their raw bytes."""
    head = re.match(rb"\* (\d+) FETCH \(", response)
    assert head is not None, response[:80]
    pos = head.end()
    values: list[tuple[str, Any]] = []
    while response[pos : pos + 1] != b")":
        end, depth = pos, 0
        while depth or response[end : end + 1] != b" ":
            depth += {b"[": 1, b"]": -1}.get(response[end : end + 1], 0)
            end += 1
        label = response[pos:end].decode()
        value, pos = read_value(response, end + 1)
        values.append((label, value))
        if response[pos : pos + 1] == b" ":
            pos += 1
    assert response[pos:] == b")\r\n"
    return int(head.group(1)), values


class Literal8(bytes):
    pass


def read_value(data: bytes, pos: int) -> tuple[Any, int]:
    literal = re.compile(rb"(~?)\{(\d+)\}\r\n").match(data, pos)
    if literal is not None:
        size = int(literal.group(2))
        value = data[literal.end() : literal.end() + size]
        return (Literal8(value) if literal.group(1) else value), literal.end() + size
    if data[pos : pos + 1] == b'"':
        out = bytearray()
        pos += 1
        while data[pos : pos + 1] != b'"':
            if data[pos : pos + 1] == b"\\":
                pos += 1
            out += data[pos : pos + 1]
            pos += 1
        return bytes(out), pos + 1
    if data[pos : pos + 1] == b"(":
        start, depth = pos, 0
        while True:
            if data[pos : pos + 1] in (b'"', b"{", b"~"):
                _, pos = read_value(data, pos)
                continue
            depth += {b"(": 1, b")": -1}.get(data[pos : pos + 1], 0)
            pos += 1
            if depth == 0:
                return data[start:pos], pos
    atom = re.compile(rb"[^ )]+").match(data, pos)
    assert atom is not None
    text = atom.group()
    return (int(text) if text.isdigit() else text), atom.end()


def email_part(raw: bytes, *path: int) -> email.message.Message:
    """The email package's view of a part, numbered as IMAP does (1-based, into message/rfc822)."""
    part = email.message_from_bytes(raw, policy=email.policy.compat32)
    for number in path:
        if part.get_content_type() == "message/rfc822":
            part = part.get_payload(0)
        if part.is_multipart():
            part = part.get_payload(number - 1)
        else:
            assert number == 1
    return part


def payload_bytes(part: email.message.Message) -> bytes:
    payload = part.get_payload()
    assert isinstance(payload, str)
    return payload.encode("ascii", "surrogateescape")


def crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


# --- attributes ----------------------------------------------------------------------------------


def test_simple_attributes_exactly() -> None:
    raw = corpus("rfc2822/example01.eml")
    message = stored(raw, flags=("\\Seen", "$Forwarded"))
    response = render_fetch(
        3, message, items("(FLAGS UID INTERNALDATE RFC822.SIZE)"), None, add_uid=False, add_modseq=False
    )
    assert response == (
        b'* 3 FETCH (FLAGS (\\Seen $Forwarded) UID 42 INTERNALDATE "17-Jul-1996 09:44:25 +0000" '
        b"RFC822.SIZE %d)\r\n" % len(raw)
    )


def test_uid_first_once_and_modseq_last() -> None:
    raw = corpus("rfc2822/example01.eml")
    message = stored(raw, flags=())
    response = render_fetch(1, message, items("(FLAGS UID)"), None, add_uid=True, add_modseq=True)
    assert response == b"* 1 FETCH (UID 42 FLAGS () MODSEQ (7))\r\n"
    response = render_fetch(1, message, items("(MODSEQ)"), None, add_uid=False, add_modseq=True)
    assert response == b"* 1 FETCH (MODSEQ (7))\r\n"


def test_internaldate_pads_the_day_and_is_utc() -> None:
    raw = corpus("rfc2822/example01.eml")
    message = stored(raw, internaldate=calendar.timegm((2024, 3, 5, 23, 59, 59)))
    assert fetch(raw, "INTERNALDATE", message) == {"INTERNALDATE": b"05-Mar-2024 23:59:59 +0000"}


def test_flags_are_rendered_as_the_session_shows_them() -> None:
    # \Recent is never stored; a session adds it to the messages it claimed (MailboxView.shown).
    raw = corpus("rfc2822/example01.eml")
    assert fetch(raw, "FLAGS", stored(raw, flags=("\\Seen", "\\Recent"))) == {"FLAGS": b"(\\Seen \\Recent)"}


def test_envelope_and_bodystructure_come_from_the_summary_without_the_body() -> None:
    raw = corpus("attachment_emails/attachment_message_rfc822.eml")
    message = stored(raw)
    assert not needs_body(items("(ENVELOPE BODYSTRUCTURE BODY FLAGS)"), message)
    response = render_fetch(
        1, message, items("(ENVELOPE BODYSTRUCTURE BODY)"), None, add_uid=False, add_modseq=False
    )
    values = dict(parse_fetch(response)[1])
    assert values["ENVELOPE"].startswith(b'("Mon, 6 Jun 2005 22:21:22 +0200" "testing" ')
    assert b'"message" "rfc822"' in values["BODYSTRUCTURE"]
    assert values["BODY"] != values["BODYSTRUCTURE"] and b'"mixed")' in values["BODY"]


def test_too_large_summary_is_recomputed_from_the_body() -> None:
    raw = corpus("attachment_emails/attachment_message_rfc822.eml")
    full = stored(raw)
    partial = stored(raw, summary={"size": len(raw), "too_large": True})
    wanted = items("(ENVELOPE BODYSTRUCTURE BODY[2.1] BINARY[2.2])")
    assert needs_body(items("(ENVELOPE)"), partial) and not needs_body(items("(ENVELOPE)"), full)
    assert not needs_body(items("(FLAGS UID RFC822.SIZE)"), partial)
    expected = render_fetch(1, full, wanted, raw, add_uid=True, add_modseq=False)
    assert render_fetch(1, partial, wanted, raw, add_uid=True, add_modseq=False) == expected
    with pytest.raises(ValueError):
        render_fetch(1, partial, items("ENVELOPE"), None, add_uid=False, add_modseq=False)


def test_needs_body_and_sets_seen() -> None:
    for text, body, seen in [
        ("(FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY MODSEQ)", False, False),
        ("BODY[]", True, True),
        ("BODY.PEEK[1.MIME]", True, False),
        ("BINARY[1]", True, True),
        ("BINARY.PEEK[1]", True, False),
        ("BINARY.SIZE[1]", True, False),
        ("RFC822", True, True),
        ("RFC822.HEADER", True, False),
        ("RFC822.TEXT", True, True),
    ]:
        assert needs_body(items(text)) is body, text
        assert sets_seen(items(text)) is seen, text


def test_an_item_asked_twice_is_sent_once() -> None:
    raw = corpus("rfc2822/example01.eml")
    response = render_fetch(
        1,
        stored(raw),
        items("(BODY[TEXT] BODY.PEEK[TEXT] FLAGS FLAGS)"),
        raw,
        add_uid=False,
        add_modseq=False,
    )
    assert [label for label, _ in parse_fetch(response)[1]] == ["BODY[TEXT]", "FLAGS"]


# --- whole message, header and text ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [pytest.param(path, id=str(path.relative_to(CORPUS))) for path in MESSAGES]
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"the corpus is missing: {CORPUS}"))],
)
def test_every_corpus_message_header_and_text_make_the_whole(path: Path) -> None:
    raw = path.read_bytes()
    values = fetch(raw, "(RFC822.SIZE BODY[] BODY[HEADER] BODY[TEXT] RFC822 RFC822.HEADER RFC822.TEXT)")
    assert values["BODY[]"] == crlf(raw)
    assert len(values["BODY[]"]) == values["RFC822.SIZE"]
    assert values["BODY[HEADER]"] + values["BODY[TEXT]"] == values["BODY[]"]
    assert (values["RFC822"], values["RFC822.HEADER"], values["RFC822.TEXT"]) == (
        values["BODY[]"],
        values["BODY[HEADER]"],
        values["BODY[TEXT]"],
    )


def test_body_is_the_raw_message() -> None:
    for name in (
        "rfc2822/example01.eml",
        "attachment_emails/attachment_pdf.eml",
        "multi_charset/japanese.eml",
    ):
        raw = corpus(name)
        assert b"\r\n" in raw
        assert fetch(raw, "BODY.PEEK[]")["BODY[]"] == raw


def test_bare_lf_message_is_sent_with_crlf() -> None:
    raw = corpus("plain_emails/basic_email_lf.eml")
    assert b"\r" not in raw
    values = fetch(raw, "(RFC822.SIZE BODY[] BODY[HEADER.FIELDS (Subject)] BODY[1])")
    assert values["BODY[]"] == raw.replace(b"\n", b"\r\n")
    assert values["RFC822.SIZE"] == len(values["BODY[]"]) > len(raw)
    assert values["BODY[HEADER.FIELDS (Subject)]"].endswith(b"\r\n\r\n")
    assert b"\n" not in values["BODY[1]"].replace(b"\r\n", b"")


def test_header_fields_in_message_order_with_continuations() -> None:
    raw = (
        b"Received: from a\r\n\tby b\r\nSubject: one\r\n two\r\nX-Other: x\r\n"
        b"from: Ann <ann@example.com>\r\nSubject : again\r\n\r\nBody\r\n"
    )
    values = fetch(raw, "(BODY[HEADER.FIELDS (SUBJECT From)] BODY[HEADER.FIELDS.NOT (subject FROM)])")
    assert values["BODY[HEADER.FIELDS (SUBJECT From)]"] == (
        b"Subject: one\r\n two\r\nfrom: Ann <ann@example.com>\r\nSubject : again\r\n\r\n"
    )
    assert (
        values["BODY[HEADER.FIELDS.NOT (subject FROM)]"]
        == b"Received: from a\r\n\tby b\r\nX-Other: x\r\n\r\n"
    )
    assert fetch(raw, "BODY[HEADER.FIELDS (X-Absent)]") == {"BODY[HEADER.FIELDS (X-Absent)]": b"\r\n"}


def test_header_fields_of_a_corpus_message() -> None:
    raw = corpus("multi_charset/japanese_attachment_long_name.eml")
    values = fetch(
        raw, "(BODY[HEADER] BODY[HEADER.FIELDS (SUBJECT FROM)] BODY[HEADER.FIELDS.NOT (SUBJECT FROM)])"
    )
    fields = values["BODY[HEADER.FIELDS (SUBJECT FROM)]"]
    others = values["BODY[HEADER.FIELDS.NOT (SUBJECT FROM)]"]
    parsed = email.message_from_bytes(fields, policy=email.policy.compat32)
    original = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert parsed.keys() == ["Subject", "From"]
    assert parsed["Subject"] == original["Subject"]  # all four folded lines
    assert parsed["Subject"].count("\r\n") == 3
    assert [key.lower() for key in email.message_from_bytes(others)] == [
        key.lower() for key in original if key.lower() not in ("subject", "from")
    ]
    assert len(fields) - 2 + len(others) - 2 == len(values["BODY[HEADER]"]) - 2


# --- parts -------------------------------------------------------------------------------------------


def test_first_part_of_a_multipart_is_what_email_sees() -> None:
    raw = corpus("attachment_emails/attachment_pdf.eml")
    values = fetch(raw, "(BODY[1] BODY[1.MIME] BODY[2])")
    assert values["BODY[1]"] == payload_bytes(email_part(raw, 1))
    assert values["BODY[2]"] == payload_bytes(email_part(raw, 2))
    mime = values["BODY[1.MIME]"]
    assert mime.endswith(b"\r\n\r\n") and mime + values["BODY[1]"] in raw
    assert email.message_from_bytes(mime)["Content-Type"] == email_part(raw, 1)["Content-Type"]


def test_part_1_of_a_single_part_message_is_its_body() -> None:
    raw = corpus("rfc2822/example01.eml")
    values = fetch(raw, "(BODY[1] BODY[TEXT] BODY[1.MIME] BODY[HEADER])")
    assert values["BODY[1]"] == values["BODY[TEXT]"] == raw.split(b"\r\n\r\n", 1)[1]
    assert values["BODY[1.MIME]"] == values["BODY[HEADER]"]


def test_nested_message_rfc822() -> None:
    raw = corpus("attachment_emails/attachment_message_rfc822.eml")
    values = fetch(
        raw,
        "(BODY[2] BODY[2.MIME] BODY[2.HEADER] BODY[2.TEXT] BODY[2.1] BODY[2.2.MIME] "
        "BODY[2.HEADER.FIELDS (Subject)] BINARY[2.2] BINARY.SIZE[2.2] BINARY[1])",
    )
    embedded = email_part(raw, 2).get_payload(0)
    assert isinstance(embedded, email.message.Message)
    assert values["BODY[2.HEADER]"] + values["BODY[2.TEXT]"] == values["BODY[2]"]
    assert email.message_from_bytes(values["BODY[2.HEADER]"])["Subject"] == "Another PDF"
    assert values["BODY[2.HEADER.FIELDS (Subject)]"] == b"Subject: Another PDF\r\n\r\n"
    assert email.message_from_bytes(values["BODY[2.MIME]"]).get_content_type() == "message/rfc822"
    assert values["BODY[2.1]"] == payload_bytes(email_part(raw, 2, 1))
    assert b"application/pdf" in values["BODY[2.2.MIME]"]
    pdf = email_part(raw, 2, 2).get_payload(decode=True)
    assert values["BINARY[2.2]"] == pdf and values["BINARY.SIZE[2.2]"] == len(pdf)
    assert values["BINARY[1]"] == email_part(raw, 1).get_payload(decode=True)  # quoted-printable


def test_parts_that_do_not_exist_are_empty() -> None:
    raw = corpus("attachment_emails/attachment_message_rfc822.eml")
    values = fetch(
        raw,
        "(BODY[3] BODY[1.1] BODY[2.3] BODY[2.1.1] BODY[1.HEADER] BODY[1.TEXT] BODY[9.MIME] "
        "BINARY[7] BINARY.SIZE[7])",
    )
    assert values == {
        "BODY[3]": b"",
        "BODY[1.1]": b"",
        "BODY[2.3]": b"",
        "BODY[2.1.1]": b"",
        "BODY[1.HEADER]": b"",
        "BODY[1.TEXT]": b"",
        "BODY[9.MIME]": b"",
        "BINARY[7]": b"",
        "BINARY.SIZE[7]": 0,
    }
    single = corpus("rfc2822/example01.eml")
    assert fetch(single, "(BODY[2] BODY[1.1])") == {"BODY[2]": b"", "BODY[1.1]": b""}


def leaf_paths(
    node: dict[str, Any], prefix: tuple[int, ...] = (), message: bool = True
) -> list[tuple[int, ...]]:
    """The IMAP part number of every leaf under a summary node (RFC 9051 6.4.5)."""
    if node["type"] == "multipart":
        paths = []
        for number, part in enumerate(node["parts"], 1):
            paths += leaf_paths(part, (*prefix, number), False)
        return paths
    if "bodystructure" in node:
        return leaf_paths(node["bodystructure"], prefix, True)
    return [(*prefix, 1) if message else prefix]


@pytest.mark.parametrize(
    "name",
    [
        "mime_emails/raw_email_with_nested_attachment.eml",
        "attachment_emails/attachment_message_rfc822.eml",
        "attachment_emails/attachment_pdf.eml",
        "multi_charset/japanese_attachment.eml",
        "rfc2822/example01.eml",
    ],
)
def test_every_leaf_part_is_what_the_email_package_sees(name: str) -> None:
    raw = corpus(name)
    root = summarize(raw)["bodystructure"]
    paths = leaf_paths(root)
    assert find_part(root, ()) is None
    sections = " ".join(f"BODY[{'.'.join(map(str, path))}]" for path in paths)
    values = fetch(raw, f"({sections})")
    for path in paths:
        node = find_part(root, path)
        assert node is not None and "parts" not in node
        label = f"BODY[{'.'.join(map(str, path))}]"
        assert values[label] == payload_bytes(email_part(raw, *path)), label


# --- partials ---------------------------------------------------------------------------------------


def test_partials() -> None:
    raw = corpus("rfc2822/example01.eml")
    text = raw.split(b"\r\n\r\n", 1)[1]
    values = fetch(raw, "(BODY[]<0.10> BODY.PEEK[TEXT]<5.20> BODY[HEADER]<100000.5> BINARY[1]<3.4>)")
    assert values == {
        "BODY[]<0>": raw[:10],
        "BODY[TEXT]<5>": text[5:25],
        "BODY[HEADER]<100000>": b"",
        "BINARY[1]<3>": text[3:7],
    }
    assert fetch(raw, "BODY[]<0.100000>") == {"BODY[]<0>": raw}


# --- BINARY ----------------------------------------------------------------------------------------


def test_binary_of_a_base64_attachment_is_the_file() -> None:
    raw = corpus("attachment_emails/attachment_pdf.eml")
    pdf = email_part(raw, 2).get_payload(decode=True)
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF")
    response = render_fetch(
        1,
        stored(raw),
        items("(BINARY.PEEK[2] BINARY.SIZE[2] BINARY[2]<0.4>)"),
        raw,
        add_uid=False,
        add_modseq=False,
    )
    values = dict(parse_fetch(response)[1])
    assert values["BINARY[2]"] == pdf
    assert values["BINARY.SIZE[2]"] == len(pdf)
    assert values["BINARY[2]<0>"] == b"%PDF"
    assert isinstance(values["BINARY[2]"], Literal8) is (b"\x00" in pdf)


def test_nul_goes_as_0x80_in_body_and_as_literal8_in_binary() -> None:
    raw = (
        b"Subject: nul\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\na\x00b\r\n"
    )
    values = fetch(raw, "(BODY[1] BINARY[1] BINARY.SIZE[1] RFC822.SIZE BODY[])")
    assert values["BODY[1]"] == b"a\x80b\r\n" and not isinstance(values["BODY[1]"], Literal8)
    assert values["BINARY[1]"] == b"a\x00b\r\n" and isinstance(values["BINARY[1]"], Literal8)
    assert values["BINARY.SIZE[1]"] == 5
    assert len(values["BODY[]"]) == values["RFC822.SIZE"]


def test_binary_of_base64_text_and_whole_message() -> None:
    raw = corpus("multi_charset/japanese.eml")
    values = fetch(raw, "(BINARY[1] BINARY[] BINARY.SIZE[])")
    assert values["BINARY[1]"].decode("utf-8").startswith("かきくえこ\n")
    assert values["BINARY[]"] == raw and values["BINARY.SIZE[]"] == len(raw)


def test_unknown_transfer_encoding_raises() -> None:
    raw = corpus("error_emails/content_transfer_encoding_x_uuencode.eml")
    root = summarize(raw)["bodystructure"]
    number = next(i for i, part in enumerate(root["parts"], 1) if part["encoding"] == "x-uuencode")
    for text in (f"BINARY[{number}]", f"BINARY.SIZE[{number}]"):
        with pytest.raises(UnknownCTE) as error:
            render_fetch(1, stored(raw), items(text), raw, add_uid=False, add_modseq=False)
        assert error.value.encoding == "x-uuencode"
    assert fetch(raw, f"BODY[{number}]")[f"BODY[{number}]"] == payload_bytes(email_part(raw, number))


def test_rfc822_size_prefers_crlf_size() -> None:
    raw = corpus("plain_emails/basic_email_lf.eml")
    message = stored(raw)
    assert message.crlf_size > message.size
    response = render_fetch(1, message, (FetchAttr("RFC822.SIZE"),), None, add_uid=False, add_modseq=False)
    assert response == b"* 1 FETCH (RFC822.SIZE %d)\r\n" % message.crlf_size


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_header_fields_from_the_header_block_equal_those_from_the_whole_body(path: Path) -> None:
    from mailpipe.store.headers import header_end
    from mailpipe_gateway.imap.fetch import header_suffices
    from mailpipe_gateway.imap.parser import parse_bytes

    raw = path.read_bytes()
    message = stored(raw)
    command = parse_bytes(b"a FETCH 1 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)] RFC822.HEADER)")
    assert header_suffices(command.items, message)
    whole = render_fetch(1, message, command.items, raw, add_uid=False, add_modseq=False)
    header = raw[: header_end(raw, message.summary)]
    assert header == raw[: header_end(raw)]
    assert render_fetch(1, message, command.items, header, add_uid=False, add_modseq=False) == whole
    text = parse_bytes(b"a FETCH 1 (BODY.PEEK[HEADER] BODY[TEXT])")
    assert not header_suffices(text.items, message)
    assert not header_suffices(parse_bytes(b"a FETCH 1 (BODY.PEEK[1.HEADER])").items, message)


def test_header_fetches_of_a_message_with_an_incomplete_summary() -> None:
    """A summary too large to store holds no ENVELOPE: with ENVELOPE the whole body is needed,
    without it the header block still serves (and the summary is not unpacked for it)."""
    from mailpipe_gateway.imap.fetch import header_suffices
    from mailpipe_gateway.imap.parser import parse_bytes

    raw = b"Subject: big\r\n\r\nbody\r\n"
    message = stored(raw, summary={"size": len(raw), "too_large": True})
    assert header_suffices(parse_bytes(b"a FETCH 1 (FLAGS BODY.PEEK[HEADER])").items, message)
    assert not header_suffices(parse_bytes(b"a FETCH 1 (ENVELOPE BODY.PEEK[HEADER])").items, message)


def test_bytes_needed_answers_as_needs_body_and_header_suffices_do() -> None:
    """fetch.bytes_needed (the items looked at once per FETCH) against the per-message questions
    it stands for, over items of every kind and summaries complete, incomplete and without the
    object ids stored."""
    from mailpipe_gateway.imap.fetch import bytes_needed, header_suffices

    raw = b"Subject: s\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n"
    full = summarize(raw)
    messages = [
        stored(raw),
        stored(raw, summary={"size": len(raw), "too_large": True}),
        stored(raw, summary={k: v for k, v in full.items() if k not in ("preview", "thread_id")}),
        stored(raw, summary={k: v for k, v in full.items() if k != "preview"}),
        stored(raw, summary={}),
    ]
    kinds = set()
    for text in [
        "(FLAGS UID)",
        "(FLAGS ENVELOPE)",
        "(BODYSTRUCTURE BODY RFC822.SIZE)",
        "(EMAILID)",
        "(THREADID FLAGS)",
        "(PREVIEW)",
        "(PREVIEW ENVELOPE THREADID)",
        "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        "(ENVELOPE BODY.PEEK[HEADER] THREADID)",
        "(BODY.PEEK[HEADER] PREVIEW)",
        "BODY[]",
        "(BODY.PEEK[1.HEADER])",
        "BINARY.SIZE[1]",
        "RFC822.HEADER",
        "RFC822",
    ]:
        needed = bytes_needed(items(text))
        for message in messages:
            expected = (
                None
                if not needs_body(items(text), message)
                else "header"
                if header_suffices(items(text), message)
                else "body"
            )
            assert needed(message) == expected, (text, message.summary.keys())
            kinds.add(expected)
    assert kinds == {None, "header", "body"}


def test_envelopes_and_bodystructures_are_rendered_once_per_stored_summary() -> None:
    """A folder's envelopes are fetched again and again: the second FETCH of a stored summary
    takes the rendering kept (fetch.py's _from_stored_summary), byte for byte what the summary
    renders to, and never another message's."""
    from mailpipe_gateway.imap import fetch as fetching

    raw_a = b"Subject: first\r\nFrom: A <a@example.org>\r\n\r\nbody\r\n"
    raw_b = b"Subject: second\r\nFrom: B <b@example.org>\r\nTo: c@example.org\r\n\r\nbody\r\n"
    wanted = items("(ENVELOPE BODYSTRUCTURE BODY)")
    first = {
        raw: render_fetch(1, stored(raw), wanted, None, add_uid=False, add_modseq=False)
        for raw in (raw_a, raw_b)
    }
    hits = fetching._from_stored_summary.cache_info().hits
    again = {
        raw: render_fetch(1, stored(raw), wanted, None, add_uid=False, add_modseq=False)
        for raw in (raw_a, raw_b)
    }
    assert again == first and first[raw_a] != first[raw_b]
    assert fetching._from_stored_summary.cache_info().hits == hits + 6
    for raw in (raw_a, raw_b):
        values = dict(parse_fetch(first[raw])[1])
        summary = summarize(raw)
        assert values["ENVELOPE"] == fetching.serializer.envelope(summary["envelope"])
        assert values["BODY"] == fetching.serializer.body_structure(
            summary["bodystructure"], extensible=False
        )
