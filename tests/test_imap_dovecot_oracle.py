"""Dovecot as the reference: for every corpus message, our FETCH answers equal Dovecot's.

Every ``*.eml`` of ../shared/corpus/ is APPENDed byte for byte (``append_exact``) into the INBOX
of a Dovecot started for this module (tests/dovecot.py) and into a mailpipe user's INBOX on the
dev stack. Then, per message, both servers are asked ENVELOPE, BODYSTRUCTURE and RFC822.SIZE,
and BODY.PEEK[p.MIME] and BODY.PEEK[p] for every part p either BODYSTRUCTURE describes (1, 2,
2.1, 2.1.1, ...). The answers are parsed (tests/dovecot.py ``parse``) and compared as values, so
quoting choices (literal or quoted string) do not count. In BODYSTRUCTURE, what IMAP compares
without case is compared without case: type, subtype, encoding, disposition type and parameter
names (not parameter values). ENVELOPE is compared field by field (``ENVELOPE.subject``, ...).
BINARY[] is not compared: there mailpipe differs on purpose (fetch.py ``binary_section``).

``DIFFERENCES`` lists every (message, field) where we differ on purpose or by a known bug, with
the reason. A difference that is not listed fails, and so does a listed one that no longer
differs, so that the list stays true.
"""

from __future__ import annotations

import contextlib
import imaplib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import DOMAIN, PASSWORD
from dovecot import Atom, Dovecot, append_exact, fetch, fetch_data, parse, require_dovecot

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
NAMES = [path.relative_to(CORPUS).as_posix() for path in CORPUS_FILES]
INTERNALDATE = 1_700_000_000  # the same for both servers, though nothing here compares it
SUMMARY_FIELDS = ("ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE")
ENVELOPE_FIELDS = (
    "date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id"
)  # fmt: skip

# Why mailpipe's answer differs from Dovecot's, per (corpus message, field). Reasons starting with
# "BUG:" are defects to fix in mailpipe (then the entry goes); the others are deliberate.
_RAW_SUBJECT = (
    "the Subject is sent as its raw unfolded value (summary.py: envelope strings are the unfolded raw "
    "values); Dovecot cleans it for humans (imap_append_string_for_humans: runs of spaces and tabs "
    "become one space, leading and trailing ones go)"
)
_LOOSE_BOUNDARY = (
    "an unquoted boundary holding '=' (RFC 2045 wants it quoted): we take the value up to ';' or space "
    "(headers._UNQUOTED_VALUE, on purpose, as mail clients do) and find the real close delimiter; "
    'Dovecot\'s token stops at \'=\' (boundary "----"), so the close delimiter line "------=_...--" '
    "opens one more, empty text/plain part"
)
_NO_DISPOSITION = (
    "a Content-Disposition without a disposition token (empty, or an encoded word): we send NIL, "
    'Dovecot an empty type ("" NIL)'
)
DIFFERENCES: dict[tuple[str, str], str] = {
    ("error_emails/multiple_invalid_content_dispositions.eml", "BODYSTRUCTURE"): _NO_DISPOSITION,
    ("error_emails/missing_content_disposition.eml", "BODYSTRUCTURE"): _NO_DISPOSITION,
    ("mime_emails/raw_email_with_binary_encoded.eml", "BODYSTRUCTURE"): _LOOSE_BOUNDARY,
    ("mime_emails/raw_email_with_illegal_boundary.eml", "BODYSTRUCTURE"): _LOOSE_BOUNDARY,
    ("mime_emails/raw_email_with_illegal_boundary.eml", "BODY[3.MIME]"): (
        f"no part 3 for us (empty), Dovecot's extra part has just the empty line as header: {_LOOSE_BOUNDARY}"
    ),
    ("plain_emails/raw_email_bad_time.eml", "BODYSTRUCTURE"): _LOOSE_BOUNDARY,
    ("error_emails/bad_date_header.eml", "ENVELOPE.date"): (
        "'Date: ' with its value on a continuation line: we strip the leading whitespace of the unfolded "
        "value (headers.header_fields), Dovecot only the whitespace after the colon and keeps the "
        "continuation's indent ('       <HR>'); not a date either way"
    ),
    ("error_emails/bad_date_header.eml", "ENVELOPE.subject"): f"a trailing space: {_RAW_SUBJECT}",
    ("error_emails/bad_subject.eml", "ENVELOPE.subject"): f"a trailing space: {_RAW_SUBJECT}",
    ("error_emails/empty_in_reply_to.eml", "ENVELOPE.subject"): f"a trailing space: {_RAW_SUBJECT}",
    ("error_emails/must_supply_encoding.eml", "ENVELOPE.subject"): f"a trailing space: {_RAW_SUBJECT}",
    ("plain_emails/raw_email_incorrect_header.eml", "ENVELOPE.subject"): f"a trailing space: {_RAW_SUBJECT}",
    ("rfc2822/example14.eml", "ENVELOPE.subject"): f"folded with a tab and double spaces: {_RAW_SUBJECT}",
    ("error_emails/weird_to_header.eml", "ENVELOPE.to"): (
        "an empty list member ('To: , a@b'): RFC 5322 obs-addr-list allows null members and we skip them; "
        'Dovecot reports each as (NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")'
    ),
    ("plain_emails/raw_email_with_at_display_name.eml", "ENVELOPE.to"): (
        "'Mikel@Lindsaar <raasdnil@gmail.com>' (an unquoted '@' in a display name): we recover the name "
        "'Mikel@Lindsaar', the address and the rest of the list; Dovecot reads the addr-spec "
        "Mikel@Lindsaar, stops at '<' and drops raasdnil@gmail.com and tom@gmail.com"
    ),
    ("rfc2822/example11.eml", "ENVELOPE.to"): (
        "an empty list member ('<@machine.tld:mary@example.net>, , jdoe@...'): skipped, as RFC 5322 "
        "obs-addr-list allows; Dovecot reports it as MISSING_MAILBOX, see weird_to_header.eml"
    ),
}


