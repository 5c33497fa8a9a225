"""What a hostile client tried against IMAP (issue 8), on a live server over real sockets."""

from __future__ import annotations

from conftest import PASSWORD
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
        imap.upgrade()
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
