"""`mailpipe import mbox|maildir PATH --to ADDR [--folder F]`: bring existing mail into a mailbox.

The reading and storing are in the core (mailpipe.importing, which says how mbox quoting and
Maildir flags are read); this module parses arguments, shows progress and reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailpipe.importing import QUOTINGS, Source, import_messages, open_maildir, open_mbox
from mailpipe.store import admin
from mailpipe_tools.progress import progress

INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C


def register(commands: Any) -> None:
    """Adds `import` to the `mailpipe` parser's sub-commands."""
    kinds = commands.add_parser(
        "import", help="store the messages of an mbox file or a Maildir in a user's mailbox"
    ).add_subparsers(required=True, metavar="KIND")
    for kind, said in (
        ("mbox", "an mbox file (From_ lines; the date of each becomes the message's)"),
        ("maildir", "a Maildir (its cur/ and new/; flags from the file names)"),
    ):
        p = kinds.add_parser(kind, help=said)
        p.add_argument("path", type=Path)
        p.add_argument("--to", required=True, metavar="ADDR", help="the user whose mailbox receives them")
        p.add_argument("--folder", default="INBOX", help="the mailbox (made if missing; default: INBOX)")
        if kind == "mbox":
            p.add_argument(
                "--from-quoting",
                choices=QUOTINGS,
                default="mboxrd",
                help="how the writer quoted body lines beginning `From ` (default: mboxrd)",
            )
        p.set_defaults(run=_import, kind=kind)


def _import(args: argparse.Namespace) -> int:
    from mailpipe.services import directory, mail_store

    store = mail_store()
    owner = admin.mailbox_owner(directory(), store, args.to)
    source: Source = (
        open_mbox(args.path, args.from_quoting) if args.kind == "mbox" else open_maildir(args.path)
    )
    show = progress(sys.stderr)
    done = [0]

    def tell(count: int, total: int) -> None:
        done[0] = count
        show(count, total)

    try:
        report = import_messages(store, owner, args.folder, source, tell)
    except KeyboardInterrupt:
        _below_the_bar()
        print(
            f"interrupted after {done[0]} of {source.count} messages; the same command again "
            "carries on (what is stored is skipped)",
            file=sys.stderr,
        )
        return INTERRUPTED
    _below_the_bar()
    skipped = f" ({report.skipped} stored by an earlier run, skipped)" if report.skipped else ""
    print(f"imported {report.stored} of {report.found} messages into {owner} {args.folder}{skipped}")
    return 0


def _below_the_bar() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")