@dataclass
class Answers:
    """What each server answered for one message: field -> parsed value."""

    ours: dict[str, Any] = field(default_factory=dict)
    dovecot: dict[str, Any] = field(default_factory=dict)


# -- comparing --------------------------------------------------------------------------------


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, bytes) else value


def _params(params: Any) -> Any:
    """body-fld-param with lower-cased names (values untouched)."""
    if not isinstance(params, list):
        return params
    return [_lower(item) if i % 2 == 0 else item for i, item in enumerate(params)]


def _extension(values: list[Any]) -> list[Any]:
    """Extension data after body-fld-md5 (single part) or body-fld-param (multipart): the
    disposition's type and parameter names lose their case."""
    out = list(values)
    if out and isinstance(out[0], list) and len(out[0]) == 2:
        out[0] = [_lower(out[0][0]), _params(out[0][1])]
    return out


def is_message_part(node: list[Any]) -> bool:
    """A message/rfc822 body part: envelope, body and lines follow its size."""
    return (
        len(node) >= 10
        and _lower(node[0]) == b"message"
        and _lower(node[1]) == b"rfc822"
        and isinstance(node[7], list)
        and isinstance(node[8], list)
    )


def normalise_body(node: Any) -> Any:
    """A parsed BODYSTRUCTURE with the case-insensitive tokens lower-cased."""
    if not isinstance(node, list) or not node:
        return node
    if isinstance(node[0], list):  # multipart: parts, subtype, then extension data
        children = _children(node)
        parts = [normalise_body(part) for part in children]
        rest = node[len(children) :]
        if not rest:
            return parts
        ext = [_params(rest[1]), *_extension(rest[2:])] if len(rest) > 1 else []
        return [*parts, _lower(rest[0]), *ext]
    out = [_lower(node[0]), _lower(node[1]), _params(node[2]), *node[3:5], _lower(node[5]), *node[6:]]
    if is_message_part(node):
        out[8] = normalise_body(node[8])
        tail = 10
    elif out[0] == b"text":
        tail = 8
    else:
        tail = 7
    if len(out) > tail + 1:  # md5, then disposition, language, location, ...
        out[tail + 1 :] = _extension(out[tail + 1 :])
    return out


def part_paths(body: Any, prefix: str = "") -> list[str]:
    """The section-part numbers of a message whose BODYSTRUCTURE is ``body`` (RFC 9051 6.4.5): in a
    multipart its parts 1..n, in a single-part message its body 1; inside a message/rfc822 part
    the numbers continue into the message it holds."""
    if not isinstance(body, list) or not body:
        return []
    if isinstance(body[0], list):
        return [
            path for i, part in enumerate(_children(body), 1) for path in _part_paths(part, f"{prefix}{i}")
        ]
    return _part_paths(body, f"{prefix}1")


def _children(multipart: list[Any]) -> list[Any]:
    """The body parts of a multipart BODYSTRUCTURE: the lists before its subtype."""
    count = next((i for i, item in enumerate(multipart) if not isinstance(item, list)), len(multipart))
    return multipart[:count]


def _part_paths(part: list[Any], path: str) -> list[str]:
    out = [path]
    if isinstance(part[0], list):
        for i, child in enumerate(_children(part), 1):
            out += _part_paths(child, f"{path}.{i}")
    elif is_message_part(part):
        out += part_paths(part[8], f"{path}.")
    return out


def _path_key(path: str) -> tuple[int, ...]:
    return tuple(int(number) for number in path.split("."))


