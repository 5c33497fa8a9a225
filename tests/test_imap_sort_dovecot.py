"""Dovecot as the reference for SORT and THREAD: the same corpus, the same answers.

Every ``*.eml`` of ../shared/corpus/ is APPENDed byte for byte, in the same order and with
distinct INTERNALDATEs, into the INBOX of a Dovecot started for this module (tests/dovecot.py)
and of a mailpipe user on the dev stack, so message numbers name the same message on both.
Then both are asked the same SORT and THREAD commands and must answer the same numbers.

``DIFFERENCES`` lists, per sort key, the corpus messages whose place mailpipe gives differently
on purpose, with the reason: they are left out of both answers of every SORT using that key, and
the rest must agree. A listed message that no longer makes a difference fails, so that the list
stays true.
"""

from __future__ import annotations

import contextlib
import imaplib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import thread_corpus
from conftest import DOMAIN, PASSWORD
from dovecot import Dovecot, append_exact, require_dovecot

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
NAMES = [path.relative_to(CORPUS).as_posix() for path in CORPUS_FILES]
BASE_DATE = 1_700_000_000

SORTS = [
    "(ARRIVAL)",
    "(REVERSE ARRIVAL)",
    "(DATE)",
    "(REVERSE DATE)",
    "(SIZE)",
    "(SUBJECT)",
    "(REVERSE SUBJECT)",
    "(FROM)",
    "(TO)",
    "(CC)",
    "(DISPLAYFROM)",
    "(DISPLAYTO)",
    "(SUBJECT DATE)",
    "(FROM REVERSE SIZE)",
    "(REVERSE CC SUBJECT)",
]
THREADS = ["ORDEREDSUBJECT", "REFERENCES"]

_UINT32_DATES = (
    "Dovecot keeps sort dates as unsigned 32-bit numbers: a Date before 1970 wraps to the far future "
    "and one after 2106 to the 1970s; we sort them where they are"
)
_UNICODE_CASEMAP = (
    "Dovecot compares with i;unicode-casemap (a-umlaut as A); RFC 5256 says i;ascii-casemap, which "
    "we use, so non-ASCII letters sort after ASCII ones"
)
_TWO_SUBJECTS = (
    "two Subject fields: we sort by the one ENVELOPE shows (the last, in Dovecot's ENVELOPE too); "
    "Dovecot's SORT reads the first"
)
_EMPTY_FIRST = (
    "'To: , user@host': Dovecot's SORT reads an address without mailbox (MISSING_MAILBOX) before the "
    "comma, which its ENVELOPE, and ours, skip; we sort by the ENVELOPE's first address"
)
DIFFERENCES: dict[str, dict[str, str]] = {
    "DATE": {
        "rfc2822/example04.eml": _UINT32_DATES,
        "rfc2822/example10.eml": _UINT32_DATES,
        "plain_emails/raw_email_bad_time.eml": _UINT32_DATES,
    },
    "SUBJECT": {
        "mime_emails/raw_email_with_binary_encoded.eml": _TWO_SUBJECTS,
        "mime_emails/raw_email_with_multipart_mixed_quoted_boundary.eml": _TWO_SUBJECTS,
        "rfc6532/utf8_headers.eml": _UNICODE_CASEMAP,
    },
    "TO": {"rfc6532/utf8_headers.eml": _UNICODE_CASEMAP, "error_emails/weird_to_header.eml": _EMPTY_FIRST},
    "DISPLAYTO": {
        "rfc6532/utf8_headers.eml": _UNICODE_CASEMAP,
        "error_emails/weird_to_header.eml": _EMPTY_FIRST,
    },
}


def _arrival(index: int) -> int:
    # Corpus order reversed, one hour apart: ARRIVAL is then not just the order of appending.
    return BASE_DATE + (len(CORPUS_FILES) - index) * 3600


def _load(client: Any) -> None:
    for index, path in enumerate(CORPUS_FILES):
        append_exact(client, "INBOX", path.read_bytes(), date_time=_arrival(index))
    status, data = client.select("INBOX", readonly=True)
    assert status == "OK" and int(data[0]) == len(CORPUS_FILES), data


def _ask(client: Any) -> dict[str, bytes]:
    answers = {}
    for criteria in SORTS:
        status, data = client._simple_command("SORT", criteria, "UTF-8", "ALL")
        assert status == "OK", (criteria, data)
        answers[f"SORT {criteria}"] = client._untagged_response(status, data, "SORT")[1][-1]
    for algorithm in THREADS:
        status, data = client._simple_command("THREAD", algorithm, "UTF-8", _thread_criteria())
        assert status == "OK", (algorithm, data)
        answers[f"THREAD {algorithm}"] = client._untagged_response(status, data, "THREAD")[1][-1]
    return answers


