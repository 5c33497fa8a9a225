"""Real clients from Debian packages against the IMAP and POP3 gateways: curl, mbsync, offlineimap, fetchmail.

Each test checks the bytes the client ends up with against what the store holds. IMAP and POP3 send
every bare LF as CRLF; the Maildir clients (mbsync, offlineimap) and fetchmail's MDA delivery keep mail
with Unix line ends, so local copies are compared with CRLF turned into LF, and with exactly what each
client changes undone: mbsync's X-TUID header; offlineimap and fetchmail drop mbox "From " lines;
fetchmail adds its Received header and ends an unterminated last line. Everything else must be equal.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clients import (
    MaildirMessage,
    Sample,
    as_imap_sends,
    as_lf,
    corpus_sample,
    imap_certificate,
    imap_flags_as_maildir,
    maildir_messages,
    maildir_set_flags,
    pop3_certificate,
    run,
    stored,
)
from conftest import PASSWORD, require_tool, wait_for_gateway, wait_for_inbox

from mailpipe.store import MailStore

SMTP_MESSAGE = (
    b"From: Alice <alice@remote.test>\r\nTo: someone@example.test\r\nSubject: through the pipeline\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pipeline@remote.test>\r\n\r\n"
    b"Delivered over SMTP.\r\n.A line with a leading dot.\r\n"
)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return corpus_sample()


def fill(store: MailStore, owner: str, mailbox: str, samples: list[Sample], flags=None) -> dict[int, Sample]:
    """Append the samples to a mailbox (flags[i] for the i-th, if given); returns them by UID."""
    by_uid = {}
    for index, sample in enumerate(samples):
        _, uid = store.append(owner, mailbox, sample.raw, flags=(flags or {}).get(index, ()))
        by_uid[uid] = sample
    return by_uid


# -- curl ------------------------------------------------------------------------------------------


def curl(stack, owner: str, *args: str) -> bytes:
    tool = require_tool("curl")
    result = run([tool, "-sS", "--user", f"{owner}:{PASSWORD}", *args])
    return result.stdout


def imap_url(stack, path: str = "/") -> str:
    return f"imap://127.0.0.1:{stack.imap_port}{path}"


def test_curl_list_and_examine(stack, new_user) -> None:
    require_tool("curl")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    for name in ("Projects", "Projects/2026", "My Folder"):
        store.create_mailbox(owner, name)
    store.append(owner, "INBOX", b"Subject: one\r\n\r\nseen\r\n", flags=["\\Seen"])
    store.append(owner, "INBOX", b"Subject: two\r\n\r\nnot seen\r\n", flags=["$label1"])

    assert curl(stack, owner, imap_url(stack, "/")).decode().splitlines() == [
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren \\Archive) "/" Archive',
        '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
        '* LIST (\\HasNoChildren \\Junk) "/" Junk',
        '* LIST (\\HasNoChildren) "/" "My Folder"',
        '* LIST (\\HasChildren) "/" Projects',
        '* LIST (\\HasNoChildren) "/" Projects/2026',
        '* LIST (\\HasNoChildren \\Sent) "/" Sent',
        '* LIST (\\HasNoChildren \\Trash) "/" Trash',
    ]
    # curl sends LIST "Projects" *: the reference and the pattern concatenate.
    assert curl(stack, owner, imap_url(stack, "/Projects/")).decode().splitlines() == [
        '* LIST (\\HasChildren) "/" Projects',
        '* LIST (\\HasNoChildren) "/" Projects/2026',
    ]

    mailbox, before = store.list_messages(owner, "INBOX")
    examine = curl(stack, owner, imap_url(stack, "/"), "-X", "EXAMINE INBOX").decode().splitlines()
    assert examine == [
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1)",
        "* 2 EXISTS",
        "* 0 RECENT",
        "* OK [UNSEEN 2] First unseen",
        "* OK [PERMANENTFLAGS ()] Flags permitted",
        f"* OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid",
        "* OK [UIDNEXT 3] Predicted next UID",
        f"* OK [HIGHESTMODSEQ {mailbox.highestmodseq}] Highest",
        f"* OK [MAILBOXID ({mailbox.mailbox_id})] Ok",  # RFC 8474 OBJECTID
    ]
    examine = curl(stack, owner, imap_url(stack, "/"), "-X", 'EXAMINE "My Folder"').decode().splitlines()
    assert "* 0 EXISTS" in examine and "* OK [UIDNEXT 1] Predicted next UID" in examine
    # EXAMINE is read-only: nothing changed.
    assert [(m.uid, m.flags, m.modseq) for m in store.list_messages(owner, "INBOX")[1]] == [
        (m.uid, m.flags, m.modseq) for m in before
    ]


def test_curl_fetch_is_byte_exact(stack, new_user, samples, tmp_path) -> None:
    require_tool("curl")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    by_uid = fill(store, owner, "INBOX", samples)

    # One curl run, one connection: every message by UID into its own file.
    args = []
    for uid in by_uid:
        args += [imap_url(stack, f"/INBOX;UID={uid}"), "-o", str(tmp_path / f"uid-{uid}")]
    curl(stack, owner, *args)
    for uid, sample in by_uid.items():
        assert (tmp_path / f"uid-{uid}").read_bytes() == as_imap_sends(sample.raw), sample.name
    # BODY[] (not BODY.PEEK[]) marks each message seen.
    assert all("\\Seen" in m.flags for m in store.list_messages(owner, "INBOX")[1])

    # Sections and partial fetches of the message with bare LF line ends.
    uid = next(u for u, s in by_uid.items() if s.name.endswith("basic_email_lf.eml"))
    whole = as_imap_sends(by_uid[uid].raw)
    header, _, text = whole.partition(b"\r\n\r\n")
    assert curl(stack, owner, imap_url(stack, f"/INBOX;UID={uid};SECTION=HEADER")) == header + b"\r\n\r\n"
    assert curl(stack, owner, imap_url(stack, f"/INBOX;UID={uid};SECTION=TEXT")) == text
    assert curl(stack, owner, imap_url(stack, f"/INBOX;UID={uid};PARTIAL=100.50")) == whole[100:150]
    assert curl(stack, owner, imap_url(stack, f"/INBOX;MAILINDEX={uid}")) == whole

    # A search by URL query: SEARCH SUBJECT, answered by message number.
    found = curl(stack, owner, imap_url(stack, "/INBOX?SUBJECT%20%22a%20large%20message%22"))
    assert found == b"* SEARCH %d\r\n" % len(by_uid)


def test_curl_append_uploads_byte_exact(stack, new_user, samples, tmp_path) -> None:
    require_tool("curl")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.create_mailbox(owner, "My Folder")
    args = []
    for index, sample in enumerate(samples):
        path = tmp_path / f"upload-{index}.eml"
        path.write_bytes(sample.raw)
        args += ["-T", str(path), imap_url(stack, "/My%20Folder")]
    curl(stack, owner, *args)

    held = stored(store, owner, "My Folder")
    assert [body for _, body in held.values()] == [sample.raw for sample in samples]
    assert list(held) == list(range(1, len(samples) + 1))
    # And back out again, with curl, as IMAP sends them.
    args = []
    for uid in held:
        args += [imap_url(stack, f"/My%20Folder;UID={uid}"), "-o", str(tmp_path / f"back-{uid}")]
    curl(stack, owner, *args)
    for uid, (_, body) in held.items():
        assert (tmp_path / f"back-{uid}").read_bytes() == as_imap_sends(body)

    # Uploading to a mailbox that does not exist fails (NO [TRYCREATE]), and creates nothing.
    tool = require_tool("curl")
    result = run_failing(
        [tool, "-sS", "--user", f"{owner}:{PASSWORD}", "-T", str(path), imap_url(stack, "/Nope")]
    )
    assert result.returncode != 0
    assert store.get_mailbox(owner, "Nope") is None


def test_curl_starttls_login_options_and_custom_commands(stack, new_user, samples, tmp_path) -> None:
    require_tool("curl")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    by_uid = fill(store, owner, "INBOX", samples[:3])
    cert = tmp_path / "imap.pem"
    cert.write_text(imap_certificate(stack.imap_port))

    # STARTTLS, with the server's certificate checked (it names 127.0.0.1), then a fetch.
    fetched = curl(stack, owner, "--ssl-reqd", "--cacert", str(cert), imap_url(stack, "/INBOX;UID=2"))
    assert fetched == as_imap_sends(by_uid[2].raw)
    # AUTHENTICATE LOGIN instead of curl's default PLAIN with an initial response.
    status = curl(
        stack,
        owner,
        "--login-options",
        "AUTH=LOGIN",
        imap_url(stack, "/"),
        "-X",
        "STATUS INBOX (MESSAGES UIDNEXT)",
    )
    assert status == b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4)\r\n"
    # Custom commands run in the mailbox of the URL (curl SELECTs it first) and print what comes back.
    stored_flags = curl(
        stack, owner, imap_url(stack, "/INBOX"), "-X", "UID STORE 1:2 +FLAGS ($label1 \\Deleted)"
    )
    assert stored_flags.splitlines() == [
        # $label1 is new to the mailbox: announced before the FETCHes that use it.
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $label1 \\*)] Flags permitted",
        b"* 1 FETCH (UID 1 FLAGS ($label1 \\Deleted))",
        b"* 2 FETCH (UID 2 FLAGS ($label1 \\Deleted \\Seen))",  # curl's fetch above set \\Seen
    ]
    assert curl(stack, owner, imap_url(stack, "/INBOX"), "-X", "EXPUNGE").splitlines() in (
        [b"* 2 EXPUNGE", b"* 1 EXPUNGE"],
        [b"* 1 EXPUNGE", b"* 1 EXPUNGE"],
    )
    assert list(stored(store, owner, "INBOX")) == [3]
    # A URL with a stale UIDVALIDITY is refused by curl itself, before it fetches anything.
    tool = require_tool("curl")
    result = run_failing(
        [tool, "-sS", "--user", f"{owner}:{PASSWORD}", imap_url(stack, "/INBOX;UIDVALIDITY=1;UID=3")]
    )
    assert result.returncode == 78 and b"UIDVALIDITY" in result.stderr


def run_failing(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


# -- mbsync ----------------------------------------------------------------------------------------

_TUID = re.compile(rb"^X-TUID: [A-Za-z0-9+/]{12}\r?\n", re.MULTILINE)


def without_tuid(raw: bytes) -> bytes:
    """A message without the X-TUID header mbsync puts in what it propagates (at most one)."""
    return _TUID.sub(b"", raw, count=1)


def mbsync_config(stack, owner: str, tmp_path: Path) -> Path:
    cert = tmp_path / "server.pem"
    cert.write_text(imap_certificate(stack.imap_port))
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        textwrap.dedent(
            f"""\
            IMAPAccount mailpipe
            Host 127.0.0.1
            Port {stack.imap_port}
            User {owner}
            Pass "{PASSWORD}"
            SSLType STARTTLS
            CertificateFile {cert}

            IMAPStore remote
            Account mailpipe

            MaildirStore local
            Path {maildir}/
            Inbox {maildir}/INBOX
            SubFolders Verbatim

            Channel mailpipe
            Far :remote:
            Near :local:
            Patterns *
            Create Both
            Expunge Both
            SyncState *
            """
        )
    )
    return config


def mbsync(config: Path, tmp_path: Path) -> None:
    tool = require_tool("mbsync")
    run([tool, "-c", str(config), "-a"], env={"HOME": str(tmp_path)})


def mbsync_by_uid(folder: Path) -> dict[int, MaildirMessage]:
    """The folder's messages by server UID: .mbsyncstate pairs far (server) and near (,U=) UIDs."""
    state = (folder / ".mbsyncstate").read_text()
    _, _, pairs = state.partition("\n\n")
    near_to_far = {}
    for line in pairs.splitlines():
        far, near, *_ = line.split(" ")
        if int(far) > 0 and int(near) > 0:
            near_to_far[int(near)] = int(far)
    by_uid = {}
    for message in maildir_messages(folder):
        near = int(re.search(r",U=(\d+)", message.path.name).group(1))
        assert near in near_to_far, (folder, message.path.name, "not in .mbsyncstate")
        by_uid[near_to_far[near]] = message
    return by_uid