def compared(values: dict[str, Any]) -> dict[str, Any]:
    """One server's answers as compared: BODYSTRUCTURE normalised, ENVELOPE split into its ten
    fields (``ENVELOPE.subject``, ...) so that each can be listed in DIFFERENCES on its own."""
    out = dict(values)
    if "BODYSTRUCTURE" in out:
        out["BODYSTRUCTURE"] = normalise_body(out["BODYSTRUCTURE"])
    envelope = out.pop("ENVELOPE", None)
    if isinstance(envelope, list) and len(envelope) == len(ENVELOPE_FIELDS):
        out.update((f"ENVELOPE.{name}", value) for name, value in zip(ENVELOPE_FIELDS, envelope, strict=True))
    elif envelope is not None:
        out["ENVELOPE"] = envelope
    return out


def first_difference(ours: Any, theirs: Any, where: str = "") -> str:
    """Where two parsed values first differ, as ``[i][j]: ours != theirs``."""
    if isinstance(ours, list) and isinstance(theirs, list):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            if a != b:
                return first_difference(a, b, f"{where}[{i}]")
        if len(ours) != len(theirs):
            return f"{where}: {len(ours)} items, Dovecot {len(theirs)}"
    return f"{where or 'value'}: {ours!r} != Dovecot's {theirs!r}"


def differences(answers: Answers) -> dict[str, tuple[Any, Any]]:
    """field -> (ours, Dovecot's), normalised, for every field where they differ."""
    ours, theirs = compared(answers.ours), compared(answers.dovecot)
    out = {}
    for name in sorted(set(ours) | set(theirs)):
        if ours.get(name, "<missing>") != theirs.get(name, "<missing>"):
            out[name] = (ours.get(name, "<missing>"), theirs.get(name, "<missing>"))
    return out


# -- the two servers, loaded ----------------------------------------------------------------------


def _load(client: Any, select: str) -> dict[str, int]:
    """APPEND every corpus message; message name -> UID."""
    uids = {}
    for name, path in zip(NAMES, CORPUS_FILES, strict=True):
        uid = append_exact(client, "INBOX", path.read_bytes(), date_time=INTERNALDATE)
        assert uid is not None, f"{select}: no APPENDUID for {name}"
        uids[name] = uid
    status, data = client.select("INBOX", readonly=True)
    assert status == "OK", data
    assert int(data[0]) == len(CORPUS_FILES), f"{select}: INBOX holds {data[0]!r} messages"
    return uids


def _ask(client: Any, uids: dict[str, int], answers: dict[str, Answers], side: str) -> None:
    summaries = fetch(client, "1:*", "(UID " + " ".join(SUMMARY_FIELDS) + ")")
    by_uid = {values["UID"]: values for values in summaries.values()}
    for name, uid in uids.items():
        values = dict(by_uid[uid])
        del values["UID"]
        setattr(answers[name], side, values)


def _ask_sections(client: Any, uids: dict[str, int], answers: dict[str, Answers], side: str) -> None:
    for name, uid in uids.items():
        both = answers[name]
        paths = sorted(
            set(part_paths(both.ours.get("BODYSTRUCTURE")))
            | set(part_paths(both.dovecot.get("BODYSTRUCTURE"))),
            key=_path_key,
        )
        if not paths:
            continue
        items = " ".join(f"BODY.PEEK[{path}.MIME] BODY.PEEK[{path}]" for path in paths)
        (values,) = fetch(client, str(uid), f"(UID {items})", uid=True).values()
        del values["UID"]
        getattr(both, side).update(values)


@pytest.fixture(scope="module")
def answers(request: pytest.FixtureRequest) -> Iterator[dict[str, Answers]]:
    """Both servers' answers for every corpus message (one Dovecot and one mailpipe user per module)."""
    require_dovecot()  # before the dev stack starts, so that a missing Dovecot skips at once
    if not CORPUS_FILES:
        pytest.skip(f"the real-world mail corpus is missing: {CORPUS}")
    stack = request.getfixturevalue("stack")
    # As the new_user fixture does, but once for the module: the load is the slow part.
    owner = f"oracle-{secrets.token_hex(4)}@{DOMAIN}"
    stack.directory().add_user(owner, PASSWORD)
    result = {name: Answers() for name in NAMES}
    with (
        Dovecot() as dovecot,
        _session(dovecot.login()) as theirs,
        _session(imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=60)) as ours,
    ):
        ours.login(owner, PASSWORD)
        sides = (("ours", ours, _load(ours, "mailpipe")), ("dovecot", theirs, _load(theirs, "Dovecot")))
        for side, client, uids in sides:
            _ask(client, uids, result, side)
        for side, client, uids in sides:
            _ask_sections(client, uids, result, side)
    yield result


