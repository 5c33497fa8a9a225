"""What the mail store keeps: mailboxes and the messages in them, shaped for IMAP."""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

# Every user has these (RFC 6154 special-use attributes beside each).
DEFAULT_MAILBOXES: dict[str, str | None] = {
    "INBOX": None,
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

USER_PREFIX = "user#"
MAILBOX_PREFIX = "mailbox#"
UID_PREFIX = "uid#"
SUBSCRIPTION_PREFIX = "subscription#"  # under user#<owner>: a subscribed name, mailbox or not
DELIVERY_PREFIX = "delivery#"
UID_WIDTH = 10  # UIDs are 32-bit: at most 10 digits, zero-padded so sort keys sort numerically
# Mailbox item attributes: the running totals (and whether they are exact), and pruning's floor.
SIZE_TOTAL = "size_total"
MESSAGE_TOTAL = "message_total"
COUNTED = "counted"
PRUNED_MODSEQ = "prunedmodseq"
PRUNE_MARK = "prunemark"
PRUNE_MARK_AT = "prunemark_at"
# The local index of a mailbox's messages by MODSEQ (template.yaml): what changed since a MODSEQ.
CHANGES_INDEX = "by_modseq"


# The one counter every new mailbox takes its UIDVALIDITY from (MailStore._new_uidvalidity): a
# partition of its own, so nothing that lists a user's or a mailbox's items ever meets it.
UIDVALIDITY_COUNTER_KEY = {"pk": "counter#uidvalidity", "sk": "counter#uidvalidity"}


def owner_pk(owner: str) -> str:
    return USER_PREFIX + owner


def mailbox_sk(name: str) -> str:
    return MAILBOX_PREFIX + name


def subscription_sk(name: str) -> str:
    return SUBSCRIPTION_PREFIX + name


def messages_pk(mailbox_id: str) -> str:
    return MAILBOX_PREFIX + mailbox_id


def uid_sk(uid: int) -> str:
    return f"{UID_PREFIX}{uid:0{UID_WIDTH}d}"


def delivery_sk(delivery_id: str) -> str:
    return DELIVERY_PREFIX + delivery_id


@dataclass(frozen=True)
class Mailbox:
    owner: str
    name: str
    mailbox_id: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None = None
    # The RFC822.SIZE octets and the number of its live messages, kept by every change's guard
    # (store/transactions.py); None until counted (a mailbox made before the totals existed:
    # store/totals.py counts it once).
    size_total: int | None = None
    message_total: int | None = None
    # Tombstones at or below this MODSEQ may be pruned (store/pruning.py): changes_since below it
    # answers every UID under UIDNEXT that is not live as expunged.
    prunedmodseq: int = 0
    # The HIGHESTMODSEQ the mailbox had at the last pruning run: the next floor (store/pruning.py).
    prunemark: int = 0

    @property
    def counted(self) -> bool:
        return self.size_total is not None

    # Subscriptions are items of their own (SUBSCRIPTION_PREFIX); this is the attribute mailbox
    # items made before them carry, still honoured until UNSUBSCRIBE or DELETE removes it.
    legacy_subscribed: bool = False
    recent_from: int = 1  # the first UID no session claimed as \Recent yet (store/recent.py)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Mailbox:
        counted = bool(item.get(COUNTED))
        return cls(
            owner=item["pk"][len(USER_PREFIX) :],
            name=item["sk"][len(MAILBOX_PREFIX) :],
            mailbox_id=item["mailbox_id"],
            uidvalidity=int(item["uidvalidity"]),
            uidnext=int(item["uidnext"]),
            highestmodseq=int(item["highestmodseq"]),
            special_use=item.get("special_use"),
            size_total=int(item.get(SIZE_TOTAL, 0)) if counted else None,
            message_total=int(item.get(MESSAGE_TOTAL, 0)) if counted else None,
            prunedmodseq=int(item.get(PRUNED_MODSEQ, 0)),
            prunemark=int(item.get(PRUNE_MARK, 0)),
            legacy_subscribed=bool(item.get("subscribed", False)),
            recent_from=int(item.get("recent_from", 1)),
        )


@dataclass(frozen=True)
class MessageState:
    """What changes about a stored message: its flags, and with them its MODSEQ; or its expunge."""

    uid: int
    modseq: int
    flags: tuple[str, ...]
    expunged: bool = False


@dataclass(frozen=True)
class StoredMessage:
    """One message in one mailbox: everything IMAP lists without touching S3."""

    uid: int
    modseq: int
    flags: tuple[str, ...]
    internaldate: int
    size: int
    blob_key: str
    delivery_id: str
    # The MIME summary as stored (zlib JSON, ~0.5 KB): unpacked (~7 KB of Python objects) only when
    # used, so a session or snapshot holding a mailbox of 100,000 messages does not hold 700 MB.
    packed_summary: bytes = field(default=b"", repr=False)
    expunged: bool = False
    # The size with every bare LF counted as CRLF, as POP3 and IMAP's RFC822.SIZE report it.
    crlf_size: int = 0

    @property
    def summary(self) -> dict[str, Any]:
        """ENVELOPE and BODYSTRUCTURE fields and part offsets (mailpipe.mime.summary); shared with
        other holders of the same summary, so never to be changed."""
        return _unpacked(self.packed_summary) if self.packed_summary else {}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoredMessage:
        """The message of an index item; its `header` attribute, if read, is left behind."""
        return cls(
            uid=int(item["uid"]),
            modseq=int(item["modseq"]),
            flags=tuple(item.get("flags", [])),
            internaldate=int(item["internaldate"]),
            size=int(item["size"]),
            blob_key=item["blob_key"],
            delivery_id=item.get("delivery_id", ""),
            packed_summary=_as_bytes(item.get("summary")),
            expunged=bool(item.get("expunged", False)),
            crlf_size=int(item.get("crlf_size", item["size"])),
        )


# What a message listing reads of each item: what StoredMessage.from_item uses, never `header`,
# which only read_headers reads (listings of big mailboxes would carry ~1 KB more per message).
MESSAGE_ATTRIBUTES = (
    "pk",
    "sk",
    "uid",
    "modseq",
    "flags",
    "internaldate",
    "size",
    "blob_key",
    "delivery_id",
    "summary",
    "expunged",
    "crlf_size",
)


def message_projection(with_header: bool = False) -> dict[str, Any]:
    """ProjectionExpression and ExpressionAttributeNames reading MESSAGE_ATTRIBUTES (names go
    through placeholders: SIZE is one of DynamoDB's reserved words), and `header` if asked for
    (a snapshot's listing, which keeps the headers in the process: store/headers.py)."""
    attributes = (*MESSAGE_ATTRIBUTES, "header") if with_header else MESSAGE_ATTRIBUTES
    names = {f"#m{i}": name for i, name in enumerate(attributes)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


# A message's top-level header block is kept in its item (zlib, attribute `header`) when it
# compresses to at most this; a bigger one is read from S3. 8 KB keeps the item, with a summary
# of at most MAX_PACKED_SUMMARY, within DynamoDB's 400 KB, and a header fetch of a 10,000-message
# mailbox within ~10-30 MB of reads where headers are ordinary (~0.5-1 KB compressed).
MAX_PACKED_HEADER = 8 * 1024

# DynamoDB items hold at most 400 KB; the rest of the message item needs well under 100 KB.
MAX_PACKED_SUMMARY = 300 * 1024


def pack_summary(summary: dict[str, Any]) -> bytes:
    """The summary compressed, or, if even that is too big for an item, a marker saying so.

    Only pathological messages (say a To: with 100,000 addresses) overflow; for them the
    store keeps just the size, and a reader that needs more summarises the body from S3.
    """
    packed = zlib.compress(json.dumps(summary, separators=(",", ":")).encode(), 6)
    if len(packed) <= MAX_PACKED_SUMMARY:
        return packed
    return zlib.compress(json.dumps({"size": summary.get("size"), "too_large": True}).encode())


def unpack_summary(value: Any) -> dict[str, Any]:
    """The summary of an item's `summary` attribute as boto3 gives it; {} if there is none."""
    packed = _as_bytes(value)
    return _unpacked(packed) if packed else {}


# Unpacked summaries kept for the messages in use (a FETCH of envelopes, a SEARCH): ~7 KB each.
UNPACKED_SUMMARIES = 4096


@functools.lru_cache(maxsize=UNPACKED_SUMMARIES)
def _unpacked(packed: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(packed))  # type: ignore[no-any-return]


def _as_bytes(value: Any) -> bytes:
    """A binary attribute as boto3 gives it (a Binary wrapper, or bytes), or b"" if absent."""
    if value is None:
        return b""
    return bytes(value.value if hasattr(value, "value") else value)
