"""Thunderbird (Debian's, headless, through Marionette) as a user would run it, checked on the store.

One session, in the order a new user goes: the account from prefs, the folder list, INBOX opened
and a corpus message read, a message flagged and one moved (into a folder with a UTF-8 name),
a message sent through submission with its copy saved to Sent (issue 13: after ENABLE
UTF8=ACCEPT Thunderbird appends with ``UTF8 (~{n+}``), a draft saved, and new mail that reaches
Thunderbird while it idles. Every effect is checked in the mail store, not in Thunderbird.
"""

from __future__ import annotations

import smtplib

from clients import as_imap_sends
from conftest import CORPUS, PASSWORD, require_tool, wait_for, wait_for_inbox

from mailpipe.store import MailStore, StoredMessage

READ = ("plain_emails/basic_email_lf.eml", "multi_charset/japanese_shift_jis.eml", "rfc6532/utf8_headers.eml")
UTF8_FOLDER = "Projekte/Übersicht"


def messages(store: MailStore, user: str, mailbox: str) -> list[StoredMessage]:
    return store.list_messages(user, mailbox)[1]


def by_subject(store: MailStore, user: str, mailbox: str, subject: str) -> StoredMessage | None:
    for message in messages(store, user, mailbox):
        if subject.encode() in store.read_body(message).split(b"\r\n\r\n", 1)[0]:
            return message
    return None


def test_thunderbird_session(stack, new_user, tmp_path) -> None:
    binary = require_tool("thunderbird")
    # Imported here: without marionette-driver (the test extras) this fails rather than skips.
    from thunderbird import Thunderbird, account_prefs

    user, friend = new_user(), new_user()
    store = stack.mail_store()
    store.ensure_mailboxes(user)
    store.create_mailbox(user, "Projekte")
    store.create_mailbox(user, UTF8_FOLDER)
    raws = {name: (CORPUS / name).read_bytes() for name in READ}
    uids = {name: store.append(user, "INBOX", raw)[1] for name, raw in raws.items()}

    prefs = account_prefs(user, stack.imap_port, stack.submission_port)
    with Thunderbird(binary, tmp_path / "profile", prefs) as thunderbird:
        online = thunderbird.call("goOnline", PASSWORD)
        assert online["useIdle"] is True

        # The folder list: every mailbox, special uses as SPECIAL-USE says, UTF-8 names decoded.
        folders = {f["path"]: f for f in thunderbird.call("listFolders")}
        assert set(folders) >= {m.name for m in store.list_mailboxes(user)}
        for special in ("Inbox", "Sent", "Drafts", "Trash", "Archive", "Junk"):
            path = "INBOX" if special == "Inbox" else special
            assert special in folders[path]["special"], folders[path]
        assert folders[UTF8_FOLDER]["name"] == "Übersicht"

        # INBOX: every message, by UID; each read byte for byte as IMAP sends it, and so \Seen.
        inbox = {h["uid"]: h for h in thunderbird.call("openFolder", "INBOX")}
        assert set(inbox) == set(uids.values())
        for name, uid in uids.items():
            octets = thunderbird.call("readMessage", "INBOX", uid).encode("latin-1")
            assert octets == as_imap_sends(raws[name]), name
        wait_for(lambda: all("\\Seen" in m.flags for m in messages(store, user, "INBOX")))

        # Flag one, move another into the folder with the UTF-8 name.
        flagged, moved = uids[READ[0]], uids[READ[1]]
        thunderbird.call("flagMessage", "INBOX", flagged)
        wait_for(
            lambda: any(m.uid == flagged and "\\Flagged" in m.flags for m in messages(store, user, "INBOX"))
        )
        thunderbird.call("moveMessage", "INBOX", moved, UTF8_FOLDER)
        [arrived] = wait_for(lambda: messages(store, user, UTF8_FOLDER))
        assert store.read_body(arrived) == raws[READ[1]]
        assert moved not in {m.uid for m in messages(store, user, "INBOX")}

        # Send through submission; the copy to Sent is the APPEND of issue 13.
        subject = "Grüße from Thunderbird"
        thunderbird.call("compose", friend, subject, "Sent by Thunderbird.\r\n", False)
        [delivered] = wait_for_inbox(stack, friend, 1)
        assert b"Sent by Thunderbird." in store.read_body(delivered)
        sent = by_subject(store, user, "Sent", "=?UTF-8?")
        assert sent is not None and "\\Seen" in sent.flags
        assert b"Sent by Thunderbird." in store.read_body(sent)

        # Save a draft: an APPEND to Drafts with \Draft.
        thunderbird.call("compose", friend, "A draft", "Not sent yet.\r\n", True)
        draft = wait_for(lambda: by_subject(store, user, "Drafts", "A draft"))
        assert "\\Draft" in draft.flags and b"Not sent yet." in store.read_body(draft)

        # New mail while Thunderbird idles in INBOX (polling is off in the profile).
        thunderbird.call("openFolder", "INBOX")
        news = b"From: Alice <alice@remote.test>\r\nSubject: while idle\r\n\r\nNew mail.\r\n"
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
            smtp.sendmail("alice@remote.test", [user], news)
        header = thunderbird.call("awaitNewMessage", "INBOX", "while idle")
        [stored] = [m for m in messages(store, user, "INBOX") if m.uid == header["uid"]]
        assert store.read_body(stored).endswith(news)
