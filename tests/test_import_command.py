"""`mailpipe import mbox|maildir`: the shared corpus through an mbox and a Maildir, byte-exact."""

from __future__ import annotations

import calendar
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CORPUS
from test_cli import mailpipe

from mailpipe.importing import from_line_date, maildir_flags, unquote_from

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
START = calendar.timegm((2019, 3, 1, 8, 0, 0, 0, 0, 0))
# Maildir infos and the flags each must give; cycled over the corpus.
INFOS = [":2,FRS", ":2,T", ":2,D", ":2,", ":2,Sa", "!2,RS", ":2,P", None]
FLAGS = {
    ":2,FRS": ["\\Answered", "\\Flagged", "\\Seen"],
    ":2,T": ["\\Deleted"],
    ":2,D": ["\\Draft"],
    ":2,": [],
    ":2,Sa": ["\\Seen"],
    "!2,RS": ["\\Answered", "\\Seen"],
    ":2,P": ["$Forwarded"],
    None: [],
}

pytestmark = pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")


def corpus() -> list[bytes]:
    return [path.read_bytes() for path in CORPUS_FILES]


def write_mbox(path: Path, messages: list[bytes]) -> None:
    """An mboxrd file as mutt writes one: From_ line, body lines `>*From ` quoted with one more
    `>`, a newline added to a last line without one, and an empty line after each message."""
    with path.open("wb") as out:
        for index, raw in enumerate(messages):
            when = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(START + index * 3600))
            out.write(f"From sender{index}@example.org {when}\n".encode())
            quoted = re.sub(rb"(?m)^(>*From )", rb">\1", raw)
            out.write(quoted if quoted.endswith(b"\n") else quoted + b"\n")
            out.write(b"\n")


def stored(stack, owner: str, folder: str):
    store = stack.mail_store()
    _, messages = store.list_messages(owner, folder)
    return messages, [store.read_body(m) for m in messages]


def test_mbox_import_is_byte_exact_with_the_from_line_dates(stack, owner: str, tmp_path: Path) -> None:
    messages = corpus()
    assert sum(bool(re.search(rb"(?m)^>*From ", m)) for m in messages) > 5  # the quoting is exercised
    mbox = tmp_path / "old.mbox"
    write_mbox(mbox, messages)
    result = mailpipe(stack, "import", "mbox", str(mbox), "--to", owner, "--folder", "Old mail")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"imported {len(messages)} of {len(messages)} messages into {owner} Old mail\n"
    assert result.stderr == f"{len(messages)}/{len(messages)} messages\n"  # no terminal: no bar
    found, bodies = stored(stack, owner, "Old mail")
    # mbox cannot carry a last line without its newline (RFC 4155): those come back with one.
    expected = [raw if raw.endswith(b"\n") else raw + b"\n" for raw in messages]
    assert len(bodies) == len(expected)
    for path, body, want in zip(CORPUS_FILES, bodies, expected, strict=True):
        assert body == want, path.name
    assert [m.internaldate for m in found] == [START + i * 3600 for i in range(len(messages))]
    assert all(m.flags == () for m in found)


def test_an_interrupted_import_run_again_stores_each_message_once(stack, owner: str, tmp_path: Path) -> None:
    messages = corpus()[:30]
    messages.append(messages[0])  # the same message twice in one mbox: both kept
    first_part, whole = tmp_path / "part.mbox", tmp_path / "whole.mbox"
    write_mbox(first_part, messages[:12])  # what a run stopped by Ctrl-C had stored
    write_mbox(whole, messages)
    assert mailpipe(stack, "import", "mbox", str(first_part), "--to", owner).returncode == 0
    again = mailpipe(stack, "import", "mbox", str(whole), "--to", owner)
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"imported {len(messages) - 12} of {len(messages)} messages into {owner} INBOX "
        "(12 stored by an earlier run, skipped)\n"
    )
    _, bodies = stored(stack, owner, "INBOX")
    assert bodies == [raw if raw.endswith(b"\n") else raw + b"\n" for raw in messages]


def test_maildir_import_keeps_flags_and_file_times(stack, owner: str, tmp_path: Path) -> None:
    messages = corpus()
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for index, raw in enumerate(messages):
        info = INFOS[index % len(INFOS)]
        name = f"{1_500_000_000 + index}.M{index}P7.host{info or ''}"
        path = maildir / ("new" if info is None else "cur") / name
        path.write_bytes(raw)
        os.utime(path, (START + index * 60, START + index * 60))
    result = mailpipe(stack, "import", "maildir", str(maildir), "--to", owner, "--folder", "Archive")
    assert result.returncode == 0, result.stderr
    found, bodies = stored(stack, owner, "Archive")
    assert len(found) == len(messages)
    for index, (message, body, raw) in enumerate(zip(found, bodies, messages, strict=True)):
        assert body == raw, CORPUS_FILES[index].name  # byte-exact, CRLF or LF, final newline or not
        assert list(message.flags) == FLAGS[INFOS[index % len(INFOS)]], index
        assert message.internaldate == START + index * 60


def test_a_terminal_gets_a_progress_bar(stack, owner: str, tmp_path: Path) -> None:
    mbox = tmp_path / "three.mbox"
    write_mbox(mbox, corpus()[:3])
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailpipe_tools.cli", "import", "mbox", str(mbox), "--to", owner],
            stderr=terminal,
            stdout=subprocess.PIPE,
            env={**os.environ, **stack.environment},
            timeout=60,
        )
        shown = os.read(controller, 65536).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert done.returncode == 0
    assert shown.startswith("\r[" + "." * 40 + "] 0/3")
    assert "\r[" + "#" * 40 + "] 3/3" in shown


def test_bad_sources_are_one_line(stack, owner: str, tmp_path: Path) -> None:
    missing = mailpipe(stack, "import", "mbox", str(tmp_path / "nope"), "--to", owner)
    assert (missing.returncode, missing.stderr) == (1, f"mailpipe: no mbox file at {tmp_path / 'nope'}\n")
    not_mbox = tmp_path / "notes.txt"
    not_mbox.write_text("hello\n")
    refused = mailpipe(stack, "import", "mbox", str(not_mbox), "--to", owner)
    assert refused.returncode == 1 and refused.stderr.startswith(f"mailpipe: no messages in {not_mbox}")
    not_maildir = mailpipe(stack, "import", "maildir", str(tmp_path), "--to", owner)
    assert not_maildir.stderr == f"mailpipe: not a Maildir (no cur/ or new/): {tmp_path}\n"
    ghost = mailpipe(stack, "import", "maildir", str(tmp_path), "--to", "ghost@example.test")
    assert ghost.stderr == "mailpipe: no such user: ghost@example.test\n"
    assert mailpipe(stack, "import", "mbox", str(not_mbox)).returncode == 2  # --to is required


def test_from_line_dates_and_maildir_names() -> None:
    assert from_line_date(b"From MAILER-DAEMON Fri Mar  1 08:00:00 2019") == START
    assert from_line_date(b"From a@b Fri Mar  1 08:00:00 2019 +0000 remote from x") == START
    assert from_line_date(b"From a@b yesterday") is None
    assert maildir_flags("1.M1.host:2,TDFS") == ("\\Deleted", "\\Draft", "\\Flagged", "\\Seen")
    assert maildir_flags("1.M1.host") == ()
    quoted = b">From a\n>>From b\n>Fromage\n"
    assert unquote_from(quoted, "mboxrd") == b"From a\n>From b\n>Fromage\n"
    assert unquote_from(quoted, "mboxo") == b"From a\n>>From b\n>Fromage\n"
    assert unquote_from(quoted, "none") == quoted
