"""`mailpipe quota set|show|clear`: how much mail a user may keep (mailpipe.quota enforces it)."""

from __future__ import annotations

import argparse
from typing import Any

from mailpipe.directory import DirectoryError
from mailpipe.quota import GRACE_FRACTION, parse_size
from mailpipe_tools.mailbox_commands import human_size


def register(commands: Any) -> None:
    """Adds `quota` to the `mailpipe` parser's sub-commands."""
    quota = commands.add_parser("quota", help="storage quotas of users").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = quota.add_parser("set", help="the most a user may store, e.g. 500M or 2G (powers of 1024)")
    p.add_argument("address")
    p.add_argument("size")
    p.set_defaults(run=_set)
    p = quota.add_parser("show", help="a user's limit and usage")
    p.add_argument("address")
    p.set_defaults(run=_show)
    p = quota.add_parser("clear", help="back to the default limit")
    p.add_argument("address")
    p.set_defaults(run=_clear)


def _user(address: str) -> str:
    """The user's address as stored; DirectoryError if there is no such user."""
    from mailpipe.services import directory

    owner = directory().lookup(address).address
    if not any(user.address == owner for user in directory().list_users(owner.rpartition("@")[2])):
        raise DirectoryError(f"no such user: {owner}")
    return owner


def _set(args: argparse.Namespace) -> None:
    from mailpipe.services import directory

    size = parse_size(args.size)
    owner = _user(args.address)
    directory().set_quota(owner, size)
    print(
        f"quota of {owner}: {human_size(size)} ({size} octets; mail is refused from there, "
        f"and bounced past {human_size(size + int(size * GRACE_FRACTION))})"
    )


def _show(args: argparse.Namespace) -> None:
    from mailpipe.services import quotas

    owner = _user(args.address)
    state = quotas().state(owner)
    share = 100 * state.used // state.limit
    kind = "" if state.own else " (the default)"
    print(f"{owner}: {human_size(state.used)} of {human_size(state.limit)}{kind} used, {share}%")


def _clear(args: argparse.Namespace) -> None:
    from mailpipe.services import directory

    owner = _user(args.address)
    directory().set_quota(owner, None)
    print(f"quota of {owner} cleared (the default applies)")
