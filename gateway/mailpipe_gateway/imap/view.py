"""One session's picture of its selected mailbox: sequence numbers, flags, and what changed.

The store is the truth; sessions learn about other sessions' and the pipeline's changes
by asking the store what changed since the HIGHESTMODSEQ they last saw. The view holds what
the client believes (message numbers <-> UIDs, each message's flags and MODSEQ) and
turns those changes into the untagged responses that bring the client up to date:
EXPUNGE (or VANISHED under QRESYNC), EXISTS, and FETCH for changed flags.

RFC 9051 7.5.1: no EXPUNGE while a FETCH, STORE or SEARCH (by message number) runs, since
it would change the numbers under the client's feet; such refreshes keep expunged
messages in the view until a command that may announce them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

from mailpipe.store import Mailbox, MessageState, StoredMessage
from mailpipe_gateway.imap.ranges import indexes_within, merged


@dataclass
class Updates:
    """What to tell the client, in this order."""

    expunged: list[int] = field(default_factory=list)  # message numbers, each as of its own EXPUNGE
    vanished: list[int] = field(default_factory=list)  # UIDs (QRESYNC)
    exists: int | None = None
    changed: list[StoredMessage] = field(default_factory=list)  # flags or MODSEQ changed
    new_keywords: bool = False  # FLAGS and PERMANENTFLAGS go out again, before the FETCHes


class MailboxView:
    def __init__(self, mailbox: Mailbox, messages: list[StoredMessage], *, read_only: bool) -> None:
        self.mailbox = mailbox
        self.read_only = read_only
        self._uids: list[int] = [m.uid for m in messages]
        self._messages: dict[int, StoredMessage] = {m.uid: m for m in messages}
        self._gone: set[int] = set()  # expunged in the store, not yet announced
        # The keywords the client was told of in FLAGS: a new one is announced before its use.
        self.keywords: set[str] = set()
        self.take_new_keywords(messages)
        # UID ranges [start, end) this session claimed as \Recent (store/recent.py): only it
        # shows them so (RFC 3501 2.3.2).
        self._recent: list[tuple[int, int]] = []
        # Set when this command's own commits brought the view exactly up to the store: nothing
        # committed between its picture and them, and what commits meanwhile is concurrent with
        # the command, for the next one to announce. The session's refresh then needs no read.
        self.current_by_own_writes = False

    # -- numbers and UIDs --------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self._uids)

    @property
    def uids(self) -> list[int]:
        return list(self._uids)

    def messages(self) -> list[tuple[int, StoredMessage]]:
        return [(n, self._messages[uid]) for n, uid in enumerate(self._uids, 1)]

    def number_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self._uids, uid)
        return index + 1 if index < len(self._uids) and self._uids[index] == uid else None

    def message(self, uid: int) -> StoredMessage:
        return self._messages[uid]

    def knows(self, uid: int) -> bool:
        return uid in self._messages

    @property
    def has_pending_expunges(self) -> bool:
        return bool(self._gone)

    def is_expunged(self, uid: int) -> bool:
        """Expunged by someone else, still shown to this client until it may be told."""
        return uid in self._gone

    def searchable(self) -> list[tuple[int, StoredMessage]]:
        """What SEARCH, SORT and THREAD test (imap/matching.py): each message by its number, as
        this session shows it, except those expunged by another session and not yet announced (the
        client keeps their numbers until then, and they no longer match anything)."""
        return [(n, self.shown(m)) for n, m in self.messages() if m.uid not in self._gone]

    def by_numbers(self, ranges: list[tuple[int, int]]) -> list[tuple[int, StoredMessage]]:
        chosen = (n for low, high in merged(ranges) for n in range(max(low, 1), min(high, self.exists) + 1))
        return [(n, self._messages[self._uids[n - 1]]) for n in chosen]

    def by_uids(self, ranges: list[tuple[int, int]]) -> list[tuple[int, StoredMessage]]:
        return [(i + 1, self._messages[self._uids[i]]) for i in indexes_within(self._uids, merged(ranges))]

    @property
    def largest_uid(self) -> int:
        # "*" in a UID set: the largest UID in the mailbox (RFC 9051 6.4.8); in an empty one, UIDNEXT-1.
        return self._uids[-1] if self._uids else max(self.mailbox.uidnext - 1, 1)

    def holds_from(self, uid: int) -> bool:
        """Whether the view holds a message with this UID or a higher one."""
        return bool(self._uids) and self._uids[-1] >= uid

    def claimed_recent(self, start: int, end: int) -> None:
        if start < end:
            self._recent.append((start, end))

    def is_recent(self, uid: int) -> bool:
        return any(start <= uid < end for start, end in self._recent)

    @property
    def recent(self) -> int:
        """How many messages of the view are \\Recent in this session (the RECENT response)."""
        return sum(1 for uid in self._uids if self.is_recent(uid)) if self._recent else 0

    def shown(self, message: StoredMessage) -> StoredMessage:
        """The message as this session shows it: with \\Recent if it claimed it."""
        if self._recent and self.is_recent(message.uid):
            return replace(message, flags=(*message.flags, "\\Recent"))
        return message

    def take_new_keywords(self, messages: list[StoredMessage]) -> bool:
        """Whether `messages` carry keywords the client was not told of yet; from now on it is."""
        new = {flag for m in messages for flag in m.flags if not flag.startswith("\\")} - self.keywords
        self.keywords |= new
        return bool(new)

    # -- refreshing --------------------------------------------------------------

    def refresh(
        self,
        mailbox: Mailbox,
        changes: list[MessageState],
        arrived: dict[int, StoredMessage],
        *,
        may_expunge: bool,
        qresync: bool = False,
    ) -> Updates:
        """Fold the store's changes since the view's HIGHESTMODSEQ into the view (`arrived` holds
        the new messages among them, whole); returns what the client must be told."""
        updates = Updates()
        # Never behind what the view already covers (its own commits may have moved it on).
        self.mailbox = replace(mailbox, highestmodseq=max(mailbox.highestmodseq, self.mailbox.highestmodseq))
        for state in changes:
            if state.expunged:
                if state.uid in self._messages:
                    self._gone.add(state.uid)
            elif state.uid in self._messages:
                current = self._messages[state.uid]
                if current.flags != state.flags or current.modseq != state.modseq:
                    self._messages[state.uid] = replace(current, flags=state.flags, modseq=state.modseq)
                    updates.changed.append(self._messages[state.uid])
        if may_expunge and self._gone:
            if qresync:
                updates.vanished = sorted(self._gone)
            for uid in sorted(self._gone, reverse=True):
                number = self.number_of(uid)
                assert number is not None
                if not qresync:
                    updates.expunged.append(number)
                del self._uids[number - 1]
                del self._messages[uid]
            self._gone.clear()
            updates.changed = [m for m in updates.changed if m.uid in self._messages]
        last = self._uids[-1] if self._uids else 0
        new = [arrived[s.uid] for s in changes if s.uid > last and not s.expunged and s.uid in arrived]
        if new:
            for message in new:
                self._uids.append(message.uid)
                self._messages[message.uid] = message
            updates.exists = self.exists
        updates.new_keywords = self.take_new_keywords([*updates.changed, *new])
        return updates

    def followed_own_commits(self, commits: list[int]) -> None:
        """This session's writes moved HIGHESTMODSEQ from where the view was, with nothing in between:
        the view is as current as the store, and the next refresh need not list the mailbox."""
        if (
            commits
            and commits[0] == self.mailbox.highestmodseq
            and commits == list(range(commits[0], commits[0] + len(commits)))
        ):
            self.mailbox = replace(self.mailbox, highestmodseq=commits[-1] + 1)
            self.current_by_own_writes = True

    def followed_own_append(self, message: StoredMessage, started_from: int) -> bool:
        """This session appended `message` to this mailbox by a commit from `started_from`: if the
        view was there, it takes the message in without asking the store (the caller announces
        EXISTS) and returns True."""
        if started_from != self.mailbox.highestmodseq or message.uid != self.mailbox.uidnext:
            return False
        self._uids.append(message.uid)
        self._messages[message.uid] = message
        self.mailbox = replace(self.mailbox, uidnext=message.uid + 1, highestmodseq=started_from + 1)
        self.current_by_own_writes = True
        return True

    def followed_own_appends(self, messages: list[StoredMessage], started_from: int) -> bool:
        """As followed_own_append, for the messages one transaction of a MULTIAPPEND stored."""
        first = messages[0]
        if started_from != self.mailbox.highestmodseq or first.uid != self.mailbox.uidnext:
            return False
        for message in messages:
            self._uids.append(message.uid)
            self._messages[message.uid] = message
        self.mailbox = replace(self.mailbox, uidnext=messages[-1].uid + 1, highestmodseq=started_from + 1)
        self.current_by_own_writes = True
        return True

    def apply_own_change(self, message: StoredMessage) -> None:
        """This session changed the message (STORE): the client hears of it in the reply, not later."""
        if message.uid in self._messages:
            self._messages[message.uid] = message

    def forget(self, uids: list[int]) -> list[int]:
        """This session expunged these UIDs; returns their message numbers in EXPUNGE order."""
        numbers = []
        for uid in sorted(uids, reverse=True):
            number = self.number_of(uid)
            if number is not None:
                numbers.append(number)
                del self._uids[number - 1]
                del self._messages[uid]
            self._gone.discard(uid)
        return numbers