def local_uploads(samples: list[Sample]) -> list[bytes]:
    """Messages written into the local Maildir (LF line ends), for the sync to upload with APPEND:
    a small draft, the 8-bit Shift_JIS one and the 1 MB one, each with a Subject of its own."""
    by_name = {sample.name: sample.raw for sample in samples}
    draft = b"From: me@example.test\nTo: you@remote.test\nSubject: written locally\n\nA draft.\n"
    return [
        draft,
        b"Subject: local copy, 8-bit\n" + as_lf(by_name["multi_charset/japanese_shift_jis.eml"]),
        b"Subject: local copy, 1 MB\n" + as_lf(by_name["generated/big.eml"]),
    ]


def check_maildir_matches_server(
    store: MailStore, owner: str, mailbox: str, local: dict[int, MaildirMessage], normalise=lambda raw: raw
) -> None:
    """Every server message is in the Maildir folder once, byte for byte (LF line ends), with its flags.

    `normalise` takes out what the client adds (to both sides: what it uploads carries it too)."""
    server = stored(store, owner, mailbox)
    assert sorted(local) == sorted(server), mailbox
    for uid, message in local.items():
        assert normalise(message.raw) == normalise(as_lf(server[uid][1])), (mailbox, uid, message.path.name)
        assert message.flags == imap_flags_as_maildir(server[uid][0].flags), (mailbox, uid)


