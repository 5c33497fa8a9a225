"""Finding the signed-in owner's stored messages by JMAP id, and reading their bytes.

Each Email is one stored message (mailbox id, UID); see docs/jmap.md. Lookups go mailbox by mailbox
(one BatchGetItem per mailbox for its UIDs), only in the owner's own mailboxes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from mailpipe.jmap import ids
from mailpipe.jmap.blobs import is_upload_id
from mailpipe.jmap.context import Context
from mailpipe.jmap.ids import MessageRef
from mailpipe.jmap.parsed import Part, find_part, parse_message, structure
from mailpipe.store import Mailbox, StoredMessage


@dataclass(frozen=True)
class Found:
    mailbox: Mailbox
    message: StoredMessage

    @property
    def ref(self) -> MessageRef:
        return MessageRef(self.mailbox.mailbox_id, self.message.uid)


def locate(context: Context, refs: Iterable[MessageRef]) -> dict[MessageRef, Found]:
    """The live messages among `refs` that are the owner's, keyed by ref (without part)."""
    by_mailbox: dict[str, set[int]] = defaultdict(set)
    for ref in refs:
        by_mailbox[ref.mailbox_id].add(ref.uid)
    found: dict[MessageRef, Found] = {}
    for mailbox_id, uids in by_mailbox.items():
        mailbox = context.mailbox(mailbox_id)
        if mailbox is None:
            continue
        listed = context.listed(mailbox_id)
        if listed is not None:
            chosen = [m for m in listed if m.uid in uids]
        else:
            chosen = context.store.messages_by_uid(mailbox, uids)
        for message in chosen:
            found[MessageRef(mailbox_id, message.uid)] = Found(mailbox, message)
    return found


def locate_ids(context: Context, jmap_ids: Iterable[str], kind: str = "E") -> dict[str, Found]:
    refs = {jmap_id: ids.parse(jmap_id, kind) for jmap_id in jmap_ids}
    found = locate(context, [r for r in refs.values() if r is not None])
    result: dict[str, Found] = {}
    for jmap_id, ref in refs.items():
        base = MessageRef(ref.mailbox_id, ref.uid) if ref else None
        if base is not None and base in found:
            result[jmap_id] = found[base]
    return result


def read_blob(context: Context, blob_id: str) -> bytes | None:
    """A blob's bytes: an upload, a whole message, or one part's decoded content; None if not the
    owner's."""
    if is_upload_id(blob_id):
        return context.uploads.read(context.account_id, blob_id) if context.uploads else None
    ref = ids.parse(blob_id, "B")
    if ref is None:
        return None
    found = locate(context, [MessageRef(ref.mailbox_id, ref.uid)]).get(MessageRef(ref.mailbox_id, ref.uid))
    if found is None:
        return None
    raw = context.store.read_body(found.message)
    if ref.part is None:
        return raw
    part = part_of(raw, ref.part)
    return part.content() if part is not None else None


def part_of(raw: bytes, part_id: str) -> Part | None:
    return find_part(structure(parse_message(raw)), part_id)
