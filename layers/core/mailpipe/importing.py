"""Reading mbox files and Maildirs for `mailpipe import`, and storing their messages.

Each message is stored byte-exact as the source holds it (after mbox's own From_ quoting is
undone), with the flags and the date the source kept:

- mbox, read with the standard `mailbox` module. Its From_ line gives the INTERNALDATE (taken
  as UTC: the line carries no zone). Lines in the body that began with "From " were quoted by
  the writer; `quoting` says how to undo it: "mboxrd" (default; what mutt, Dovecot and the
  mboxrd writers do: `>From `, `>>From `... each lose one `>`, which undoes mboxrd exactly and
  mboxo for every line that was not already `>From ` in the message), "mboxo" (only `>From `
  loses its `>`), or "none". An mbox cannot say whether a message's last line ended with a
  newline: one that did not comes back with one (RFC 4155).
- Maildir: the files of cur/ and new/, oldest name first; flags from the name's `:2,` info
  (D \\Draft, F \\Flagged, P $Forwarded, R \\Answered, S \\Seen, T \\Deleted; Dovecot's keyword
  letters a-z are left out), INTERNALDATE from the file's modification time (when it arrived).

Storing goes through MailStore.append_message with an import id made of the message's SHA-256
and its occurrence among identical messages of the same source: running an interrupted import
again skips what is stored already, and two identical messages in one mbox are both kept.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import mailbox
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mailpipe.store.mailstore import MailboxExists, MailStore

Quoting = Literal["mboxrd", "mboxo", "none"]
QUOTINGS: tuple[Quoting, ...] = ("mboxrd", "mboxo", "none")
MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "P": "$Forwarded",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_MBOXRD_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
_MBOXO_QUOTED = re.compile(rb"^>(From )", re.MULTILINE)
Progress = Callable[[int, int], None]  # (messages done, messages in the source)


class SourceError(ValueError):
    """The source cannot be read as asked (no such file, not a Maildir, ...)."""


@dataclass(frozen=True)
class SourceMessage:
    raw: bytes
    flags: tuple[str, ...] = ()
    internaldate: int | None = None


@dataclass
class ImportReport:
    found: int = 0
    stored: int = 0
    skipped: int = 0  # stored by an earlier run of the same import
    uids: list[int] = field(default_factory=list)  # of every message, in source order


class Source:
    """The messages of an mbox file or a Maildir, counted before they are read."""

    def __init__(self, count: int, messages: Iterator[SourceMessage]) -> None:
        self.count = count
        self.messages = messages


def open_mbox(path: Path, quoting: Quoting = "mboxrd") -> Source:
    if not path.is_file():
        raise SourceError(f"no mbox file at {path}")
    box = mailbox.mbox(path, create=False)
    keys = list(box.keys())  # scans the file once for From_ lines
    if not keys and path.stat().st_size:
        box.close()
        raise SourceError(f"no messages in {path}: an mbox's first line begins `From `")

    def messages() -> Iterator[SourceMessage]:
        try:
            for key in keys:
                with_from = box.get_bytes(key, from_=True)
                from_line, _, raw = with_from.partition(b"\n")
                yield SourceMessage(unquote_from(raw, quoting), (), from_line_date(from_line))
        finally:
            box.close()

    return Source(len(keys), messages())


def unquote_from(raw: bytes, quoting: Quoting) -> bytes:
    if quoting == "mboxrd":
        return _MBOXRD_QUOTED.sub(rb"\1", raw)
    if quoting == "mboxo":
        return _MBOXO_QUOTED.sub(rb"\1", raw)
    return raw


def from_line_date(line: bytes) -> int | None:
    """The time of an mbox From_ line (`From sender Sat Dec  5 13:30:05 2026 ...`), or None."""
    words = line.decode("latin-1").split()
    for start in range(2, max(2, len(words) - 4)):
        with contextlib.suppress(ValueError):
            return calendar.timegm(time.strptime(" ".join(words[start : start + 5]), "%a %b %d %H:%M:%S %Y"))
    return None


def open_maildir(path: Path) -> Source:
    folders = [path / "cur", path / "new"]
    if not any(folder.is_dir() for folder in folders):
        raise SourceError(f"not a Maildir (no cur/ or new/): {path}")
    files = sorted(
        (entry for folder in folders if folder.is_dir() for entry in folder.iterdir() if entry.is_file()),
        key=lambda entry: entry.name,
    )

    def messages() -> Iterator[SourceMessage]:
        for entry in files:
            yield SourceMessage(entry.read_bytes(), maildir_flags(entry.name), int(os.stat(entry).st_mtime))

    return Source(len(files), messages())


def maildir_flags(name: str) -> tuple[str, ...]:
    """The IMAP flags of a Maildir file name's info (`unique:2,FRS`; `!` on file systems without `:`)."""
    for separator in (":2,", "!2,", ";2,"):
        if separator in name:
            letters = name.rpartition(separator)[2]
            return tuple(sorted({MAILDIR_FLAGS[c] for c in letters if c in MAILDIR_FLAGS}))
    return ()


def import_messages(
    store: MailStore, owner: str, folder: str, source: Source, progress: Progress | None = None
) -> ImportReport:
    """Store the source's messages in `owner`'s `folder` (made if missing), in order."""
    with contextlib.suppress(MailboxExists):
        if store.get_mailbox(owner, folder) is None:
            store.create_mailbox(owner, folder)
    report = ImportReport(found=source.count)
    seen: dict[str, int] = {}
    if progress:
        progress(0, source.count)
    for message in source.messages:
        digest = hashlib.sha256(message.raw).hexdigest()
        seen[digest] = seen.get(digest, 0) + 1
        appended = store.append_message(
            owner,
            folder,
            message.raw,
            flags=message.flags,
            internaldate=message.internaldate,
            import_id=f"import-{digest[:40]}-{seen[digest]}",
        )
        if appended.started_from < 0:
            report.skipped += 1
        else:
            report.stored += 1
        report.uids.append(appended.message.uid)
        if progress:
            progress(report.stored + report.skipped, source.count)
    return report