def test_mbsync_full_sync(stack, new_user, samples, tmp_path) -> None:
    require_tool("mbsync")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.create_mailbox(owner, "Projects")
    store.create_mailbox(owner, "Projects/2026")
    inbox = fill(
        store, owner, "INBOX", samples, flags={0: ["\\Seen"], 1: ["\\Flagged", "\\Seen"], 2: ["\\Answered"]}
    )
    fill(store, owner, "Projects/2026", samples[3:5])
    fill(store, owner, "Archive", samples[:1], flags={0: ["\\Seen"]})
    store.create_mailbox(owner, "My Folder")
    fill(store, owner, "My Folder", samples[5:6])
    config = mbsync_config(stack, owner, tmp_path)
    maildir = tmp_path / "Mail"

    mbsync(config, tmp_path)
    for name in ("INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Projects", "Projects/2026"):
        assert (maildir / name / "cur").is_dir(), name
    for name in ("INBOX", "Projects", "Projects/2026", "Archive", "Sent", "My Folder"):
        check_maildir_matches_server(store, owner, name, mbsync_by_uid(maildir / name), without_tuid)
    local = mbsync_by_uid(maildir / "INBOX")

    # Local changes: read one message, unflag another, delete a third, write a new one, a new folder.
    unseen = [uid for uid in inbox if uid > 3]
    maildir_set_flags(local[unseen[0]], "S")
    maildir_set_flags(local[2], "S")  # was \Flagged \Seen
    local[1].path.unlink()
    new_local = local_uploads(samples)
    for index, raw in enumerate(new_local):
        (maildir / "INBOX" / "new" / f"1800000000.{index}_1.localhost").write_bytes(raw)
    (maildir / "Local Only" / "new").mkdir(parents=True)
    for sub in ("cur", "tmp"):
        (maildir / "Local Only" / sub).mkdir()
    # Server-side changes: another client answers one message, expunges one, new mail arrives.
    store.update_flags(owner, "INBOX", [unseen[1]], "add", ["\\Answered"])
    store.expunge(owner, "INBOX", [unseen[2]])
    _, arrived = store.append(owner, "INBOX", b"From: late@remote.test\r\nSubject: late\r\n\r\nNew mail.\r\n")
    wait_for_gateway(stack, owner)

    mbsync(config, tmp_path)
    server = stored(store, owner, "INBOX")
    assert "\\Seen" in server[unseen[0]][0].flags
    assert server[2][0].flags == ("\\Seen",)
    assert 1 not in server, "deleting the local copy expunges the message on the server"
    uploaded = sorted(without_tuid(body) for uid, (_, body) in server.items() if uid > arrived)
    assert uploaded == sorted(raw.replace(b"\n", b"\r\n") for raw in new_local)
    assert store.get_mailbox(owner, "Local Only") is not None
    local = mbsync_by_uid(maildir / "INBOX")
    check_maildir_matches_server(store, owner, "INBOX", local, without_tuid)
    assert local[unseen[1]].flags == "R" and arrived in local

    # A third run finds nothing to do: no duplicate uploads, no flag churn.
    before = {uid: (m.flags, m.modseq) for uid, (m, _) in server.items()}
    mbsync(config, tmp_path)
    after = {uid: (m.flags, m.modseq) for uid, (m, _) in stored(store, owner, "INBOX").items()}
    assert after == before
    check_maildir_matches_server(store, owner, "INBOX", mbsync_by_uid(maildir / "INBOX"), without_tuid)


