"""What `mailpipe mailbox ...` asks of the store: a user's mailboxes with their counts and sizes,
one message's header and summary, and emptying a mailbox.

Everything goes through MailStore's own reads and EXPUNGE, so an administrator's purge is seen by
IMAP sessions as any other expunge (with its MODSEQ), and bodies are deleted after the index.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailpipe.directory import Directory, Verdict
from mailpipe.store.mailstore import MailStore, NoSuchMailbox, StoreError
from mailpipe.store.model import Mailbox, StoredMessage


@dataclass(frozen=True)
class MailboxUsage:
    mailbox: Mailbox
    messages: int
    size: int  # octets as stored (as received)
    unseen: int


@dataclass(frozen=True)
class MessageDetail:
    mailbox: Mailbox
    message: StoredMessage
    header: bytes  # the top-level header block, byte-exact


def mailbox_owner(directory: Directory, store: MailStore, address: str) -> str:
    """The owner whose mailboxes `address` names, or StoreError saying why there is none.

    A mailbox owner is usually a user, but postmaster@ may have mailboxes without being one:
    so mailboxes found are enough, and the directory only explains their absence.
    """
    verdict = directory.lookup(address)
    if verdict.verdict == Verdict.INVALID:
        raise StoreError(verdict.reason)
    owner = verdict.address
    if store.list_mailboxes(owner):
        return owner
    if verdict.verdict == Verdict.NOT_LOCAL:
        raise StoreError(f"{owner} is not in a hosted domain")
    if verdict.verdict == Verdict.UNKNOWN_USER:
        raise StoreError(f"no such user: {owner}")
    raise StoreError(f"{owner} has no mailboxes")


def usage(store: MailStore, owner: str) -> list[MailboxUsage]:
    """Each of `owner`'s mailboxes with its live messages counted, INBOX first, then by name."""
    found = []
    for mailbox in store.list_mailboxes(owner):
        messages = store.messages_in(mailbox)
        found.append(
            MailboxUsage(
                mailbox,
                len(messages),
                sum(m.size for m in messages),
                sum("\\Seen" not in m.flags for m in messages),
            )
        )
    return sorted(found, key=lambda u: (u.mailbox.name != "INBOX", u.mailbox.name))


def message_detail(store: MailStore, owner: str, mailbox_name: str, uid: int) -> MessageDetail:
    mailbox = store.require_mailbox(owner, mailbox_name)
    found = store.messages_by_uid(mailbox, [uid])
    if not found:
        raise NoSuchMailbox(f"no message with UID {uid} in {owner} {mailbox_name}")
    headers = store.read_headers(mailbox.mailbox_id, found)
    return MessageDetail(mailbox, found[0], headers.get(uid, b""))


def purge(store: MailStore, owner: str, mailbox_name: str) -> int:
    """Expunge every message of the mailbox (the mailbox stays); returns how many went."""
    mailbox, messages = store.list_messages(owner, mailbox_name)
    return len(store.expunge(owner, mailbox_name, [m.uid for m in messages], mailbox=mailbox))
