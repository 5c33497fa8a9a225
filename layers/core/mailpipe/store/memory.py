"""What one access gateway process knows of the store, in memory, and how it stays true.

Two caches, shared by every session of the process: each user's mailbox items (MailboxItems) and
each mailbox's messages (MailboxSnapshots). The change feed (mailpipe.changes.ChangeFeed) keeps
them current: a notice updates a mailbox's counters in memory, and the snapshot is brought
forward (one read, by the first session that needs it) when they moved past it. This process's
own writes go through here and update both from what the write returned, so a session reads its
writes before their notice comes back; they do so in the writer's turn (store/writers.py), so in
commit order: a snapshot left behind by writes followed out of order would cost a read, and an
item moved past a notice not yet known as an echo would make the user's items be read again.
STORE and EXPUNGE start from the snapshot's messages (MailStore's `seen`) instead of reading
them. While the feed is unhealthy or absent, memory is not trusted and reads go to the store as
they did without a feed; sessions then poll.

Observers (the IMAP server's wake-ups) hear which users changed: on the feed's thread, and on the
writer's at once for this process's own writes to messages (its other sessions of the user in
IDLE need not wait for the notice).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mailpipe.store.mailbox_items import MailboxItems, Notice
from mailpipe.store.mailstore import Appended, AppendedBatch, FlagChange, MailStore, NewMessage
from mailpipe.store.model import Mailbox, StoredMessage
from mailpipe.store.snapshots import MailboxSnapshots

log = logging.getLogger(__name__)

# Called with the users whose mailboxes changed, or None when everything may have (trust changed).
Observer = Callable[[set[str] | None], None]


class Feed(Protocol):
    """What MailMemory needs of mailpipe.changes.feed.ChangeFeed."""

    @property
    def healthy(self) -> bool: ...

    def add_listener(self, callback: Callable[[list[Any]], None]) -> None: ...

    def add_health_listener(self, callback: Callable[[bool], None]) -> None: ...

    def remove_listener(self, callback: Callable[[list[Any]], None]) -> None: ...

    def remove_health_listener(self, callback: Callable[[bool], None]) -> None: ...


class MailMemory:
    def __init__(self, store: MailStore) -> None:
        self.store = store
        self.items = MailboxItems(store)
        self.snapshots = MailboxSnapshots(store, items=self.items)
        self._observers: list[Observer] = []
        self._following: list[Feed] = []
        self._lock = threading.Lock()

    @property
    def trusted(self) -> bool:
        """Whether sessions may answer from memory and wait for notices instead of polling."""
        return self.items.trusted

    def follow(self, feed: Feed) -> None:
        """Be kept current by `feed` from now on (its health decides whether memory is trusted)."""
        feed.add_listener(self.apply)
        feed.add_health_listener(self.set_trusted)
        self._following.append(feed)
        self.set_trusted(feed.healthy)

    def unfollow(self, feed: Feed) -> None:
        """No longer kept current by `feed` (its owner is done with this memory), and so no longer
        trusted: the feed's listeners would otherwise keep this memory alive as long as the feed.
        Once is enough: a feed not followed is left alone."""
        if feed not in self._following:
            return
        self._following.remove(feed)
        feed.remove_listener(self.apply)
        feed.remove_health_listener(self.set_trusted)
        self.set_trusted(False)

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    @property
    def observer_count(self) -> int:
        return len(self._observers)

    def set_trusted(self, trusted: bool) -> None:
        """The feed's health changed: what memory holds is read afresh when next used (snapshots
        are brought forward from the counters then read), and every waiter looks again."""
        if trusted != self.items.trusted:
            log.info("mail memory: %s", "kept current by the change feed" if trusted else "polling the store")
        self.items.set_trusted(trusted)
        self._tell(None)

    def apply(self, notices: Iterable[Notice]) -> None:
        """The feed's notices (on its thread): memory first, then the observers."""
        owners = self.items.apply(notices)
        if owners:
            self._tell(owners)

    def _tell(self, owners: set[str] | None) -> None:
        for observer in list(self._observers):
            try:
                observer(owners)
            except Exception:
                log.exception("mail memory: observer failed")

    # -- writes that update memory from their results (read your writes) ----------------

    def append_message(self, owner: str, name: str, raw: bytes, **kwargs: Any) -> Appended:
        def followed(appended: Appended) -> None:  # in the writer's turn: in commit order
            if appended.started_from >= 0:
                mailbox = appended.mailbox
                uidnext, modseq = appended.message.uid + 1, appended.started_from + 1
                self.items.wrote(owner, name, mailbox.mailbox_id, uidnext, modseq)
                self.snapshots.followed_own_writes(
                    mailbox.mailbox_id, [appended.started_from], [appended.message]
                )

        return self.store.append_message(owner, name, raw, then=followed, **kwargs)

    def append_batch(self, owner: str, name: str, messages: list[NewMessage]) -> AppendedBatch:
        """MULTIAPPEND: each of its transactions followed as append_message follows its one."""
        batch = self.store.append_batch(owner, name, messages)
        mailbox_id = batch.mailbox.mailbox_id
        for started, stored in batch.transactions:
            if started >= 0 and stored:
                self.items.wrote(owner, name, mailbox_id, stored[-1].uid + 1, started + 1)
                self.snapshots.followed_own_writes(mailbox_id, [started], stored)
        return batch

    def update_flags(self, owner: str, name: str, *args: Any, mailbox: Mailbox, **kwargs: Any) -> FlagChange:
        commits: list[int] = kwargs.pop("commits", None)
        if commits is None:  # the caller's list, if it gave one: it learns the commits too
            commits = []
        with self.store.writer_turn(owner, name):
            seen = self._seen(owner, name, mailbox)
            change = self.store.update_flags(
                owner, name, *args, commits=commits, mailbox=mailbox, seen=seen, **kwargs
            )
            self._followed(mailbox, commits, change.changed, ())
        self._tell({owner})
        return change

    def expunge(
        self, owner: str, name: str, uids: Iterable[int], *, mailbox: Mailbox, **kwargs: Any
    ) -> list[int]:
        commits: list[int] = kwargs.pop("commits", None)
        if commits is None:  # the caller's list, if it gave one: it learns the commits too
            commits = []
        bodies: list[str] = []
        try:
            with self.store.writer_turn(owner, name):
                seen = self._seen(owner, name, mailbox)
                expunged = self.store.expunge(
                    owner, name, uids, commits=commits, mailbox=mailbox, seen=seen, bodies=bodies, **kwargs
                )
                self._followed(mailbox, commits, (), expunged)
        finally:
            # After the turn and in the background, batched with other EXPUNGEs' (body_deletes.py):
            # neither the next writer nor this command's tagged OK waits for S3.
            self.store.delete_bodies(bodies)
        self._tell({owner})
        return expunged

    def _seen(self, owner: str, name: str, mailbox: Mailbox) -> dict[int, StoredMessage] | None:
        """The messages a STORE or EXPUNGE may start from instead of reading them: the snapshot's,
        while the feed keeps memory current and the snapshot is as new as memory's item (the
        store checks each message's MODSEQ as it commits). Called in the writer's turn, so this
        process's own earlier writes are in the snapshot already."""
        held, item = self.items.known(owner, name)
        if not held or item is None or item.mailbox_id != mailbox.mailbox_id:
            return None
        return self.snapshots.messages_as_of(item)

    def _followed(
        self, mailbox: Mailbox, commits: list[int], changed: Iterable[StoredMessage], expunged: Iterable[int]
    ) -> None:
        if not commits:
            return
        # The item as the commits left it: its UIDNEXT with its HIGHESTMODSEQ. (The commits may have
        # started later than `mailbox`, after another process's APPEND: HIGHESTMODSEQ alone would
        # pass for a state that lacks that message.)
        after = self.store.last_written(mailbox.owner, mailbox.name)
        if after is not None and after.mailbox_id == mailbox.mailbox_id:
            for start in commits[:-1]:
                self.items.expect(mailbox.owner, mailbox.name, mailbox.mailbox_id, start + 1)
            self.items.wrote(
                mailbox.owner, mailbox.name, mailbox.mailbox_id, after.uidnext, after.highestmodseq
            )
        self.snapshots.followed_own_writes(mailbox.mailbox_id, commits, changed, expunged)

    def copy(
        self, owner: str, source: str, uids: Iterable[int], target: str
    ) -> tuple[Mailbox, list[tuple[int, int]]]:
        mailbox, pairs = self.store.copy(owner, source, uids, target)
        self.items.wrote(owner, target, mailbox.mailbox_id, mailbox.uidnext, mailbox.highestmodseq)
        self._tell({owner})
        return mailbox, pairs

    def create_mailbox(self, owner: str, name: str) -> Mailbox:
        mailbox = self.store.create_mailbox(owner, name)
        self.items.created(mailbox)
        return mailbox

    def rename_mailbox(self, owner: str, old: str, new: str) -> Mailbox:
        mailbox = self.store.rename_mailbox(owner, old, new)
        self.items.renamed(old, mailbox)
        return mailbox

    def delete_mailbox(self, owner: str, name: str) -> None:
        self.store.delete_mailbox(owner, name)
        self.items.deleted(owner, name)

    def claim_recent(self, mailbox: Mailbox) -> tuple[int, int]:
        """MailStore.claim_recent, and memory's item then says from where nothing is claimed yet."""
        start, end = self.store.claim_recent(mailbox)
        self.items.claimed_recent(mailbox, end, wrote=start < end)
        return start, end

    def set_subscribed(self, owner: str, name: str, subscribed: bool) -> None:
        # Names, not mailboxes (RFC 9051 6.3.7): subscribing a name no mailbox has is allowed, and
        # unsubscribing one that is not subscribed is no error.
        if subscribed:
            self.store.subscribe(owner, name)
        else:
            self.store.unsubscribe(owner, name)
        self.items.subscribed(owner, name, subscribed)
