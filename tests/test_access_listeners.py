"""What ended sessions and stopped servers leave registered in their process: nothing.

IDLE and NOTIFY sessions wait on the process's wake-ups (imap/wakeups.py); an IMAP server's context
observes the process's memory; the memory listens to the change feed. Each of those holds what it
registered alive, so a session or server that ended must take its registration back, or memory
grows with every session a long-lived process (or the dev stack's test run) has served.
"""

from __future__ import annotations

import socket

from conftest import PASSWORD, wait_for

SESSIONS = 15  # within the per-user cap (20)


def waiting_session(port: int, owner: str, command: bytes) -> socket.socket:
    """A session logged in with INBOX selected, waiting in IDLE (or NOTIFY's wait)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(
        b'l LOGIN %s "%s"\r\ns SELECT INBOX\r\nw %s\r\n' % (owner.encode(), PASSWORD.encode(), command)
    )
    while not (line := reader.readline()).startswith((b"+", b"w ")):
        assert line, "connection closed"
    assert line.startswith((b"+", b"w OK")), line
    return sock


def test_ended_sessions_and_stopped_servers_leave_no_listeners(stack, new_user) -> None:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    feed = stack.changes
    assert feed is not None
    memory = stack.access_parts().memory
    baseline = (feed.listener_count, memory.observer_count)
    imap = stack.build_imap()
    stack.loop.run(imap.start())
    pop3 = stack.build_pop3()
    stack.loop.run(pop3.start())
    try:
        assert memory.observer_count == baseline[1] + 1  # the new server's wake-ups
        wakeups = imap.context.wakeups
        for round in range(3):
            commands = [b"IDLE", b"NOTIFY SET (SELECTED (MessageNew MessageExpunge))"]
            sockets = [waiting_session(imap.port, owner, commands[n % 2]) for n in range(SESSIONS)]
            wait_for(lambda: wakeups.waiting == SESSIONS)
            for n, sock in enumerate(sockets):
                if n % 3 == 0:  # ended politely
                    sock.sendall(b"DONE\r\nz LOGOUT\r\n" if n % 2 == 0 else b"z LOGOUT\r\n")
                sock.close()  # or not: the client just went away
            wait_for(lambda: imap.limiter.open_sessions == 0)
            assert wakeups.waiting == 0, round
            assert (feed.listener_count, memory.observer_count) == (baseline[0], baseline[1] + 1)
    finally:
        stack.loop.run(imap.stop())
        stack.loop.run(pop3.stop())
    assert (feed.listener_count, memory.observer_count) == baseline