# -- offlineimap -----------------------------------------------------------------------------------


def offlineimap_config(stack, owner: str, tmp_path: Path) -> Path:
    """Plaintext on loopback: offlineimap's imaplib2 deadlocks now and then right after STARTTLS (about
    one run in fifty here): its writer thread never puts the first command after the handshake on the
    wire while its reader thread sits in a blocking SSL read; the server has read every byte the client
    sent and is waiting. mbsync and fetchmail cover STARTTLS."""
    (tmp_path / "Offline").mkdir()
    config = tmp_path / "offlineimaprc"
    config.write_text(
        textwrap.dedent(
            f"""\
            [general]
            accounts = mailpipe
            metadata = {tmp_path}/offlineimap-metadata

            [Account mailpipe]
            localrepository = local
            remoterepository = remote

            [Repository local]
            type = Maildir
            localfolders = {tmp_path}/Offline
            sep = /

            [Repository remote]
            type = IMAP
            remotehost = 127.0.0.1
            remoteport = {stack.imap_port}
            remoteuser = {owner}
            remotepass = {PASSWORD}
            ssl = no
            starttls = no
            maxconnections = 1
            """
        )
    )
    return config


def offlineimap(config: Path, tmp_path: Path) -> None:
    tool = require_tool("offlineimap")
    result = run([tool, "-c", str(config), "-o", "-u", "basic"], env={"HOME": str(tmp_path)})
    # offlineimap exits 0 even when a folder failed; it says so instead.
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert "ERROR" not in output and "Traceback" not in output, output[-4000:]