@pytest.fixture(scope="module")
def answers(request: pytest.FixtureRequest) -> Iterator[dict[str, tuple[bytes, bytes]]]:
    require_dovecot()
    if not CORPUS_FILES:
        pytest.skip(f"the real-world mail corpus is missing: {CORPUS}")
    stack = request.getfixturevalue("stack")
    owner = f"sort-{secrets.token_hex(4)}@{DOMAIN}"
    stack.directory().add_user(owner, PASSWORD)
    with (
        Dovecot() as dovecot,
        _session(dovecot.login()) as theirs,
        _session(imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=60)) as ours,
    ):
        ours.login(owner, PASSWORD)
        _load(ours)
        _load(theirs)
        mine, dovecots = _ask(ours), _ask(theirs)
    yield {key: (mine[key], dovecots[key]) for key in mine}


@contextlib.contextmanager
def _session(client: imaplib.IMAP4) -> Iterator[imaplib.IMAP4]:
    try:
        yield client
    finally:
        try:
            client.logout()
        except Exception:
            client.shutdown()


def _numbers(names: dict[str, str]) -> set[bytes]:
    return {str(NAMES.index(name) + 1).encode() for name in names}


def _thread_criteria() -> str:
    """THREAD sorts by date and gathers by subject: the messages whose date or subject we read
    differently on purpose are left out of the threads on both sides."""
    left_out = _numbers(DIFFERENCES["DATE"]) | _numbers(DIFFERENCES["SUBJECT"])
    return "NOT " + ",".join(sorted(n.decode() for n in left_out))


@pytest.mark.parametrize("algorithm", THREADS)
def test_thread_as_dovecot(answers: dict[str, tuple[bytes, bytes]], algorithm: str) -> None:
    ours, theirs = answers[f"THREAD {algorithm}"]
    assert ours.count(b"(") >= len(CORPUS_FILES) - 10  # one per message, as good as all of them
    if ours != theirs:
        first = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b)
        pytest.fail(
            f"THREAD {algorithm}: first difference at byte {first}:\n"
            f"ours    {ours[max(first - 40, 0) : first + 40]!r}\n"
            f"Dovecot {theirs[max(first - 40, 0) : first + 40]!r}"
        )


@pytest.mark.parametrize("criteria", SORTS)
def test_sort_as_dovecot(answers: dict[str, tuple[bytes, bytes]], criteria: str) -> None:
    ours, theirs = (answer.split() for answer in answers[f"SORT {criteria}"])
    keys = [word for word in criteria.strip("()").split() if word != "REVERSE"]
    left_out = set().union(*(_numbers(DIFFERENCES.get(key, {})) for key in keys))
    if len(keys) == 1 and left_out:  # the listed messages still make a difference
        assert ours != theirs, f"{criteria}: no longer differs from Dovecot: empty its DIFFERENCES"
    mine = [n for n in ours if n not in left_out]
    dovecot = [n for n in theirs if n not in left_out]
    if mine != dovecot:
        first = next(i for i, (a, b) in enumerate(zip(mine, dovecot, strict=False)) if a != b)
        pytest.fail(
            f"SORT {criteria}: first difference at item {first}: ours {mine[first : first + 8]} "
            f"Dovecot {dovecot[first : first + 8]}\nours:    {ours!r}\nDovecot: {theirs!r}"
        )


def test_thread_corpus_as_dovecot() -> None:
    """tests/thread_corpus.py's messages thread as test_imap_threads.py expects, in Dovecot too."""
    from test_imap_threads import ORDEREDSUBJECT, REFERENCES

    require_dovecot()
    with Dovecot() as dovecot, _session(dovecot.login()) as client:
        thread_corpus.load(client, append_exact)
        client.select("INBOX")
        for algorithm, expected in (("ORDEREDSUBJECT", ORDEREDSUBJECT), ("REFERENCES", REFERENCES)):
            status, data = client._simple_command("THREAD", algorithm, "UTF-8", "ALL")
            assert status == "OK", data
            assert client._untagged_response(status, data, "THREAD")[1][-1] == expected, algorithm


def test_differences_name_corpus_messages() -> None:
    unknown = sorted({name for names in DIFFERENCES.values() for name in names} - set(NAMES))
    assert not unknown
