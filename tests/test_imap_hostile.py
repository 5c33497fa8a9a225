"""What a hostile client tried against IMAP (issue 8), on a live server over real sockets."""

from __future__ import annotations

import base64
import ssl

import pytest
from conftest import PASSWORD, wait_for
from imap_raw import RawIMAP


def test_a_backtracking_list_pattern_is_answered_and_the_server_stays_responsive(stack, new_user) -> None:
    # With a regex this pattern against these names would not finish in hours (11 s was the report
    # for ten "*a" against 40 "a"s, about x4 per extra "*a"); the socket timeout is only a fence.
    owner = new_user()
    with RawIMAP(stack.imap_port) as imap:
        imap.login(owner, PASSWORD)
        for n in range(5):
            answer = imap.command(b"c%d" % n, b"CREATE " + b"a" * (300 + n))
            assert answer[-1].startswith(b"c%d OK" % n), answer
        answer = imap.command(b"l1", b'LIST "" "' + b"*a" * 40 + b'*aZ"')
        assert answer == [b"l1 OK LIST completed\r\n"]
        answer = imap.command(b"l2", b'LIST "" "' + b"*a" * 40 + b'*"')
        assert len(answer) == 6 and answer[-1] == b"l2 OK LIST completed\r\n"
        with RawIMAP(stack.imap_port) as other:
            assert other.greeting.startswith(b"* OK")


def test_list_keeps_its_answers(stack, new_user) -> None:
    owner = new_user()
    with RawIMAP(stack.imap_port) as imap:
        imap.login(owner, PASSWORD)
        for tag, name in ((b"c1", b"x/y/z"), (b"c2", b"x/w"), (b"c3", b"xy")):
            assert imap.command(tag, b"CREATE " + name)[-1].startswith(tag + b" OK")
        answer = imap.command(b"l1", b'LIST "" "x%"')
        assert answer[:-1] == [b'* LIST (\\HasChildren) "/" x\r\n', b'* LIST (\\HasNoChildren) "/" xy\r\n']
        answer = imap.command(b"l2", b'LIST "x/" "*"')
        assert answer[:-1] == [
            b'* LIST (\\HasNoChildren) "/" x/w\r\n',
            b'* LIST (\\HasChildren) "/" x/y\r\n',
            b'* LIST (\\HasNoChildren) "/" x/y/z\r\n',
        ]
        answer = imap.command(b"l3", b'LIST "" ("inbox" "x/%/z")')
        assert answer[:-1] == [
            b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
            b'* LIST (\\HasNoChildren) "/" x/y/z\r\n',
        ]
        patterns = b" ".join(b"p%d" % n for n in range(65))
        assert imap.command(b"l4", b'LIST "" (' + patterns + b")")[-1].startswith(b"l4 BAD")