# offlineimap reads each message with Python's email package and writes it out again, which drops
# mbox "From " separator lines: at the top of the message and at the top of an attached message/rfc822.
_MBOX_FROM = re.compile(rb"^From \S+ +\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\r?\n", re.MULTILINE)


def without_mbox_from(raw: bytes) -> bytes:
    return _MBOX_FROM.sub(b"", raw)


def offlineimap_by_uid(folder: Path) -> dict[int, MaildirMessage]:
    """The folder's messages by server UID (offlineimap names files ...,U=<server UID>,FMD5=...)."""
    by_uid = {}
    for message in maildir_messages(folder):
        match = re.search(r",U=(\d+)", message.path.name)
        assert match, (folder, message.path.name, "never synced")
        by_uid[int(match.group(1))] = message
    return by_uid


def test_offlineimap_full_sync(stack, new_user, samples, tmp_path) -> None:
    require_tool("offlineimap")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    store.create_mailbox(owner, "Projects")
    store.create_mailbox(owner, "Projects/2026")
    inbox = fill(
        store, owner, "INBOX", samples, flags={0: ["\\Seen"], 1: ["\\Flagged", "\\Seen"], 2: ["\\Draft"]}
    )
    fill(store, owner, "Projects/2026", samples[3:5])
    config = offlineimap_config(stack, owner, tmp_path)
    local_root = tmp_path / "Offline"

    offlineimap(config, tmp_path)
    for name in ("INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Projects", "Projects/2026"):
        check_maildir_matches_server(
            store, owner, name, offlineimap_by_uid(local_root / name), without_mbox_from
        )
    local = offlineimap_by_uid(local_root / "INBOX")

    unseen = [uid for uid in inbox if uid > 3]
    maildir_set_flags(local[unseen[0]], "FS")
    maildir_set_flags(local[2], "S")  # was \Flagged \Seen
    local[1].path.unlink()
    new_local = local_uploads(samples)
    for index, raw in enumerate(new_local):
        (local_root / "INBOX" / "new" / f"1800000000.{index}_1.localhost").write_bytes(raw)
    store.update_flags(owner, "INBOX", [unseen[1]], "add", ["\\Answered"])
    store.expunge(owner, "INBOX", [unseen[2]])
    _, arrived = store.append(owner, "INBOX", b"From: late@remote.test\r\nSubject: late\r\n\r\nNew mail.\r\n")

    offlineimap(config, tmp_path)
    server = stored(store, owner, "INBOX")
    assert set(server[unseen[0]][0].flags) == {"\\Flagged", "\\Seen"}
    assert server[2][0].flags == ("\\Seen",)
    assert 1 not in server, "deleting the local copy expunges the message on the server"
    uploaded = sorted(body for uid, (_, body) in server.items() if uid > arrived)
    assert uploaded == sorted(raw.replace(b"\n", b"\r\n") for raw in new_local)
    local = offlineimap_by_uid(local_root / "INBOX")
    check_maildir_matches_server(store, owner, "INBOX", local, without_mbox_from)
    assert local[unseen[1]].flags == "R" and arrived in local

    before = {uid: (m.flags, m.modseq) for uid, (m, _) in server.items()}
    offlineimap(config, tmp_path)
    after = {uid: (m.flags, m.modseq) for uid, (m, _) in stored(store, owner, "INBOX").items()}
    assert after == before
    check_maildir_matches_server(
        store, owner, "INBOX", offlineimap_by_uid(local_root / "INBOX"), without_mbox_from
    )


