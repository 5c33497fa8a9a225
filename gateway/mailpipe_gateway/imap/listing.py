"""Which names a LIST or LSUB shows, with which attributes (RFC 9051 6.3.9, RFC 5258, RFC 3501 6.3.9).

Subscriptions are names, not mailboxes (RFC 9051 6.3.7): a subscribed name may have no mailbox
(it was deleted, or never made), and LIST (SUBSCRIBED) then shows it as \\NonExistent. With
RECURSIVEMATCH, a name the pattern matches that has subscribed names below it is shown too, with
CHILDINFO ("SUBSCRIBED") (RFC 5258 3.5). LSUB shows a name the pattern matches that is not itself
subscribed, but has a subscribed inferior the pattern does not match, as \\Noselect (RFC 3501
6.3.9: LSUB "" "%" with only "foo/bar" subscribed shows "foo").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailpipe.store import Mailbox
from mailpipe_gateway.imap.wildcard import DELIMITER, Wildcard


@dataclass(frozen=True)
class Listed:
    name: str
    attributes: tuple[str, ...]
    mailbox: Mailbox | None  # None: no mailbox has the name (a subscription, or a superior of one)
    childinfo: bool = False  # RFC 5258 CHILDINFO ("SUBSCRIBED")


@dataclass(frozen=True)
class Selection:
    """What the LIST asks for: LSUB, or LIST's selection and return options."""

    lsub: bool = False
    subscribed_only: bool = False  # LSUB, or LIST (SUBSCRIBED)
    special_only: bool = False  # LIST (SPECIAL-USE)
    recursive: bool = False  # RECURSIVEMATCH
    show_subscribed: bool = False  # \Subscribed among the attributes


def listing(
    mailboxes: list[Mailbox], subscribed: set[str], patterns: Iterable[str], selection: Selection
) -> list[Listed]:
    """The rows a LIST shows, INBOX first, then by name."""
    wildcards = [Wildcard(pattern) for pattern in patterns]

    def matches(name: str) -> bool:
        return any(w.matches(name) for w in wildcards)

    existing = {m.name: m for m in mailboxes}
    parents = _superiors(existing)  # names with existing inferiors
    if selection.subscribed_only:
        names = {name for name in subscribed if matches(name)}
        subscribed_below = _superiors(subscribed)
        if selection.recursive:
            names |= {name for name in subscribed_below if matches(name)}
        elif selection.lsub:
            hidden = {name for name in subscribed if not matches(name)}
            names |= {name for name in _superiors(hidden) if matches(name)}
    else:
        subscribed_below = frozenset()
        names = {name for name in existing if matches(name)}
    rows = []
    for name in sorted(names, key=lambda n: (n != "INBOX", n)):
        mailbox = existing.get(name)
        if selection.special_only and (mailbox is None or not mailbox.special_use):
            continue
        attributes = []
        if selection.lsub:
            if name not in subscribed or mailbox is None:
                attributes.append("\\Noselect")
        elif mailbox is None:
            attributes.append("\\NonExistent")  # implies \Noselect (RFC 5258 3.4)
        else:
            attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if selection.show_subscribed and name in subscribed:
            attributes.append("\\Subscribed")
        if not selection.lsub and mailbox is not None and mailbox.special_use:
            attributes.append(mailbox.special_use)  # RFC 6154: always shown, not only when asked
        rows.append(
            Listed(name, tuple(attributes), mailbox, selection.recursive and name in subscribed_below)
        )
    return rows


def _superiors(names: Iterable[str]) -> frozenset[str]:
    """Every name that is a proper superior of one of `names` (each prefix ending before a
    delimiter), collected in one pass over each name: a superior need not exist itself."""
    found: set[str] = set()
    for name in names:
        end = name.rfind(DELIMITER)
        while end > 0 and name[:end] not in found:
            found.add(name[:end])
            end = name.rfind(DELIMITER, 0, end)
    return frozenset(found)
