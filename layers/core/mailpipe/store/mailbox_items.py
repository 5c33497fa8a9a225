"""Each user's mailbox items (names, ids, counters, subscription, special use) as one process knows
them, kept current by the change feed, so LIST, STATUS and every session's refresh read memory.

Memory is trusted only while the change feed is healthy (`set_trusted`): then a user's items are
read once (one Query) and afterwards changed only by notices (mailpipe.changes.MailboxNotice) and
by this process's own writes, which are applied from what the write returned, before its notice
arrives. Untrusted (no feed, or the feed lost its queue), nothing is kept and every call reads
the store, as before the feed existed; when trust returns, everything is read afresh.

A notice carries only a mailbox's id and counters. One whose counters moved on is applied in
place; any other (a mailbox this process does not know, or an item changed without its counters
moving) makes the user's items be read again at their next use, unless it is the
echo of a write of this process that moved the counters, applied already (`_echoes`). CREATE,
RENAME, DELETE and SUBSCRIBE are applied at once too, and their notices then cost one read of the
user's items: they are rare, and telling their echoes from another process's change at the same
counters cannot be done from a notice.

Subscriptions are names kept apart from the mailboxes (a subscription may outlive its mailbox,
RFC 9051 6.3.7): they are read with the mailboxes, in the same Query, and a notice of a
subscription item (relay.py gives it no mailbox id) makes the user's items be read again too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from mailpipe.store.mailstore import NoSuchMailbox
from mailpipe.store.model import Mailbox

if TYPE_CHECKING:
    from mailpipe.store.mailstore import MailStore

MAX_USERS = 50_000  # users whose items are kept: a few hundred bytes per mailbox each
MAX_ECHOES = 10_000  # own writes whose notices are still to come (each is dropped when it comes)
MAX_NOTICED = 100_000  # mailboxes whose last notice is remembered (~150 bytes each)
# A user's items are read again after this long even if no notice came: the feed can lose notices
# without knowing it (a relay batch given up on, docs/change-feed.md), so this bounds how long a
# lost one can hide a change. One Query per active user per period per process.
REVALIDATE_SECONDS = 300.0


class Notice(Protocol):
    """What MailboxItems needs of a notice (mailpipe.changes.notice.MailboxNotice)."""

    owner: str
    name: str
    mailbox_id: str
    uidnext: int
    highestmodseq: int
    removed: bool
    recent_from: int  # 0: not known (an older relay's notice)
    size_total: int | None  # None: not known
    message_total: int | None
    prunedmodseq: int  # -1: not known


_Echo = tuple[str, str, str, int]  # owner, name, mailbox_id, highestmodseq


class MailboxItems:
    """The per-process cache of users' mailbox items; every method is safe from any thread."""

    def __init__(self, store: MailStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._read_at: dict[str, float] = {}  # when each held user's items were read
        self._lock = threading.Lock()
        self._users: OrderedDict[str, dict[str, Mailbox]] = OrderedDict()  # least recently used first
        self._subscriptions: dict[str, set[str]] = {}  # the subscribed names of each user held
        # Per user being read now: how many reads, and the notices seen meanwhile (the read may
        # predate them, so it is not kept). Only those users: every process hears of every user.
        self._loading: Counter[str] = Counter()
        self._versions: Counter[str] = Counter()
        self._epoch = 0  # bumped whenever trust changes: reads started before are not kept
        self._echoes: Counter[_Echo] = Counter()
        self._claims: Counter[tuple[str, int]] = Counter()  # (mailbox_id, recent_from) of own claims
        self._noticed: dict[str, int] = {}  # the highest HIGHESTMODSEQ a notice gave, per mailbox id
        self._trusted = False

    @property
    def trusted(self) -> bool:
        """Whether memory is kept current by the feed, so sessions may answer from it."""
        return self._trusted

    def set_trusted(self, trusted: bool) -> None:
        """The feed turned healthy or unhealthy: either way what is held may have missed changes."""
        with self._lock:
            self._trusted = trusted
            self._users.clear()
            self._subscriptions.clear()
            self._read_at.clear()
            self._echoes.clear()
            self._noticed.clear()
            self._epoch += 1

    # -- reading -------------------------------------------------------------------

    def list(self, owner: str) -> list[Mailbox]:
        """The user's mailboxes, like MailStore.list_mailboxes."""
        return list(self._listing(owner)[0].values())

    def list_with_subscriptions(self, owner: str) -> tuple[list[Mailbox], set[str]]:
        """The user's mailboxes and subscribed names, like MailStore.mailboxes_and_subscriptions."""
        listing, subscribed = self._listing(owner)
        return list(listing.values()), subscribed

    def get(self, owner: str, name: str) -> Mailbox | None:
        """The mailbox, like MailStore.get_mailbox (a strongly consistent read when not trusted)."""
        if not self._trusted:
            return self._store.get_mailbox(owner, name)
        return self._listing(owner)[0].get(name)

    def require(self, owner: str, name: str) -> Mailbox:
        mailbox = self.get(owner, name)
        if mailbox is None:
            raise NoSuchMailbox(f"no mailbox {name!r} for {owner}")
        return mailbox

    def known(self, owner: str, name: str) -> tuple[bool, Mailbox | None]:
        """(True, the mailbox or None) if memory answers without any read; else (False, None).
        For the event loop, which must not wait for the store."""
        with self._lock:
            if not self._trusted or owner not in self._users or self._stale(owner):
                return False, None
            return True, self._users[owner].get(name)

    def _stale(self, owner: str) -> bool:
        return self._clock() - self._read_at.get(owner, 0.0) > REVALIDATE_SECONDS

    def _listing(self, owner: str) -> tuple[dict[str, Mailbox], set[str]]:
        with self._lock:
            held = self._users.get(owner)
            if held is not None and self._trusted and not self._stale(owner):
                self._users.move_to_end(owner)
                # Copies: notices change the held ones on the feed's thread.
                return dict(held), set(self._subscriptions.get(owner, ()))
            epoch, version = self._epoch, self._versions[owner]
            self._loading[owner] += 1
        try:
            mailboxes, subscribed = self._store.mailboxes_and_subscriptions(owner)
            listing = {m.name: m for m in mailboxes}
        except BaseException:
            with self._lock:
                self._loaded(owner)
            raise
        with self._lock:
            if self._trusted and epoch == self._epoch and version == self._versions[owner]:
                self._users[owner] = dict(listing)
                self._subscriptions[owner] = set(subscribed)
                self._users.move_to_end(owner)
                self._read_at[owner] = self._clock()
                while len(self._users) > MAX_USERS:
                    evicted, _ = self._users.popitem(last=False)
                    self._subscriptions.pop(evicted, None)
                    self._read_at.pop(evicted, None)
            self._loaded(owner)
        return listing, subscribed

    def _loaded(self, owner: str) -> None:
        self._loading[owner] -= 1
        if not self._loading[owner]:
            del self._loading[owner]
            self._versions.pop(owner, None)

    # -- the feed ------------------------------------------------------------------

    def apply(self, notices: Iterable[Notice]) -> set[str]:
        """Fold the feed's notices in; returns the users they concern."""
        owners: set[str] = set()
        with self._lock:
            for notice in notices:
                owners.add(notice.owner)
                self._apply(notice)
        return owners

    def _apply(self, notice: Notice) -> None:
        if notice.owner in self._loading:
            self._versions[notice.owner] += 1
        if not notice.mailbox_id:  # a subscription item changed (relay.py)
            names = self._subscriptions.get(notice.owner)
            if names is not None and (notice.name in names) != notice.removed:
                return  # memory holds it already (this process's own SUBSCRIBE, or read since)
            self._forget_user(notice.owner)
            return
        if len(self._noticed) >= MAX_NOTICED:
            self._forget_echoes()
        noticed = self._noticed.get(notice.mailbox_id, 0)
        self._noticed[notice.mailbox_id] = max(noticed, notice.highestmodseq)
        echo = (notice.owner, notice.name, notice.mailbox_id, notice.highestmodseq)
        own = self._echoes[echo] > 0
        if own:
            self._echoes[echo] -= 1
            if not self._echoes[echo]:
                del self._echoes[echo]
        listing = self._users.get(notice.owner)
        if listing is None:
            return
        there = listing.get(notice.name)
        if notice.removed:
            if there is not None and there.mailbox_id == notice.mailbox_id:
                del listing[notice.name]
            return
        if there is not None and there.mailbox_id == notice.mailbox_id:
            if notice.highestmodseq > there.highestmodseq or notice.uidnext > there.uidnext:
                advanced = _advanced(there, notice.uidnext, notice.highestmodseq)
                if notice.highestmodseq >= there.highestmodseq and notice.size_total is not None:
                    # The totals change with the counters, in the same transaction: the notice's are
                    # at least as new as these.
                    advanced = replace(
                        advanced,
                        size_total=notice.size_total,
                        message_total=notice.message_total,
                        recent_from=max(advanced.recent_from, notice.recent_from),
                        prunedmodseq=max(advanced.prunedmodseq, notice.prunedmodseq),
                    )
                listing[notice.name] = advanced
                return
            if own:
                return
            claim = (notice.mailbox_id, notice.recent_from)
            if self._claims[claim] > 0:  # the echo of this process's own \Recent claim
                self._claims[claim] -= 1
                if not self._claims[claim]:
                    del self._claims[claim]
                return
            if _shows(notice, there):
                return  # a state memory holds already: read after the write, or a repeat
            if notice.recent_from > there.recent_from:
                # A \Recent claim (store/recent.py) writes only recent_from: the notice shows it all.
                listing[notice.name] = replace(there, recent_from=notice.recent_from)
                return
        elif own:
            return
        # A mailbox this process has not seen, or one changed in a way a notice does not show.
        self._forget_user(notice.owner)

    def _forget_user(self, owner: str) -> None:
        self._users.pop(owner, None)
        self._subscriptions.pop(owner, None)
        self._read_at.pop(owner, None)

    # -- this process's own writes -------------------------------------------------

    def wrote(self, owner: str, name: str, mailbox_id: str, uidnext: int, highestmodseq: int) -> None:
        """A write of this process left the mailbox with these counters (APPEND, STORE, EXPUNGE,
        COPY into it)."""
        with self._lock:
            self._expect(owner, name, mailbox_id, highestmodseq)
            there = self._held(owner, name)
            if there is not None and there.mailbox_id == mailbox_id:
                self._users[owner][name] = _advanced(there, uidnext, highestmodseq)

    def expect(self, owner: str, name: str, mailbox_id: str, highestmodseq: int) -> None:
        """A commit of this process left the mailbox at this HIGHESTMODSEQ (one of several: the
        counters of the last are given to wrote())."""
        with self._lock:
            self._expect(owner, name, mailbox_id, highestmodseq)

    def created(self, mailbox: Mailbox) -> None:
        with self._lock:
            if mailbox.owner in self._users:
                self._users[mailbox.owner][mailbox.name] = mailbox
                self._subscriptions[mailbox.owner].add(mailbox.name)  # CREATE subscribes

    def renamed(self, old: str, mailbox: Mailbox) -> None:
        with self._lock:
            listing = self._users.get(mailbox.owner)
            if listing is not None:
                listing.pop(old, None)
                listing[mailbox.name] = mailbox
                subscribed = self._subscriptions[mailbox.owner]
                if old in subscribed:  # RENAME takes the subscription along
                    subscribed.discard(old)
                    subscribed.add(mailbox.name)

    def deleted(self, owner: str, name: str) -> None:
        with self._lock:
            listing = self._users.get(owner)
            if listing is not None:
                gone = listing.pop(name, None)
                if gone is not None and gone.legacy_subscribed:  # the subscription outlives it
                    self._subscriptions[owner].add(name)

    def claimed_recent(self, mailbox: Mailbox, end: int, *, wrote: bool = True) -> None:
        """This process claimed the UIDs below `end` as \\Recent (store/recent.py); `wrote`: its
        claim wrote the item (so a notice of it will come)."""
        with self._lock:
            if self._trusted and wrote:
                if len(self._claims) >= MAX_ECHOES:
                    self._claims.clear()
                self._claims[(mailbox.mailbox_id, end)] += 1
            there = self._held(mailbox.owner, mailbox.name)
            if there is not None and there.mailbox_id == mailbox.mailbox_id:
                self._users[mailbox.owner][mailbox.name] = replace(
                    there, recent_from=max(there.recent_from, end)
                )

    def subscribed(self, owner: str, name: str, subscribed: bool) -> None:
        with self._lock:
            names = self._subscriptions.get(owner)
            if names is None:
                return
            if subscribed:
                names.add(name)
                return
            names.discard(name)
            there = self._held(owner, name)
            if there is not None and there.legacy_subscribed:
                self._users[owner][name] = replace(there, legacy_subscribed=False)

    def _held(self, owner: str, name: str) -> Mailbox | None:
        listing = self._users.get(owner)
        return listing.get(name) if listing is not None else None

    def _expect(self, owner: str, name: str, mailbox_id: str, highestmodseq: int) -> None:
        """The notice of this write is still to come: it will say nothing new. (If a notice at or
        past these counters came already, so did this one's, or it never will.)"""
        if not self._trusted or self._noticed.get(mailbox_id, 0) >= highestmodseq:
            return
        if len(self._echoes) >= MAX_ECHOES:
            self._forget_echoes()
        self._echoes[(owner, name, mailbox_id, highestmodseq)] += 1

    def _forget_echoes(self) -> None:
        """Too many echoes awaited (notices lost: the feed does not promise them), or too many
        mailboxes noticed. Forgetting an echo costs only a read of the user's items when it comes."""
        self._echoes.clear()
        self._noticed.clear()


def _shows(notice: Notice, mailbox: Mailbox) -> bool:
    """The notice says exactly what memory holds of the mailbox: every attribute a write changes
    (the counters, the \\Recent claim, the totals, the pruning floor) is there and equal."""
    return (
        notice.prunedmodseq >= 0
        and notice.recent_from > 0
        and (notice.uidnext, notice.highestmodseq, notice.recent_from, notice.prunedmodseq)
        == (mailbox.uidnext, mailbox.highestmodseq, mailbox.recent_from, mailbox.prunedmodseq)
        and (notice.size_total, notice.message_total) == (mailbox.size_total, mailbox.message_total)
    )


def _advanced(mailbox: Mailbox, uidnext: int, highestmodseq: int) -> Mailbox:
    """Counters only move forward: a late notice or write never takes them back."""
    return replace(
        mailbox,
        uidnext=max(mailbox.uidnext, uidnext),
        highestmodseq=max(mailbox.highestmodseq, highestmodseq),
    )
