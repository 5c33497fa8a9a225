"""Writers to one mailbox in one process take turns, and share what the last of them committed.

Every change to a mailbox is guarded on its item (store/transactions.py), so concurrent
writers race and all but one lose and try again. Between processes that is the price of
having no lock server; inside one process (an access gateway with a client's several
connections, or several clients of one mailbox) it is waste: cancelled transactions,
backoff sleeps, and a read of the mailbox per attempt. So writers in a process queue on a
lock per mailbox, and each starts from the mailbox item as the previous one left it. The
guard still decides: a writer from another process makes the first attempt fail, and the
cancellation returns the item to retry from.

A turn is re-entrant: the access gateway's memory (store/memory.py) holds it around a write and
its following of what the write returned, so that its snapshots and items learn this process's
commits in the order they were made.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator

from mailpipe.store.model import Mailbox

LOCK_STRIPES = 64  # mailboxes hashed onto this many locks: bounded, and rarely shared
REMEMBERED_MAILBOXES = 10_000


class MailboxWriters:
    def __init__(self) -> None:
        self._stripes = [threading.RLock() for _ in range(LOCK_STRIPES)]
        self._latest: OrderedDict[tuple[str, str], Mailbox] = OrderedDict()
        self._latest_lock = threading.Lock()

    @contextlib.contextmanager
    def turn(self, owner: str, name: str) -> Iterator[None]:
        """Hold the turn to write to this mailbox among this process's writers."""
        with self._stripes[hash((owner, name)) % LOCK_STRIPES]:
            yield

    def newest(self, owner: str, name: str, guess: Mailbox) -> Mailbox:
        """The newer of `guess` and the item as this process's last writer left it."""
        with self._latest_lock:
            latest = self._latest.get((owner, name))
        if latest is None or latest.mailbox_id != guess.mailbox_id:
            return guess
        return latest if latest.highestmodseq > guess.highestmodseq else guess

    def remembered(self, owner: str, name: str) -> Mailbox | None:
        """The item as this process's last writer left it, if one wrote to it lately."""
        with self._latest_lock:
            return self._latest.get((owner, name))

    def committed(self, mailbox: Mailbox) -> None:
        """`mailbox` is the item as a commit of this process left it."""
        key = (mailbox.owner, mailbox.name)
        with self._latest_lock:
            self._latest[key] = mailbox
            self._latest.move_to_end(key)
            while len(self._latest) > REMEMBERED_MAILBOXES:
                self._latest.popitem(last=False)
