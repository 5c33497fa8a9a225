"""Resident memory of a process and every process it started (the dev stack may run moto in a
child process of its own), and mail stored into a dev stack to measure it against."""

from __future__ import annotations

import imaplib
import re
import smtplib
import time
from pathlib import Path


def tree_rss(pid: int) -> int:
    """VmRSS of `pid` and all its descendants, in bytes."""
    return sum(tree_rss_by_process(pid).values())


def tree_rss_by_process(pid: int) -> dict[int, int]:
    """VmRSS of `pid` and of each of its descendants, in bytes, by PID."""
    sizes, pending = {}, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except FileNotFoundError:
            continue  # ended meanwhile
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        sizes[current] = int(found.group(1)) * 1024 if found else 0
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(child) for child in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
    return sizes


def message(n: int) -> bytes:
    """A plain message of ~4 KB, like ordinary mail."""
    lines = b"".join(b"line %d of message %d, some ordinary text to fill it\r\n" % (i, n) for i in range(70))
    return b"From: alice@remote.test\r\nSubject: message %d\r\n\r\n" % n + lines


def store_messages(smtp_port: int, imap_port: int, user: tuple[str, str], first: int, count: int) -> None:
    """Sends `count` messages to `user` and waits until INBOX holds `first + count`."""
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=60) as client:
        for n in range(first, first + count):
            client.sendmail("alice@remote.test", [user[0]], message(n))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=60)
        try:
            imap.login(*user)
            _, data = imap.status("INBOX", "(MESSAGES)")
        finally:
            imap.logout()
        if int(re.search(rb"MESSAGES (\d+)", data[0]).group(1)) >= first + count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{first + count} messages not stored within 10 minutes")