# -- fetchmail -------------------------------------------------------------------------------------

# The MDA fetchmail runs for each message: the message on stdin goes to the next numbered file.
SAVE_SCRIPT = """\
import os, sys
directory = sys.argv[1]
path = os.path.join(directory, "msg-%04d" % len(os.listdir(directory)))
with open(path, "wb") as out:
    out.write(sys.stdin.buffer.read())
"""

# fetchmail puts a Received header of its own at the top of each message it delivers (after any
# leading Delivered-To or Return-Path lines, which it keeps first), and gives the MDA LF line ends.
_FETCHMAIL_RECEIVED = re.compile(
    rb"Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n"
    rb"\tby \S+ with (?:IMAP|POP3) \(fetchmail-[\d.]+\)\n"
    rb"\tfor <[^>\n]*> \(single-drop\); [^\n]+\n"
)


def without_fetchmail_received(raw: bytes) -> bytes:
    stripped, count = _FETCHMAIL_RECEIVED.subn(b"", raw, count=1)
    assert count == 1, raw[:500]
    return stripped


def fetchmail(stack, tmp_path: Path, owner: str, protocol: str, *options: str) -> list[bytes]:
    """Run fetchmail once against IMAP or POP3 with `options`; returns the messages it delivered."""
    tool = require_tool("fetchmail")
    home = tmp_path / f"fetchmail-{protocol}"
    home.mkdir(exist_ok=True)
    out = home / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    script = home / "save.py"
    script.write_text(SAVE_SCRIPT)
    port = stack.imap_port if protocol == "IMAP" else stack.pop3_port
    config = home / "fetchmailrc"
    config.write_text(
        f"poll 127.0.0.1 service {port} protocol {protocol}\n"
        f'  user "{owner}" password "{PASSWORD}" is "localuser" here\n'
        "  no rewrite\n"
        f'  mda "{sys.executable} {script} {out}"\n' + "".join(f"  {option}\n" for option in options)
    )
    config.chmod(0o600)  # fetchmail refuses a readable run control file
    env = {"HOME": str(home), "FETCHMAILHOME": str(home)}
    result = subprocess.run(
        [tool, "-f", str(config), "--nosyslog", "--nodetach", "-d0", "-v"],
        capture_output=True,
        timeout=180,
        env={**os.environ, **env},
        check=False,
    )
    log = (result.stdout + result.stderr).decode(errors="replace")
    # 0: mail delivered, 1: no mail (both fine); anything else is an error.
    assert result.returncode in (0, 1), log[-6000:]
    return [path.read_bytes() for path in sorted(out.iterdir())]


