"""The last answer of MailStore.changes_since per mailbox, kept by a process for the next pages.

A JMAP client syncing from an old state pages through the changes maxChanges at a time
(Email/changes), each page asking changes_since from where the last one stopped. Each such Query
reads the `by_modseq` index from there to its end, so a first sync of 10,000 messages in pages of
1,000 read the index ten times over, 55,000 items in all. This keeps the whole list the first page
read (every message changed after its MODSEQ, latest state per UID) and answers a later page, from
a MODSEQ at or above that one, by filtering it: from memory while the mailbox has not changed, and
with one Query of what changed since the list otherwise.

It answers exactly what changes_since would. The list holds, for each UID below the UIDNEXT of the
mailbox it was read for, its latest state if it changed after `since`; every change raises the
mailbox's HIGHESTMODSEQ in the same transaction, so a mailbox read with the same HIGHESTMODSEQ and
UIDNEXT has nothing newer, and one with a higher HIGHESTMODSEQ has nothing newer that a Query
since the list's HIGHESTMODSEQ misses (a message changed again moves up the index). Below the
pruning floor, or if the floor moved, the store answers (its listing of expunged UIDs).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailpipe.store.model import Mailbox, MessageState

if TYPE_CHECKING:
    from mailpipe.store.mailstore import MailStore

# A MessageState is ~150 bytes with its flags: ~15 MB at most.
MAX_KEPT_STATES = 100_000


@dataclass(frozen=True)
class _ChangeList:
    since: int
    mailbox: Mailbox  # as read for the Query: the list is complete up to its HIGHESTMODSEQ
    states: tuple[MessageState, ...]  # in UID order, as changes_since answers


class ChangeLists:
    """Per mailbox, the last list of changes read; safe to call from many threads."""

    def __init__(self, store: MailStore, *, max_states: int = MAX_KEPT_STATES) -> None:
        self._store = store
        self._max_states = max_states
        self._lock = threading.Lock()
        self._lists: OrderedDict[str, _ChangeList] = OrderedDict()  # least recently used first
        self._kept = 0

    def changes_since(self, mailbox: Mailbox, since: int) -> list[MessageState]:
        """MailStore.changes_since(mailbox, since), `mailbox` just read."""
        if mailbox.highestmodseq <= since or since < mailbox.prunedmodseq:
            return self._store.changes_since(mailbox, since)
        kept = self._get(mailbox.mailbox_id)
        if kept is not None and kept.since <= since and kept.mailbox.prunedmodseq == mailbox.prunedmodseq:
            old = kept.mailbox
            if (old.highestmodseq, old.uidnext) == (mailbox.highestmodseq, mailbox.uidnext):
                return [s for s in kept.states if s.modseq > since]
            if old.highestmodseq < mailbox.highestmodseq and old.uidnext <= mailbox.uidnext:
                newer = self._store.changes_since(mailbox, old.highestmodseq)
                latest = {s.uid: s for s in kept.states} | {s.uid: s for s in newer}
                states = tuple(latest[uid] for uid in sorted(latest))
                self._put(_ChangeList(kept.since, mailbox, states))
                return [s for s in states if s.modseq > since]
        states = self._store.changes_since(mailbox, since)
        self._put(_ChangeList(since, mailbox, tuple(states)))
        return states

    def _get(self, key: str) -> _ChangeList | None:
        with self._lock:
            kept = self._lists.get(key)
            if kept is not None:
                self._lists.move_to_end(key)
            return kept

    def _put(self, kept: _ChangeList) -> None:
        if len(kept.states) > self._max_states:
            return
        key = kept.mailbox.mailbox_id
        with self._lock:
            there = self._lists.pop(key, None)
            if there is not None:
                self._kept -= len(there.states)
            self._lists[key] = kept
            self._kept += len(kept.states)
            while self._kept > self._max_states:
                _, dropped = self._lists.popitem(last=False)
                self._kept -= len(dropped.states)
