"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256) against the real gateway, and the
algorithms' bounds on hostile input. tests/test_imap_sort_dovecot.py checks the same messages
(tests/thread_corpus.py) and the corpus against Dovecot."""

from __future__ import annotations

import imaplib
from collections.abc import Callable, Iterator

import pytest
import thread_corpus
from conftest import PASSWORD
from dovecot import append_exact
from imap_raw import RawIMAP

from mailpipe_gateway.imap.threads import Threadable, thread, thread_response

# What Dovecot answers for thread_corpus (tests/test_imap_sort_dovecot.py checks it still does).
ORDEREDSUBJECT = b"(1 (2)(3)(7)(14)(15))(4)(5 6)(8)(9 10)(11)(12 13)"
REFERENCES = b"(1 (2 (3 14)(15))(7))(4)((5)(6))(8)(10 9)(11)((12)(13))"


@pytest.fixture
def threaded_box(stack, new_user: Callable[..., str]) -> Iterator[RawIMAP]:
    user = new_user()
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30)
    try:
        client.login(user, PASSWORD)
        append_exact(client, "INBOX", b"Subject: gone\r\n\r\nx\r\n", flags="\\Deleted")
        thread_corpus.load(client, append_exact)
        client.select("INBOX")
        client.expunge()  # UIDs are message numbers plus one from here on
    finally:
        client.logout()
    with RawIMAP(stack.imap_port) as raw:
        raw.login(user, PASSWORD)
        assert raw.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
        yield raw


def threads(raw: RawIMAP, command: bytes) -> bytes:
    lines = raw.command(b"T", command)
    assert lines[-1].startswith(b"T OK"), lines
    (found,) = [line for line in lines if line.startswith(b"* THREAD")]
    return found.removeprefix(b"* THREAD").strip()


def test_thread_algorithms(threaded_box: RawIMAP) -> None:
    assert threads(threaded_box, b"THREAD ORDEREDSUBJECT UTF-8 ALL") == ORDEREDSUBJECT
    assert threads(threaded_box, b"THREAD REFERENCES UTF-8 ALL") == REFERENCES
    assert threads(threaded_box, b"UID THREAD REFERENCES UTF-8 ALL") == _plus_one(REFERENCES)
    assert threads(threaded_box, b"UID THREAD ORDEREDSUBJECT UTF-8 ALL") == _plus_one(ORDEREDSUBJECT)


def _plus_one(answer: bytes) -> bytes:
    """A thread list with every number one larger: the same threads by UID."""
    out, number = bytearray(), b""
    for byte in answer + b" ":
        char = bytes([byte])
        if char.isdigit():
            number += char
            continue
        if number:
            out += b"%d" % (int(number) + 1)
            number = b""
        out += char
    return bytes(out[:-1])


def test_thread_search_criteria_and_empty_results(threaded_box: RawIMAP) -> None:
    # Only the "Plan" messages: 1 and its replies, minus 7 (a reply by subject alone).
    assert threads(threaded_box, b"THREAD REFERENCES UTF-8 SUBJECT plan NOT 7") == b"(1 2 (3 14)(15))"
    assert threads(threaded_box, b"THREAD REFERENCES US-ASCII 2:3") == b"(2 3)"
    assert threads(threaded_box, b"THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing-like-it") == b""


def test_thread_errors(threaded_box: RawIMAP) -> None:
    assert threaded_box.command(b"B1", b"THREAD NOSUCH UTF-8 ALL")[-1].startswith(b"B1 BAD")
    assert threaded_box.command(b"B2", b"THREAD REFERENCES UTF-8")[-1].startswith(b"B2 BAD")
    assert threaded_box.command(b"B3", b"THREAD REFERENCES")[-1].startswith(b"B3 BAD")
    assert threaded_box.command(b"N1", b"THREAD REFERENCES KOI8-R ALL")[-1].startswith(b"N1 NO [BADCHARSET")
    assert threaded_box.command(b"OK", b"NOOP")[-1].startswith(b"OK OK")


def test_capabilities_advertise_thread(stack) -> None:
    with RawIMAP(stack.imap_port) as raw:
        for capability in (b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"):
            assert capability in raw.greeting, raw.greeting


# -- bounds: no recursion, no quadratic walk --------------------------------------------------------


def _message(number: int, msg_id: str, references: tuple[str, ...] = (), subject: str = "s") -> Threadable:
    return Threadable(number, number, subject, False, msg_id, references)


@pytest.mark.parametrize("replies_first", [False, True])
def test_a_reply_chain_deeper_than_the_stack(replies_first: bool) -> None:
    depth = 20_000  # Python's recursion limit is 1,000: anything recursive would fail here
    numbers = list(range(depth, 0, -1)) if replies_first else list(range(1, depth + 1))
    chain = [_message(numbers[0], "m1")]
    chain += [_message(numbers[k - 1], f"m{k}", (f"m{k - 1}",)) for k in range(2, depth + 1)]
    response = thread_response(thread("REFERENCES", chain))
    assert response == b"* THREAD (" + b" ".join(b"%d" % n for n in numbers) + b")\r\n"


def test_a_deeply_nested_tree_renders_without_recursion() -> None:
    # Each message has two replies, one of which has two replies, ...: nesting as deep as it is long.
    messages = [_message(1, "m1")]
    for n in range(2, 4001, 2):
        parent = f"m{n - 1}"
        messages += [_message(n, f"m{n}", (parent,)), _message(n + 1, f"m{n + 1}", (parent,))]
    response = thread_response(thread("REFERENCES", messages))
    assert response.startswith(b"* THREAD (1 (2)(3 (4)(5 (6)(7") and response.count(b"(") == response.count(
        b")"
    )


def test_hostile_references_loops_and_duplicates_terminate() -> None:
    # Every message names every other as its ancestor in a different order, and ids repeat.
    ids = [f"x{n % 50}" for n in range(300)]
    messages = [_message(n + 1, ids[n], tuple(reversed(ids[: n % 97]))) for n in range(300)]
    response = thread_response(thread("REFERENCES", messages))
    numbers = sorted(
        int(token) for token in response[len(b"* THREAD ") :].replace(b"(", b" ").replace(b")", b" ").split()
    )
    assert numbers == list(range(1, 301))  # every message exactly once