def pipeline_message(stack, owner: str) -> bytes:
    """One message through SMTP and the pipeline, as the store then holds it (with our Received)."""
    before = len(wait_for_inbox(stack, owner, 0))
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.sendmail("alice@remote.test", [owner], SMTP_MESSAGE)
    delivered = wait_for_inbox(stack, owner, before + 1)[-1]
    return stack.mail_store().read_body(delivered)


def as_fetchmail_delivers(raw: bytes) -> bytes:
    """A stored message as fetchmail hands it to its MDA, less its Received header: LF line ends, a
    leading mbox "From " line taken as an envelope and dropped, and a last line always ended."""
    delivered = as_lf(raw)
    if delivered.startswith(b"From "):
        delivered = delivered.partition(b"\n")[2]
    return delivered if delivered.endswith(b"\n") else delivered + b"\n"


def check_fetched(fetched: list[bytes], expected: list[bytes]) -> None:
    assert len(fetched) == len(expected)
    for got, want in zip(fetched, expected, strict=True):
        assert without_fetchmail_received(got) == as_fetchmail_delivers(want)


def test_fetchmail_imap(stack, new_user, samples, tmp_path) -> None:
    require_tool("fetchmail")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    fill(store, owner, "INBOX", samples)
    pipeline_message(stack, owner)
    expected = [body for _, body in stored(store, owner, "INBOX").values()]

    # keep: fetch everything, leave it on the server marked \Seen.
    check_fetched(fetchmail(stack, tmp_path, owner, "IMAP", "keep", "sslproto ''"), expected)
    held = stored(store, owner, "INBOX")
    assert [body for _, body in held.values()] == expected
    assert all("\\Seen" in message.flags for message, _ in held.values())
    # Again with keep: nothing unseen is left, so nothing is fetched.
    assert fetchmail(stack, tmp_path, owner, "IMAP", "keep", "sslproto ''") == []
    # Without keep, over STARTTLS, fetching all: everything again, then deleted and expunged.
    cert = tmp_path / "imap.pem"
    cert.write_text(imap_certificate(stack.imap_port))
    tls = f"sslproto 'tls1.2+' sslcertck sslcertfile {cert} sslcommonname mail.example.test"
    check_fetched(fetchmail(stack, tmp_path, owner, "IMAP", "fetchall", tls), expected)
    assert stored(store, owner, "INBOX") == {}


def test_fetchmail_pop3(stack, new_user, samples, tmp_path) -> None:
    require_tool("fetchmail")
    owner = new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(owner)
    fill(store, owner, "INBOX", samples)
    pipeline_message(stack, owner)
    expected = [body for _, body in stored(store, owner, "INBOX").values()]
    cert = tmp_path / "pop3.pem"
    cert.write_text(pop3_certificate(stack.pop3_port))
    tls = f"sslproto 'tls1.2+' sslcertck sslcertfile {cert} sslcommonname mail.example.test"

    # keep, over STLS: every message, and the server keeps them all.
    check_fetched(fetchmail(stack, tmp_path, owner, "POP3", "keep", tls), expected)
    assert [body for _, body in stored(store, owner, "INBOX").values()] == expected
    # keep again: fetchmail remembers the UIDLs it has seen, so nothing new comes.
    assert fetchmail(stack, tmp_path, owner, "POP3", "keep", tls) == []
    # No keep, plaintext on loopback, all of them: fetched again, DELE'd, removed at QUIT.
    check_fetched(fetchmail(stack, tmp_path, owner, "POP3", "fetchall", "sslproto ''"), expected)
    assert stored(store, owner, "INBOX") == {}
