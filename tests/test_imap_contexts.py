"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267): RETURN (PARTIAL ...), UPDATE and CANCELUPDATE, with
changes made by another session, by the session itself, and heard during IDLE."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from conftest import PASSWORD
from imap_raw import RawIMAP


def _message(n: int) -> bytes:
    return f"From: p{n}@x.test\r\nSubject: message {n}\r\n\r\nbody {n}\r\n".encode()


def _append(raw: RawIMAP, message: bytes) -> None:
    # INTERNALDATE one minute apart per message number: ARRIVAL orders them.
    n = int(message.split(b"body ")[1].split()[0])
    date = b'"01-Jan-2024 00:%02d:00 +0000" ' % n
    raw.send(b"A APPEND INBOX " + date + b"{%d+}\r\n" % len(message) + message + b"\r\n")
    answer = raw.until(b"A")
    assert answer[-1].startswith(b"A OK"), answer


@pytest.fixture
def pair(stack, new_user: Callable[..., str]) -> Iterator[tuple[RawIMAP, RawIMAP]]:
    """Two sessions of one user on an INBOX of three unseen messages (UIDs 1-3): the first
    watches, the second changes things."""
    user = new_user()
    with RawIMAP(stack.imap_port) as watcher, RawIMAP(stack.imap_port) as writer:
        for raw in (watcher, writer):
            raw.login(user, PASSWORD)
        for n in (1, 2, 3):
            _append(writer, _message(n))
        for raw in (watcher, writer):
            assert raw.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
        yield watcher, writer


def _esearch(lines: list[bytes], tag: bytes) -> list[bytes]:
    return [line for line in lines if line.startswith(b'* ESEARCH (TAG "' + tag + b'")')]


def test_search_partial(pair: tuple[RawIMAP, RawIMAP]) -> None:
    watcher, _ = pair
    lines = watcher.command(b"P1", b"UID SEARCH RETURN (PARTIAL 2:3) ALL")
    assert _esearch(lines, b"P1") == [b'* ESEARCH (TAG "P1") UID PARTIAL (2:3 2:3)\r\n']
    lines = watcher.command(b"P2", b"SEARCH RETURN (COUNT PARTIAL 3:9) ALL")
    assert _esearch(lines, b"P2") == [b'* ESEARCH (TAG "P2") COUNT 3 PARTIAL (3:9 3)\r\n']
    lines = watcher.command(b"P3", b"SEARCH RETURN (PARTIAL 4:5) ALL")
    assert _esearch(lines, b"P3") == [b'* ESEARCH (TAG "P3") PARTIAL (4:5 NIL)\r\n']
    assert watcher.command(b"P4", b"SEARCH RETURN (PARTIAL 0:5) ALL")[-1].startswith(b"P4 BAD")
    assert watcher.command(b"P5", b"SEARCH RETURN (PARTIAL) ALL")[-1].startswith(b"P5 BAD")


def test_search_update_follows_another_session(pair: tuple[RawIMAP, RawIMAP]) -> None:
    watcher, writer = pair
    lines = watcher.command(b"U1", b"UID SEARCH RETURN (COUNT UPDATE) UNSEEN")
    assert _esearch(lines, b"U1") == [b'* ESEARCH (TAG "U1") UID COUNT 3\r\n']
    assert writer.command(b"W", b"UID STORE 1,3 +FLAGS (\\Seen)")[-1].startswith(b"W OK")
    assert _esearch(watcher.command(b"N", b"NOOP"), b"U1") == [
        b'* ESEARCH (TAG "U1") UID REMOVEFROM (0 1,3)\r\n'
    ]
    _append(writer, _message(4))
    assert _esearch(watcher.command(b"N", b"NOOP"), b"U1") == [b'* ESEARCH (TAG "U1") UID ADDTO (0 4)\r\n']
    assert _esearch(watcher.command(b"N", b"NOOP"), b"U1") == []  # nothing changed: nothing said
    # The watcher's own change is reported too, after its STORE.
    lines = watcher.command(b"O", b"UID STORE 2 +FLAGS (\\Seen)")
    assert _esearch(lines, b"U1") == [b'* ESEARCH (TAG "U1") UID REMOVEFROM (0 2)\r\n']
    assert watcher.command(b"C", b'CANCELUPDATE "U1"')[-1].startswith(b"C OK")
    _append(writer, _message(5))
    assert _esearch(watcher.command(b"N", b"NOOP"), b"U1") == []