def noop_lines(size: int, last: bytes) -> bytes:
    """``n NOOP`` lines, then ``last``, exactly ``size`` octets in all."""
    filler = size - len(last)
    lines = b"n NOOP\r\n" * (filler // 8)
    short = filler - len(lines)
    if short:  # pad the first line's tag so the total is exact
        lines = b"n" + b"n" * short + lines[1:]
    data = lines + last
    assert len(data) == size
    return data


def starttls_with_injection(stack, before: bytes, after: bytes | None) -> list[bytes]:
    """Send ``before`` (ending with STARTTLS), then ``after`` in a packet of its own, then TLS:
    what the server says inside TLS before it answers our own first command."""
    with RawIMAP(stack.imap_port) as imap:
        imap.send(before)
        if after is not None:
            imap.send(after)
        answers = imap.until(b"z")
        if not answers[-1].startswith(b"z OK"):
            # The injection reached the command reader before STARTTLS finished: refused in plaintext.
            assert answers[-1].startswith(b"z BAD"), answers[-1]
            return []
        try:
            imap.upgrade()
        except (ssl.SSLError, ConnectionError):
            # The injection reached the server after the switch, as a broken TLS record.
            return []
        return imap.command(b"own", b"NOOP")[:-1]


def test_starttls_discards_what_was_sent_before_the_handshake(stack) -> None:
    # The report: 65,536 octets of NOOPs ending exactly with STARTTLS, then the injected command in
    # the next packet: the reader's read ends at the 64 KiB boundary, the injection waits in the
    # stream's buffer, and used to be read inside TLS as though it had come encrypted.
    boundary = noop_lines(65536, b"z STARTTLS\r\n")
    assert starttls_with_injection(stack, boundary, b"INJ CAPABILITY\r\n") == []
    assert starttls_with_injection(stack, boundary + b"INJ CAPABILITY\r\n", None) == []
    assert starttls_with_injection(stack, b"z STARTTLS\r\nINJ CAPABILITY\r\n", None) == []
    assert starttls_with_injection(stack, noop_lines(2 * 65536, b"z STARTTLS\r\n"), b"INJ LOGOUT\r\n") == []


def test_before_login_a_large_synchronizing_literal_is_refused_without_a_continuation(stack) -> None:
    with RawIMAP(stack.imap_port) as imap:
        imap.send(b"a LOGIN {41943040}\r\n")
        assert imap.line() == b"a BAD [TOOBIG] Literal larger than 8192 octets\r\n"
        assert imap.command(b"b", b"NOOP") == [b"b OK NOOP completed\r\n"]


def test_before_login_a_large_non_synchronizing_literal_ends_the_connection(stack) -> None:
    # The report: "a LOGIN {41943040+}" and 40 MiB that never end held 41 MB per connection.
    with RawIMAP(stack.imap_port) as imap:
        imap.send(b"a LOGIN {41943040+}\r\n" + b"x" * 65536)
        assert imap.line() == b"a BAD [TOOBIG] Literal larger than 8192 octets\r\n"
        assert imap.line() == b"* BYE Too much data\r\n"
        assert imap.line() == b""


def test_before_login_a_long_line_is_refused(stack) -> None:
    with RawIMAP(stack.imap_port) as imap:
        assert imap.command(b"a", b"ID (" + b'"x" ' * 3000 + b")") == [b"a BAD Command line too long\r\n"]
        assert imap.command(b"b", b"NOOP") == [b"b OK NOOP completed\r\n"]


def test_small_literals_log_in_and_large_ones_follow_login(stack, new_user) -> None:
    owner = new_user()
    with RawIMAP(stack.imap_port) as imap:
        user, password = owner.encode(), PASSWORD.encode()
        imap.send(b"a LOGIN {%d}\r\n" % len(user))
        assert imap.line().startswith(b"+ ")
        imap.send(user + b" {%d+}\r\n" % len(password) + password + b"\r\n")
        assert imap.until(b"a")[-1].startswith(b"a OK")
        message = b"Subject: big\r\n\r\n" + b"x" * 100_000 + b"\r\n"
        imap.send(b"b APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
        assert imap.until(b"b")[-1].startswith(b"b OK")


def test_sessions_per_user_are_capped(stack, new_user) -> None:
    from mailpipe_gateway.imap.user_sessions import UserSessions

    imap_server = stack.build_imap(user_sessions=UserSessions(3))
    stack.loop.run(imap_server.start())
    owner, other = new_user(), new_user()
    sessions: list[RawIMAP] = []
    try:
        for _ in range(3):
            sessions.append(RawIMAP(imap_server.port))
            sessions[-1].login(owner, PASSWORD)
        with RawIMAP(imap_server.port) as fourth:
            answer = fourth.command(b"L", f'LOGIN {owner} "{PASSWORD}"'.encode())
            assert answer == [b"L NO [LIMIT] Too many sessions for this user (at most 3)\r\n"]
            plain = f"\0{owner}\0{PASSWORD}".encode()
            answer = fourth.command(b"A", b"AUTHENTICATE PLAIN " + base64.b64encode(plain))
            assert answer[-1].startswith(b"A NO [LIMIT]")
            with RawIMAP(imap_server.port) as someone_else:
                someone_else.login(other, PASSWORD)
            leaving = sessions.pop()
            leaving.command(b"z", b"LOGOUT")
            assert leaving.line() == b""  # the server closes after it stops counting the session
            leaving.close()
            wait_for(lambda: imap_server.context.user_sessions.count(owner) == 2)
            fourth.login(owner, PASSWORD)
    finally:
        for session in sessions:
            session.close()
        stack.loop.run(imap_server.stop())


def test_an_empty_append_is_refused(stack, new_user) -> None:
    # Found by the fuzzer: "APPEND INBOX ~{0+}" and an empty line hung the session (and a thread).
    owner = new_user()
    with RawIMAP(stack.imap_port) as imap:
        imap.login(owner, PASSWORD)
        imap.send(b"a APPEND INBOX (\\Seen) ~{0+}\r\n\r\n")
        assert imap.until(b"a") == [b"a NO Can't save a zero-byte message\r\n"]
        imap.send(b"b APPEND INBOX {0}\r\n")
        assert imap.line().startswith(b"+")
        imap.send(b"\r\n")
        assert imap.until(b"b") == [b"b NO Can't save a zero-byte message\r\n"]


def test_the_session_cap_comes_from_the_environment() -> None:
    from mailpipe_gateway.imap.user_sessions import DEFAULT_LIMIT, ENV, limit_from_env

    assert limit_from_env({}) == DEFAULT_LIMIT == 20
    assert limit_from_env({ENV: " 7 "}) == 7
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError):
            limit_from_env({ENV: bad})
