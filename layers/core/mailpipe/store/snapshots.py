"""Mailboxes as one gateway process last read them, shared by its sessions, kept up to date by changes.

Several IMAP sessions of a process often watch one mailbox (a client opens a few connections,
STATUS polls every folder, IDLE polls the selected one). What a stored message is (summary,
size, body) never changes under its UID, and a mailbox id is never reused, so a process keeps
each mailbox's messages as of one HIGHESTMODSEQ and brings them forward with
MailStore.changes_since: one Query of what changed, read once for every session of the
process. It also keeps the last batches of changes it read, so a session that is a little
behind learns what changed since its own MODSEQ from memory (Dovecot's transaction log plays
that part beside its index).

Every snapshot keeps the store's promise for listings (docs/mail-store.md): it holds every live
message with a UID below its mailbox's UIDNEXT, with every change up to its HIGHESTMODSEQ.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mailpipe.store.change_lists import ChangeLists
from mailpipe.store.model import Mailbox, MessageState, StoredMessage

if TYPE_CHECKING:
    from mailpipe.store.mailbox_items import MailboxItems
    from mailpipe.store.mailstore import MailStore

# A message in memory is ~1 KB with its summary packed (StoredMessage.packed_summary): ~200 MB
# at most, within the access gateway task's 2 GB (template.yaml).
MAX_CACHED_MESSAGES = 200_000
MAX_LOGGED_BATCHES = 512  # batches of changes kept per mailbox for sessions that are behind
MAX_SNAPSHOTS = 20_000  # mailboxes, however small (STATUS and GETQUOTA touch every one)


@dataclass(frozen=True)
class _Batch:
    """The messages changed after `since` up to `until` (each as read then, maybe newer)."""

    since: int
    until: int
    uids: frozenset[int]


@dataclass(frozen=True)
class _Snapshot:
    mailbox: Mailbox
    messages: dict[int, StoredMessage]  # by UID, ascending; never changed once published
    log: tuple[_Batch, ...]
    # What callers derived from exactly these messages (a JMAP query's order), dropped with them.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def weight(self) -> int:
        """What the snapshot holds, in messages: its messages and the UIDs in its log."""
        return 1 + len(self.messages) + sum(len(batch.uids) for batch in self.log)

    @property
    def log_start(self) -> int:
        return self.log[0].since if self.log else self.mailbox.highestmodseq


@dataclass(frozen=True)
class Changes:
    """What a session behind the store must learn: `mailbox` as now known, each changed message's
    state (expunged ones as tombstones), and the changed messages that are live, whole."""

    mailbox: Mailbox
    states: list[MessageState]
    messages: dict[int, StoredMessage]


class MailboxSnapshots:
    """The per-process cache of mailboxes; every method is safe to call from many threads."""

    def __init__(
        self,
        store: MailStore,
        *,
        max_messages: int = MAX_CACHED_MESSAGES,
        items: MailboxItems | None = None,
    ) -> None:
        self._store = store
        # Where mailbox items come from: memory kept by the change feed, else a read of the store.
        self._items = items
        self._max_messages = max_messages
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()  # least recently used first
        self._weight = 0  # messages and logged UIDs held, against max_messages
        self._updating: dict[str, threading.Lock] = {}
        # Long lists of changes a client pages through (JMAP's Email/changes), read once.
        self.change_lists = ChangeLists(store)

    def list_messages(self, owner: str, name: str) -> tuple[Mailbox, list[StoredMessage]]:
        """The mailbox and its live messages in UID order, like MailStore.list_messages."""
        if self._items is not None:
            mailbox = self._items.require(owner, name)
        else:
            mailbox = self._store.require_mailbox(owner, name)
        snapshot = self._current(mailbox)
        return _as_of(mailbox, snapshot), list(snapshot.messages.values())

    def held_listing(self, mailbox: Mailbox) -> tuple[Mailbox, list[StoredMessage]] | None:
        """list_messages of `mailbox` (an item the caller has from memory) if the snapshot held is
        at least as new, so no read is needed (an event loop answers a SELECT without a trip to a
        thread); else None."""
        snapshot = self._get(mailbox.mailbox_id)
        if snapshot is None or snapshot.mailbox.highestmodseq < mailbox.highestmodseq:
            return None
        return _as_of(mailbox, snapshot), list(snapshot.messages.values())

    def listing(self, mailbox: Mailbox) -> tuple[list[StoredMessage], dict[Any, Any]]:
        """The live messages of `mailbox` (just read by the caller, so not read again) in UID
        order, at least as new as it (every UID below its UIDNEXT, maybe a few above), and the
        memo of this version of them: what a caller computes from exactly these messages, kept
        until one of them changes. The caller bounds what it keeps there."""
        snapshot = self._current(mailbox)
        return list(snapshot.messages.values()), snapshot.memo

    def changes(self, mailbox: Mailbox, since: int) -> Changes:
        """What changed after MODSEQ `since` in `mailbox` (just read), from memory when the log
        reaches back that far, else from the store."""
        snapshot = self._current(mailbox)
        if snapshot.log_start <= since:
            uids = sorted({uid for batch in snapshot.log if batch.until > since for uid in batch.uids})
            messages = {uid: snapshot.messages[uid] for uid in uids if uid in snapshot.messages}
            states = [_state(uid, messages.get(uid), snapshot.mailbox) for uid in uids]
            return Changes(_as_of(mailbox, snapshot), states, messages)
        states = self._store.changes_since(mailbox, since)
        new = [s.uid for s in states if not s.expunged]
        found = {m.uid: m for m in self._store.messages_by_uid(mailbox, new)} if new else {}
        return Changes(mailbox, states, found)

    def messages_as_of(self, mailbox: Mailbox) -> dict[int, StoredMessage] | None:
        """The live messages by UID, from memory only, if the snapshot held is at least as new as
        `mailbox`; else None (no read)."""
        snapshot = self._get(mailbox.mailbox_id)
        if snapshot is None or snapshot.mailbox.highestmodseq < mailbox.highestmodseq:
            return None
        return snapshot.messages

    def answers(self, mailbox: Mailbox, since: int) -> bool:
        """Whether changes(mailbox, since) is answered from memory now, without a read or a wait."""
        snapshot = self._get(mailbox.mailbox_id)
        return (
            snapshot is not None
            and snapshot.mailbox.highestmodseq >= mailbox.highestmodseq
            and snapshot.log_start <= since
        )

    def followed_own_writes(
        self,
        mailbox_id: str,
        commits: list[int],
        changed: Iterable[StoredMessage] = (),
        expunged: Iterable[int] = (),
    ) -> None:
        """This process committed `commits` (the HIGHESTMODSEQ each started from) to the mailbox,
        changing `changed` (or adding them, at UIDNEXT) and expunging `expunged`. A snapshot that
        was exactly where they started takes them in without a read; any other is brought
        forward from the store when next used."""
        if not commits or commits != list(range(commits[0], commits[0] + len(commits))):
            return
        with self._lock:
            updating = self._updating.setdefault(mailbox_id, threading.Lock())
        with updating:
            old = self._get(mailbox_id)
            if old is None or old.mailbox.highestmodseq != commits[0]:
                return
            messages = dict(old.messages)
            uidnext = old.mailbox.uidnext
            uids = set()
            for message in sorted(changed, key=lambda m: m.uid):
                if message.uid == uidnext:
                    uidnext += 1
                elif message.uid > uidnext:
                    return  # UIDs this snapshot never saw: not where the writes started
                elif message.uid not in messages:
                    continue
                messages[message.uid] = message
                uids.add(message.uid)
            for uid in expunged:
                messages.pop(uid, None)
                uids.add(uid)
            batch = _Batch(commits[0], commits[-1] + 1, frozenset(uids))
            counters = replace(old.mailbox, uidnext=uidnext, highestmodseq=commits[-1] + 1)
            self._put(mailbox_id, _Snapshot(counters, messages, (*old.log, batch)[-MAX_LOGGED_BATCHES:]))

    def _current(self, mailbox: Mailbox) -> _Snapshot:
        """The snapshot of this mailbox at least as new as `mailbox`, read from the store if need be."""
        key = mailbox.mailbox_id
        snapshot = self._get(key)
        if snapshot is not None and snapshot.mailbox.highestmodseq >= mailbox.highestmodseq:
            return snapshot  # without waiting for a reader of a newer one
        with self._lock:
            updating = self._updating.setdefault(key, threading.Lock())
        # One reader per mailbox at a time: sessions arriving meanwhile find its result.
        with updating:
            snapshot = self._get(key)
            if snapshot is not None and snapshot.mailbox.highestmodseq >= mailbox.highestmodseq:
                return snapshot
            snapshot = self._read(mailbox, snapshot)
            self._put(key, snapshot)
            return snapshot

    def _read(self, mailbox: Mailbox, old: _Snapshot | None) -> _Snapshot:
        if old is not None and old.mailbox.highestmodseq < mailbox.prunedmodseq:
            # Tombstones since the snapshot may be pruned: changes_since would answer every UID
            # not live as expunged, so a new listing costs no more and logs nothing.
            old = None
        if old is None:
            messages = self._store.messages_in(mailbox, keep_headers=True)
            return _Snapshot(mailbox, {m.uid: m for m in messages}, ())
        since = old.mailbox.highestmodseq
        states = self._store.changes_since(mailbox, since)
        messages = dict(old.messages)
        new: list[int] = []
        last = max(messages, default=0)
        for state in states:
            if state.expunged:
                messages.pop(state.uid, None)
            elif state.uid in messages:
                messages[state.uid] = replace(messages[state.uid], flags=state.flags, modseq=state.modseq)
            elif state.uid > last:
                new.append(state.uid)
        for message in self._store.messages_by_uid(mailbox, new, keep_headers=True) if new else []:
            messages[message.uid] = message  # ascending, after every UID already there
        batch = _Batch(since, mailbox.highestmodseq, frozenset(s.uid for s in states))
        return _Snapshot(mailbox, messages, (*old.log, batch)[-MAX_LOGGED_BATCHES:])

    def _get(self, key: str) -> _Snapshot | None:
        with self._lock:
            snapshot = self._snapshots.get(key)
            if snapshot is not None:
                self._snapshots.move_to_end(key)
            return snapshot

    def _put(self, key: str, snapshot: _Snapshot) -> None:
        with self._lock:
            there = self._snapshots.get(key)
            if there is not None and there.mailbox.highestmodseq > snapshot.mailbox.highestmodseq:
                return  # a reader that started later finished first: keep the newer
            if there is not None:
                self._weight -= there.weight
            self._snapshots[key] = snapshot
            self._snapshots.move_to_end(key)
            self._weight += snapshot.weight
            while len(self._snapshots) > 1 and (
                self._weight > self._max_messages or len(self._snapshots) > MAX_SNAPSHOTS
            ):
                evicted, dropped = self._snapshots.popitem(last=False)
                self._updating.pop(evicted, None)
                self._weight -= dropped.weight


def _as_of(mailbox: Mailbox, snapshot: _Snapshot) -> Mailbox:
    """`mailbox` as just read (its name, subscription: a RENAME keeps the id), with the counters
    of the snapshot, which may be newer."""
    return replace(mailbox, uidnext=snapshot.mailbox.uidnext, highestmodseq=snapshot.mailbox.highestmodseq)


def _state(uid: int, message: StoredMessage | None, mailbox: Mailbox) -> MessageState:
    if message is None:  # changed, and no longer live: expunged (at or before the snapshot's MODSEQ)
        return MessageState(uid, mailbox.highestmodseq, (), expunged=True)
    return MessageState(uid, message.modseq, message.flags)
