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
