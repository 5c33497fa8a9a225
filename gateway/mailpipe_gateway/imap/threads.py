"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 3): a set of messages as threads.

What each message needs comes from its ENVELOPE (Message-ID, In-Reply-To, Subject, Date) and,
for REFERENCES, the References field of its header block, which the caller reads from the index
(MailStore.read_headers: no S3 for most messages).

Both algorithms run in O(n log n) for n messages plus the Message-IDs they name, and nothing
recurses: a reply chain thousands deep is walked with explicit stacks. Linking a reply under
its parent checks that this makes no loop by walking up from the parent, unless the reply has
no replies yet (then no loop is possible, the usual case); that walk stops after MAX_ANCESTRY
steps and then leaves the link out, so a hostile mailbox cannot make threading quadratic.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailpipe.mime.headers import header_fields
from mailpipe.mime.offsets import scan_header
from mailpipe.mime.threading import message_ids
from mailpipe.store import StoredMessage
from mailpipe.store.model import unpack_summary
from mailpipe_gateway.imap.sort import base_subject, casemap, sent_time

CACHED_FIELDS = 50_000  # per process, by stored summary and by header block: some 20 MB each at most
MAX_ANCESTRY = 1000  # parents walked up to rule out a loop; deeper threads are absurd
MAX_REFERENCES = 200  # the last Message-IDs of a References field used; the last ones name the parents


@dataclass(frozen=True)
class Threadable:
    """What threading needs of one message."""

    number: int  # what the response shows: the message number, or the UID for UID THREAD
    sent: int  # the Date as seconds (INTERNALDATE without one): RFC 5256 2.2's sent date
    subject: str  # the base subject
    reply: bool  # the base subject extraction removed Re:, Fwd: and the like
    message_id: str | None = None
    references: tuple[str, ...] = ()  # References' ids, else In-Reply-To's first, oldest first


def threadable(
    number: int, internaldate: int, envelope: dict[str, object], header: bytes | None = None
) -> Threadable:
    """A message as threading sees it; ``header`` is its header block (for References)."""
    return _threadable(number, internaldate, envelope_fields(envelope), header)


def threadable_of(
    number: int,
    message: StoredMessage,
    summary_of: Callable[[StoredMessage], dict[str, Any]],
    header: bytes | None,
) -> Threadable:
    """threadable() of a stored message, with what its stored summary gives kept per process
    (unpacking summaries would otherwise be most of the work of threading a large mailbox)."""
    fields = _stored_fields(message.packed_summary) if message.packed_summary else None
    if fields is None:  # no complete stored summary: from the one made of the body
        fields = envelope_fields(summary_of(message).get("envelope") or {})
    return _threadable(number, message.internaldate, fields, header)


_Fields = tuple[int | None, str, bool, str | None, tuple[str, ...]]


def envelope_fields(envelope: dict[str, Any]) -> _Fields:
    """(sent time or None, base subject, reply marker, Message-ID, In-Reply-To's first id)."""
    subject, reply = base_subject(str(envelope.get("subject") or ""))
    ids = message_ids(envelope.get("message_id"))
    return (
        sent_time(envelope.get("date")),
        subject,
        reply,
        ids[0] if ids else None,
        tuple(message_ids(envelope.get("in_reply_to"))[:1]),
    )


@functools.lru_cache(maxsize=CACHED_FIELDS)
def _stored_fields(packed: bytes) -> _Fields | None:
    summary = unpack_summary(packed)
    return envelope_fields(summary.get("envelope") or {}) if "bodystructure" in summary else None


@functools.lru_cache(maxsize=CACHED_FIELDS)
def header_references(header: bytes) -> tuple[str, ...]:
    """The last MAX_REFERENCES ids of the References field of a header block (kept per process:
    MailStore.read_headers hands out the same bytes for the same message)."""
    end = scan_header(header, 0, [])[1]
    value = next((v for name, v in header_fields(header, 0, end) if name == "references"), None)
    return tuple(message_ids(value[-64 * MAX_REFERENCES :] if value else None)[-MAX_REFERENCES:])


def _threadable(number: int, internaldate: int, fields: _Fields, header: bytes | None) -> Threadable:
    sent, subject, reply, message_id, in_reply_to = fields
    references = header_references(header) if header is not None else ()
    return Threadable(
        number=number,
        sent=internaldate if sent is None else sent,
        subject=subject,
        reply=reply,
        message_id=message_id,
        references=references or in_reply_to,
    )