def test_sort_update_positions(pair: tuple[RawIMAP, RawIMAP]) -> None:
    watcher, writer = pair
    lines = watcher.command(b"S1", b"UID SORT RETURN (ALL UPDATE) (REVERSE ARRIVAL) UTF-8 UNDELETED")
    assert _esearch(lines, b"S1") == [b'* ESEARCH (TAG "S1") UID ALL 3,2,1\r\n']
    _append(writer, _message(4))  # the newest: first in REVERSE ARRIVAL
    assert _esearch(watcher.command(b"N", b"NOOP"), b"S1") == [b'* ESEARCH (TAG "S1") UID ADDTO (1 4)\r\n']
    assert writer.command(b"W", b"UID STORE 2 +FLAGS (\\Deleted)")[-1].startswith(b"W OK")
    # 4,3,2,1: UID 2 was third.
    assert _esearch(watcher.command(b"N", b"NOOP"), b"S1") == [
        b'* ESEARCH (TAG "S1") UID REMOVEFROM (3 2)\r\n'
    ]
    assert writer.command(b"W", b"UID STORE 2 -FLAGS (\\Deleted)")[-1].startswith(b"W OK")
    assert writer.command(b"W", b"UID STORE 4 +FLAGS (\\Deleted)")[-1].startswith(b"W OK")
    lines = _esearch(watcher.command(b"N", b"NOOP"), b"S1")
    assert lines == [b'* ESEARCH (TAG "S1") UID REMOVEFROM (1 4) ADDTO (2 2)\r\n']


def test_update_heard_during_idle(pair: tuple[RawIMAP, RawIMAP]) -> None:
    watcher, writer = pair
    watcher.command(b"U", b"UID SEARCH RETURN (UPDATE) ALL")
    watcher.send(b"I IDLE\r\n")
    assert watcher.line().startswith(b"+")
    _append(writer, _message(4))
    heard = []
    while True:  # the socket's timeout (30 s) ends a wait that never comes
        line = watcher.line()
        assert line, heard
        heard.append(line)
        if line.startswith(b'* ESEARCH (TAG "U")'):
            break
    assert heard[-1] == b'* ESEARCH (TAG "U") UID ADDTO (0 4)\r\n', heard
    watcher.send(b"DONE\r\n")
    assert watcher.until(b"I")[-1].startswith(b"I OK")


def test_updates_declined_where_they_would_cost_too_much(pair: tuple[RawIMAP, RawIMAP]) -> None:
    watcher, _ = pair
    lines = watcher.command(b"D1", b"SEARCH RETURN (UPDATE) ALL")
    assert lines[0].startswith(b'* NO [NOUPDATE "D1"]') and lines[-1].startswith(b"D1 OK"), lines
    lines = watcher.command(b"D2", b"UID SEARCH RETURN (UPDATE COUNT) BODY body")
    assert lines[0].startswith(b'* NO [NOUPDATE "D2"]') and b"COUNT 3" in lines[1], lines
    for n in range(10):
        lines = watcher.command(b"K%d" % n, b"UID SEARCH RETURN (UPDATE) ALL")
        assert not lines[0].startswith(b"* NO"), lines
    lines = watcher.command(b"D3", b"UID SORT RETURN (UPDATE) (ARRIVAL) UTF-8 ALL")
    assert lines[0].startswith(b'* NO [NOUPDATE "D3"]'), lines
    lines = watcher.command(b"K0", b"UID SEARCH RETURN (UPDATE) SEEN")  # the same tag replaces
    assert not lines[0].startswith(b"* NO"), lines


def test_capabilities(stack) -> None:
    with RawIMAP(stack.imap_port) as raw:
        caps = re.split(rb"[ \]]", raw.greeting)
        assert b"CONTEXT=SEARCH" in caps and b"CONTEXT=SORT" in caps and b"ESORT" in caps, raw.greeting
