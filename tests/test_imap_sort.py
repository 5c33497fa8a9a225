"""SORT, UID SORT and ESORT (RFC 5256, 5267, 5957) against the real gateway, and the base subject."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Iterator

import pytest
from conftest import PASSWORD
from dovecot import append_exact
from imap_raw import RawIMAP

from mailpipe_gateway.imap.sort import base_subject


@pytest.mark.parametrize(
    ("subject", "base", "marked"),
    [
        ("Apple", "Apple", False),
        ("Re: Apple", "Apple", True),
        ("RE:re: Fwd:  Apple", "Apple", True),
        ("Re: [list] Apple", "Apple", True),
        ("[list] Re: Apple", "Apple", True),
        ("[list] [other] Apple", "Apple", False),
        ("[only a blob]", "[only a blob]", False),  # removing it would leave nothing
        ("Apple (fwd) (FWD)  ", "Apple", True),
        ("[Fwd: Re: Apple]", "Apple", True),
        ("Re[2]: Apple", "Apple", True),
        ("fw: Apple", "Apple", True),
        ("Reply: Apple", "Reply: Apple", False),
        ("=?UTF-8?Q?Re:_=C3=84pfel?=", "Äpfel", True),
        ("  Apple\r\n\tpie  ", "Apple pie", False),
        ("", "", False),
    ],
)
def test_base_subject(subject: str, base: str, marked: bool) -> None:
    assert base_subject(subject) == (base, marked)


def test_base_subject_of_a_long_subject() -> None:
    assert base_subject("Re: " * 15_000 + "Apple")[0] == "Apple"
    assert base_subject("[x]" * 20_000 + "y")[0] == "y"


# Four messages whose every sort key puts them in a different order (see the expectations below),
# appended after one that is expunged, so that UIDs are message numbers plus one.
MESSAGES = [
    (
        1_700_000_300,
        b'From: "Zed" <alice@a.test>\r\nTo: bob@b.test\r\nCc: carol@c.test\r\n'
        b"Subject: Re: [list] Apple\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000\r\n\r\nshort\r\n",
    ),
    (
        1_700_000_100,
        b"From: Bob <bob@a.test>\r\nTo: zoe@b.test\r\nSubject: banana (fwd)\r\n"
        b"Date: Mon, 1 Jan 2024 23:00:00 -0500\r\n\r\nmedium body\r\n",
    ),
    (1_700_000_200, b"From: carol@a.test\r\nSubject: Fwd: apple\r\n\r\nno date at all\r\n"),
    (
        1_700_000_000,
        b"From: =?UTF-8?Q?=C3=84rger?= <dave@a.test>\r\nTo: Amy <amy@b.test>\r\nSubject: [Fwd: Cherry]\r\n"
        b"Date: Wed, 3 Jan 2024 08:00:00 +0100\r\n\r\n" + b"long body\r\n" * 50,
    ),
]


@pytest.fixture
def sorted_box(stack, new_user: Callable[..., str]) -> Iterator[RawIMAP]:
    user = new_user()
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30)
    try:
        client.login(user, PASSWORD)
        append_exact(client, "INBOX", b"Subject: gone\r\n\r\nx\r\n", flags="\\Deleted")
        for internaldate, raw in MESSAGES:
            append_exact(client, "INBOX", raw, date_time=internaldate)
        client.select("INBOX")
        client.expunge()
    finally:
        client.logout()
    with RawIMAP(stack.imap_port) as raw:
        raw.login(user, PASSWORD)
        assert raw.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
        raw.user = user  # type: ignore[attr-defined]  # for tests that open a second session
        yield raw


def sort(raw: RawIMAP, arguments: str, command: str = "SORT") -> list[int]:
    lines = raw.command(b"T", f"{command} {arguments}".encode())
    assert lines[-1].startswith(b"T OK"), lines
    (found,) = [line for line in lines if line.startswith(b"* SORT")]
    return [int(n) for n in found.split()[2:]]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("(ARRIVAL)", [4, 2, 3, 1]),
        ("(REVERSE ARRIVAL)", [1, 3, 2, 4]),
        ("(DATE)", [3, 2, 1, 4]),  # message 3 has no Date: its INTERNALDATE (2023) stands in
        ("(FROM)", [1, 2, 3, 4]),  # local parts: alice, bob, carol, dave
        ("(DISPLAYFROM)", [2, 3, 1, 4]),  # Bob, carol@a.test, Zed, Ärger (UTF-8 after ASCII)
        ("(TO)", [3, 4, 1, 2]),  # none, amy, bob, zoe
        ("(DISPLAYTO)", [3, 4, 1, 2]),  # none, Amy, bob@b.test, zoe@b.test
        ("(CC)", [2, 3, 4, 1]),  # only message 1 has a Cc: the others tie at "" in number order
        ("(SUBJECT)", [1, 3, 2, 4]),  # apple, apple, banana, cherry
        ("(REVERSE SUBJECT)", [4, 2, 1, 3]),  # equal subjects stay in number order
        ("(SUBJECT ARRIVAL)", [3, 1, 2, 4]),
        ("(SUBJECT REVERSE ARRIVAL)", [1, 3, 2, 4]),
        ("(REVERSE SIZE)", [4, 1, 2, 3]),
    ],
)
def test_sort_keys(sorted_box: RawIMAP, criteria: str, expected: list[int]) -> None:
    if "SIZE" in criteria:  # header lengths decide between the small ones: ask for them
        lines = sorted_box.command(b"F", b"FETCH 1:* RFC822.SIZE")
        sizes = {
            int(m[0]): int(m[1])
            for m in re.findall(rb"\* (\d+) FETCH \(RFC822.SIZE (\d+)\)", b"".join(lines))
        }
        expected = sorted(sizes, key=lambda n: (-sizes[n], n))
    assert sort(sorted_box, f"{criteria} UTF-8 ALL") == expected


def test_uid_sort_and_search_criteria(sorted_box: RawIMAP) -> None:
    assert sort(sorted_box, "(ARRIVAL) UTF-8 ALL", "UID SORT") == [5, 3, 4, 2]
    assert sort(sorted_box, "(ARRIVAL) US-ASCII FROM bob") == [2]
    assert sort(sorted_box, "(ARRIVAL) UTF-8 NOT FROM bob SUBJECT apple") == [3, 1]
    assert sort(sorted_box, "(DATE) UTF-8 UID 2:4") == [3, 2, 1]
    assert sort(sorted_box, "(SUBJECT) UTF-8 SUBJECT nothing-like-it") == []


def test_esort_return_options_and_partial(sorted_box: RawIMAP) -> None:
    lines = sorted_box.command(b"E1", b"SORT RETURN (MIN MAX ALL COUNT) (ARRIVAL) UTF-8 ALL")
    assert lines == [b'* ESEARCH (TAG "E1") MIN 4 MAX 1 ALL 4,2:3,1 COUNT 4\r\n', lines[-1]]
    lines = sorted_box.command(b"E2", b"UID SORT RETURN () (ARRIVAL) UTF-8 ALL")
    assert lines[0] == b'* ESEARCH (TAG "E2") UID ALL 5,3:4,2\r\n'
    lines = sorted_box.command(b"E3", b"SORT RETURN (PARTIAL 1:2 COUNT) (REVERSE ARRIVAL) UTF-8 ALL")
    assert lines[0] == b'* ESEARCH (TAG "E3") COUNT 4 PARTIAL (1:2 1,3)\r\n'
    lines = sorted_box.command(b"E4", b"SORT RETURN (PARTIAL 7:5) (ARRIVAL) UTF-8 ALL")
    assert lines[0] == b'* ESEARCH (TAG "E4") PARTIAL (5:7 NIL)\r\n'
    lines = sorted_box.command(b"E5", b"SORT RETURN (COUNT MIN) (ARRIVAL) UTF-8 FROM nobody")
    assert lines[0] == b'* ESEARCH (TAG "E5") COUNT 0\r\n'


def test_sort_errors(stack, sorted_box: RawIMAP) -> None:
    assert sorted_box.command(b"B1", b"SORT (NAME) UTF-8 ALL")[-1].startswith(b"B1 BAD")
    assert sorted_box.command(b"B2", b"SORT ARRIVAL UTF-8 ALL")[-1].startswith(b"B2 BAD")
    assert sorted_box.command(b"B3", b"SORT (ARRIVAL) UTF-8")[-1].startswith(b"B3 BAD")
    assert sorted_box.command(b"B4", b"SORT () UTF-8 ALL")[-1].startswith(b"B4 BAD")
    assert sorted_box.command(b"B5", b"SORT (REVERSE) UTF-8 ALL")[-1].startswith(b"B5 BAD")
    assert sorted_box.command(b"B6", b"SORT RETURN (SAVE) (ARRIVAL) UTF-8 ALL")[-1].startswith(b"B6 BAD")
    answer = sorted_box.command(b"N1", b"SORT (ARRIVAL) KOI8-R ALL")[-1]
    assert answer.startswith(b"N1 NO [BADCHARSET")
    assert sorted_box.command(b"OK", b"NOOP")[-1].startswith(b"OK OK")  # the session goes on
    with RawIMAP(stack.imap_port) as other:
        other.login(sorted_box.user, PASSWORD)  # type: ignore[attr-defined]
        assert other.command(b"A", b"SORT (ARRIVAL) UTF-8 ALL")[-1].startswith(b"A BAD")  # not selected


def test_capabilities_advertise_sort(stack) -> None:
    with RawIMAP(stack.imap_port) as raw:
        caps = raw.greeting.split()
        for capability in (b"SORT", b"SORT=DISPLAY", b"ESORT"):
            assert capability in caps or capability + b"]" in caps, raw.greeting