@dataclass(eq=False)
class _Node:
    message: Threadable | None = None
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def sort_key(self) -> tuple[int, int]:
        """Sent date, then number; a dummy sorts as its first child (already sorted)."""
        node = self
        while node.message is None and node.children:
            node = node.children[0]
        return (node.message.sent, node.message.number) if node.message else (0, 0)

    def first_message(self) -> Threadable | None:
        node = self
        while node.message is None and node.children:
            node = node.children[0]
        return node.message


# --- ORDEREDSUBJECT ------------------------------------------------------------------------------


def ordered_subject(messages: Sequence[Threadable]) -> list[_Node]:
    """RFC 5256 3, ORDEREDSUBJECT: messages with one base subject form a thread, the earliest its
    top and the others its children, in sent-date order; threads in their tops' order."""
    ordered = sorted(messages, key=lambda m: (casemap(m.subject), m.sent, m.number))
    threads: list[_Node] = []
    current: bytes | None = None
    for message in ordered:
        key = casemap(message.subject)
        if threads and key == current:
            _adopt(threads[-1], _Node(message))
        else:
            threads.append(_Node(message))
            current = key
    threads.sort(key=_Node.sort_key)
    return threads


# --- REFERENCES ----------------------------------------------------------------------------------


def references(messages: Sequence[Threadable]) -> list[_Node]:
    """RFC 5256 3, REFERENCES (after Jamie Zawinski's algorithm): the threads, each a root node."""
    by_id: dict[str, _Node] = {}
    nodes: list[_Node] = []
    for message in sorted(messages, key=lambda m: m.number):
        node = _container(by_id, message)
        nodes.append(node)
        # (1A) link each reference to the next, unless linked already or that would make a loop
        chain = [_node_for(by_id, msg_id) for msg_id in message.references]
        for parent, child in itertools.pairwise(chain):
            if child.parent is None and parent is not child and not _descends(parent, child):
                _adopt(parent, child)
        # (1B) the message under its last reference, replacing any parent it had
        parent = chain[-1] if chain else None
        if node.parent is not None and node.parent is not parent:
            _orphan(node)
        if parent is not None and node.parent is None and parent is not node and not _descends(parent, node):
            _adopt(parent, node)
    # (2) the roots: containers without a parent, whether they hold a message or not
    roots = [node for node in _unique(by_id.values(), nodes) if node.parent is None]
    # (3) prune dummies (containers of Message-IDs no message in the set has)
    roots = _prune(roots)
    # (4) sort the roots by sent date (a dummy by its first child's)
    for node in roots:
        if node.message is None:
            node.children.sort(key=_Node.sort_key)
    roots.sort(key=_Node.sort_key)
    # (5) gather roots with the same base subject
    roots = _gather_subjects(roots)
    # (6) sort every set of siblings by sent date, bottom-up so a dummy sorts as its first child
    _sort_all(roots)
    return roots


def _container(by_id: dict[str, _Node], message: Threadable) -> _Node:
    """The container of ``message``: the one its Message-ID named already, if empty; a new one
    for a message without Message-ID or repeating one (RFC 5256: only the first keeps it)."""
    msg_id = message.message_id
    if msg_id is not None:
        node = by_id.get(msg_id)
        if node is None:
            node = by_id[msg_id] = _Node(message)
            return node
        if node.message is None:
            node.message = message
            return node
    return _Node(message)


def _node_for(by_id: dict[str, _Node], msg_id: str) -> _Node:
    node = by_id.get(msg_id)
    if node is None:
        node = by_id[msg_id] = _Node()
    return node


def _descends(node: _Node, ancestor: _Node) -> bool:
    """Whether ``node`` is ``ancestor`` or below it (a link ancestor -> ... -> node would then
    make a loop); also True when that cannot be told within MAX_ANCESTRY steps.

    An ``ancestor`` without children is nobody's ancestor: the usual case (a message linked
    under its parent as it comes) costs no walk, whatever the depth of the thread."""
    if node is ancestor:
        return True
    if not ancestor.children:
        return False
    current: _Node | None = node
    for _ in range(MAX_ANCESTRY):
        if current is None:
            return False
        if current is ancestor:
            return True
        current = current.parent
    return True