@contextlib.contextmanager
def _session(client: imaplib.IMAP4) -> Iterator[imaplib.IMAP4]:
    try:
        yield client
    finally:
        try:
            client.logout()
        except Exception:
            client.shutdown()


# -- the tests ------------------------------------------------------------------------------------


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 100, f"the shared corpus should be at {CORPUS}"


@pytest.mark.parametrize("name", NAMES)
def test_fetch_matches_dovecot(answers: dict[str, Answers], name: str) -> None:
    both = answers[name]
    for side in (both.ours, both.dovecot):
        assert set(SUMMARY_FIELDS) <= set(side), f"{name}: missing summary fields in {sorted(side)}"
    found = differences(both)
    unexplained = {key: values for key, values in found.items() if (name, key) not in DIFFERENCES}
    stale = sorted(key for (message, key) in DIFFERENCES if message == name and key not in found)
    report = "".join(
        f"\n{key}: {first_difference(ours, theirs)}\n  ours:    {ours!r}\n  Dovecot: {theirs!r}"
        for key, (ours, theirs) in unexplained.items()
    )
    assert not unexplained, f"{name}: mailpipe differs from Dovecot in {sorted(unexplained)}{report}"
    assert not stale, f"{name}: DIFFERENCES lists {stale}, which no longer differ: remove them"


def test_differences_name_corpus_messages() -> None:
    unknown = sorted({message for message, _ in DIFFERENCES} - set(NAMES))
    assert not unknown, f"DIFFERENCES names messages that are not in the corpus: {unknown}"
    assert all(reason.strip() for reason in DIFFERENCES.values())


def test_structure_walk() -> None:
    """part_paths and normalise_body on a hand-written BODYSTRUCTURE."""
    text = [b"TEXT", b"PLAIN", [b"CHARSET", b"UTF-8"], None, None, b"7BIT", 3, 1, None, None, None, None]
    inner = [text, text, b"ALTERNATIVE", [b"BOUNDARY", b"x"], None, None, None]
    envelope = [None] * 10
    message = [
        b"MESSAGE",
        b"RFC822",
        None,
        None,
        None,
        b"7BIT",
        9,
        envelope,
        inner,
        4,
        None,
        None,
        None,
        None,
    ]
    attachment = [
        b"APPLICATION",
        b"PDF",
        None,
        None,
        None,
        b"BASE64",
        5,
        None,
        [b"ATTACHMENT", [b"FILENAME", b"A"]],
    ]
    root = [text, message, attachment, b"MIXED", [b"BOUNDARY", b"y"], None, None, None]
    assert part_paths(root) == ["1", "2", "2.1", "2.2", "3"]
    assert part_paths(text) == ["1"]
    assert part_paths([inner, b"MIXED"]) == ["1", "1.1", "1.2"]
    normal = normalise_body(root)
    assert normal[0][:3] == [b"text", b"plain", [b"charset", b"UTF-8"]]
    assert normal[1][8][2:4] == [b"alternative", [b"boundary", b"x"]]
    assert normal[2][8] == [b"attachment", [b"filename", b"A"]]
    assert normal[3:5] == [b"mixed", [b"boundary", b"y"]]


def test_response_parser() -> None:
    """tests/dovecot.py's reader of responses: what the comparison above stands on."""
    text = (
        b"12 (UID 7 FLAGS (\\Seen $Label1) BODY[HEADER.FIELDS (DATE FROM)]<0> {5}\r\na\r\n)b"
        b' ENVELOPE ("d" NIL (("N \\"q\\"" NIL "m" "h")) nil) BINARY[1] ~{2}\r\n\x00\x01 RFC822.SIZE 0)'
    )
    assert parse(text) == [
        12,
        [
            Atom("UID"), 7,
            Atom("FLAGS"), [Atom("\\Seen"), Atom("$Label1")],
            Atom("BODY[HEADER.FIELDS (DATE FROM)]<0>"), b"a\r\n)b",
            Atom("ENVELOPE"), [b"d", None, [[b'N "q"', None, b"m", b"h"]], None],
            Atom("BINARY[1]"), b"\x00\x01",
            Atom("RFC822.SIZE"), 0,
        ],
    ]  # fmt: skip
    # imaplib's shape: (text up to the literal, literal) tuples, then the rest of the line
    data = [(b"3 (UID 9 BODY[1] {2}", b"hi"), (b" BODY[1.MIME] {0}", b""), b")", b"4 (UID 10)"]
    assert fetch_data(data) == {3: {"UID": 9, "BODY[1]": b"hi", "BODY[1.MIME]": b""}, 4: {"UID": 10}}
    with pytest.raises(ValueError):
        parse(b"(unbalanced")
    with pytest.raises(ValueError):
        parse(b"{10}\r\nshort")
