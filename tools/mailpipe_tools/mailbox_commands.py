"""`mailpipe mailbox list|show|purge`: look into a user's mailboxes, and empty one.

The work is in the core (mailpipe.store.admin); this module parses arguments and prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mailpipe.store import admin


def register(commands: Any) -> None:
    """Adds `mailbox` to the `mailpipe` parser's sub-commands."""
    mailbox = commands.add_parser("mailbox", help="look into a user's mailboxes").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = mailbox.add_parser(
        "list", help="a user's mailboxes with their counts and sizes, or one mailbox's messages"
    )
    p.add_argument("address")
    p.add_argument("mailbox", nargs="?", help="list this mailbox's messages (UID, size, flags, subject)")
    p.set_defaults(run=_list)
    p = mailbox.add_parser("show", help="one message's header and summary, by UID")
    p.add_argument("address")
    p.add_argument("uid", type=int)
    p.add_argument("--mailbox", default="INBOX", help="default: INBOX")
    p.set_defaults(run=_show)
    p = mailbox.add_parser("purge", help="delete every message of a mailbox (the mailbox stays)")
    p.add_argument("address")
    p.add_argument("mailbox")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=_purge)


def _owner(address: str) -> str:
    from mailpipe.services import directory, mail_store

    return admin.mailbox_owner(directory(), mail_store(), address)


def _list(args: argparse.Namespace) -> None:
    from mailpipe.services import mail_store

    store, owner = mail_store(), _owner(args.address)
    if args.mailbox is None:
        usages = admin.usage(store, owner)
        for used in usages:
            print(
                f"{used.mailbox.name:<20} {used.messages:>7} messages {used.unseen:>7} unseen "
                f"{human_size(used.size):>9}"
            )
        count, total = sum(u.messages for u in usages), sum(u.size for u in usages)
        print(f"{owner}: {len(usages)} mailboxes, {count} messages, {human_size(total)}")
        return
    mailbox, messages = store.list_messages(owner, args.mailbox)
    for message in messages:
        subject = (message.summary.get("envelope") or {}).get("subject") or ""
        flags = " ".join(message.flags) or "-"
        print(f"{message.uid:>6}  {message.size:>9}  {_date(message.internaldate)}  {flags:<16}  {subject}")
    print(f"{owner} {mailbox.name}: {len(messages)} messages, UIDVALIDITY {mailbox.uidvalidity}")


def _show(args: argparse.Namespace) -> None:
    from mailpipe.services import mail_store

    detail = admin.message_detail(mail_store(), _owner(args.address), args.mailbox, args.uid)
    message = detail.message
    print(f"UID           {message.uid} (UIDVALIDITY {detail.mailbox.uidvalidity})")
    print(f"mailbox       {detail.mailbox.name}")
    print(f"received      {_date(message.internaldate)}")
    print(f"size          {message.size} octets")
    print(f"flags         {' '.join(message.flags) or '-'}")
    parts = _parts(message.summary.get("bodystructure") or {})
    print(f"structure     {', '.join(parts) or '-'}")
    print()
    # The header as stored; bytes that are not UTF-8 (old 8-bit mail) shown as replacement
    # characters rather than failing the whole listing.
    sys.stdout.write(detail.header.decode("utf-8", "replace"))
    sys.stdout.flush()


def _purge(args: argparse.Namespace) -> int:
    from mailpipe.services import mail_store

    store, owner = mail_store(), _owner(args.address)
    count = len(store.list_messages(owner, args.mailbox)[1])
    if not args.yes and not confirm(f"delete all {count} messages of {owner} {args.mailbox}?"):
        print("nothing deleted", file=sys.stderr)
        return 1
    print(f"purged {admin.purge(store, owner, args.mailbox)} messages from {owner} {args.mailbox}")
    return 0


def confirm(question: str) -> bool:
    """Asks on the terminal; without one (a script, a pipe) the caller must have said --yes."""
    if not sys.stdin.isatty():
        raise ValueError(f"{question.rstrip('?')}: say --yes (standard input is not a terminal)")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def human_size(octets: int) -> str:
    size = float(octets)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _date(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _parts(body: dict[str, Any]) -> list[str]:
    """The content types of the message's leaf parts, as its stored summary describes them."""
    children = body.get("parts")
    if children:
        return [t for child in children for t in _parts(child)]
    kind = "/".join(x for x in (body.get("type"), body.get("subtype")) if x)
    return [kind.lower()] if kind else []