def _adopt(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _orphan(node: _Node) -> None:
    assert node.parent is not None
    node.parent.children.remove(node)
    node.parent = None


def _unique(*groups: Iterable[_Node]) -> list[_Node]:
    seen: set[int] = set()
    out: list[_Node] = []
    for group in groups:
        for node in group:
            if id(node) not in seen:
                seen.add(id(node))
                out.append(node)
    return out


def _prune(roots: list[_Node]) -> list[_Node]:
    """(3): a dummy without children goes; one with children is replaced by them, except at the
    top level, where only a dummy with a single child is (so threads stay apart)."""
    out: list[_Node] = []
    todo = list(reversed(roots))  # explicit stack: (3) applies all the way down
    while todo:
        node = todo.pop()
        if node.message is None and (not node.children or len(node.children) == 1):
            for child in reversed(node.children):
                child.parent = None
                todo.append(child)
            continue
        out.append(node)
    for root in out:
        _prune_below(root)
    return out


def _prune_below(root: _Node) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        kept: list[_Node] = []
        pending = list(reversed(node.children))
        while pending:
            child = pending.pop()
            if child.message is None:  # splice its children in its place (and look at them again)
                for grandchild in reversed(child.children):
                    pending.append(grandchild)
                continue
            child.parent = node
            kept.append(child)
        node.children = kept
        stack.extend(kept)


def _gather_subjects(roots: list[_Node]) -> list[_Node]:
    """(5): top-level threads with one base subject are put together."""
    table: dict[bytes, _Node] = {}
    for node in roots:
        first = node.first_message()
        if first is None or not first.subject:
            continue
        key = casemap(first.subject)
        old = table.get(key)
        if (
            old is None
            or (node.message is None and old.message is not None)
            or (
                old.message is not None
                and old.message.reply
                and node.message is not None
                and not node.message.reply
            )
        ):
            table[key] = node
    out: list[_Node] = []
    replaced: dict[int, _Node] = {}  # a table entry that became a new dummy, by the entry's id
    for node in roots:
        first = node.first_message()
        key = casemap(first.subject) if first and first.subject else None
        old = table.get(key) if key is not None else None
        if old is None or old is node:
            out.append(replaced.get(id(node), node))
            continue
        if old.message is None and node.message is None:
            for child in node.children:
                _adopt(old, child)
            node.children = []
        elif old.message is None or (
            node.message is not None and node.message.reply and not old.message.reply
        ):
            _adopt(old, node)  # under the dummy, or a reply under the original
        else:
            dummy = _Node()
            holder = old.parent
            if holder is not None:  # the table entry was gathered under a dummy already
                holder.children[holder.children.index(old)] = dummy
                dummy.parent = holder
                old.parent = None
            else:
                position = next((i for i, kept in enumerate(out) if kept is old), None)
                if position is not None:
                    out[position] = dummy
                else:
                    replaced[id(old)] = dummy
            _adopt(dummy, old)
            _adopt(dummy, node)
            table[key] = dummy  # type: ignore[index]
    return out


def _sort_all(roots: list[_Node]) -> None:
    """(6): every set of siblings by sent date, children before parents (post-order, no recursion)."""
    order: list[_Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    for node in reversed(order):
        node.children.sort(key=_Node.sort_key)
    roots.sort(key=_Node.sort_key)


# --- the response --------------------------------------------------------------------------------


def thread_response(threads: list[_Node]) -> bytes:
    """``* THREAD`` and the thread list (RFC 5256 4): ``(a b (c)(d e))``, where a node with one
    child continues in its own parentheses and one with several opens one per child."""
    out = [b"* THREAD"]
    if threads:
        out.append(b" ")
    for root in threads:
        out.append(_thread(root))
    out.append(b"\r\n")
    return b"".join(out)


def _thread(root: _Node) -> bytes:
    parts: list[bytes] = []
    # Each stack entry is a node to open a parenthesis for, or a closing parenthesis.
    stack: list[_Node | None] = [root]
    while stack:
        node = stack.pop()
        if node is None:
            parts.append(b")")
            continue
        parts.append(b"(")
        words: list[bytes] = []
        while True:
            if node.message is not None:
                words.append(b"%d" % node.message.number)
            if len(node.children) == 1:
                node = node.children[0]
                continue
            break
        parts.append(b" ".join(words))
        if node.children and words:
            parts.append(b" ")
        stack.append(None)
        stack.extend(reversed(node.children))
    return b"".join(parts)


def thread(algorithm: str, messages: Sequence[Threadable]) -> list[_Node]:
    """The threads of ``messages`` by ``algorithm`` (ORDEREDSUBJECT or REFERENCES)."""
    run: Callable[[Sequence[Threadable]], list[_Node]] = (
        ordered_subject if algorithm == "ORDEREDSUBJECT" else references
    )
    return run(messages)
