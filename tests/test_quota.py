"""Quotas: `mailpipe quota`, 452 4.2.2 at RCPT, a bounce past the grace, NO [OVERQUOTA] at APPEND."""

from __future__ import annotations

import email
import imaplib
import json
import smtplib

import pytest
from conftest import DOMAIN, PASSWORD, wait_for_inbox
from test_cli import mailpipe

from mailpipe.quota import QuotaError, Quotas, parse_size
from mailpipe.recipients import RecipientQuery, answer
from mailpipe.services import quotas


def filler(size: int) -> bytes:
    head = b"From: old@example.org\r\nSubject: old mail\r\n\r\n"
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


def message(sender: str, to: str, body_size: int) -> str:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: for a full mailbox\r\n\r\n" + "y" * body_size + "\r\n"


def test_parse_size() -> None:
    assert parse_size("1048576") == 1048576
    assert parse_size("500M") == parse_size("500MiB") == parse_size("500 mb") == 500 * 1024**2
    assert parse_size("1.5G") == 1536 * 1024**2
    for bad in ("", "lots", "5X", "-1G", "0"):
        with pytest.raises(QuotaError):
            parse_size(bad)


def test_quota_set_show_clear(stack, owner: str) -> None:
    stack.mail_store().append(owner, "INBOX", filler(3000))
    said = mailpipe(stack, "quota", "set", owner, "10K")
    assert said.returncode == 0, said.stderr
    assert said.stdout == (
        f"quota of {owner}: 10.0 KiB (10240 octets; mail is refused from there, and bounced past 11.0 KiB)\n"
    )
    assert stack.directory().quota(owner) == 10240
    assert mailpipe(stack, "quota", "show", owner).stdout == f"{owner}: 2.9 KiB of 10.0 KiB used, 29%\n"
    assert (
        mailpipe(stack, "quota", "clear", owner).stdout == f"quota of {owner} cleared (the default applies)\n"
    )
    assert stack.directory().quota(owner) is None
    shown = mailpipe(stack, "quota", "show", owner).stdout
    assert shown == f"{owner}: 2.9 KiB of 10.0 GiB (the default) used, 0%\n"

    bad = mailpipe(stack, "quota", "set", owner, "lots")
    assert (bad.returncode, bad.stderr) == (
        1,
        "mailpipe: not a size: 'lots' (say e.g. 500M, 2G or 1048576)\n",
    )
    ghost = mailpipe(stack, "quota", "set", f"ghost@{DOMAIN}", "1G")
    assert (ghost.returncode, ghost.stderr) == (1, f"mailpipe: no such user: ghost@{DOMAIN}\n")


def test_a_full_mailbox_gets_452_at_rcpt(stack, owner: str) -> None:
    stack.directory().set_quota(owner, 1024)
    stack.mail_store().append(owner, "Archive", filler(2000))
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.ehlo("sender.test")
        smtp.mail("someone@sender.test")
        code, text = smtp.rcpt(owner)
        assert (code, text) == (452, f"4.2.2 <{owner}>: Mailbox full".encode())
    # Room made (here: a larger quota), the sender's retry is taken once the gateway's short
    # negative cache of the answer has expired; the check itself says so at once.
    stack.directory().set_quota(owner, 10 * 1024)
    assert answer(stack.directory(), RecipientQuery(owner), quotas())["verdict"] == "deliverable"


def test_within_the_grace_mail_is_stored_past_it_bounced(stack, new_user) -> None:
    sender, within, beyond = new_user(), new_user(), new_user()
    store = stack.mail_store()
    for full in (within, beyond):
        store.ensure_mailboxes(full)
        stack.directory().set_quota(full, 10 * 1024)
        store.append(full, "Archive", filler(9000))  # below the limit: RCPT accepts
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=30) as smtp:
        smtp.ehlo("laptop.test")
        smtp.login(sender, PASSWORD)
        # 9000 + ~1500: over the limit of 10240, within its grace (11264): stored.
        smtp.sendmail(sender, [within], message(sender, within, 1000))
        # 9000 + ~3500: beyond the grace: not stored, and the sender told.
        smtp.sendmail(sender, [beyond], message(sender, beyond, 3000))
    assert len(wait_for_inbox(stack, within, 1)) == 1
    (bounce,) = wait_for_inbox(stack, sender, 1)
    report = email.message_from_bytes(store.read_body(bounce))
    assert report.get_content_type() == "multipart/report"
    status = report.get_payload(1).as_string()
    assert f"Final-Recipient: rfc822; {beyond}" in status and "Status: 5.2.2" in status
    assert "mailbox full (over quota)" in status
    assert store.list_messages(beyond, "INBOX")[1] == []


def test_append_over_quota_is_refused_and_quota_reports_the_limit(stack, owner: str) -> None:
    stack.directory().set_quota(owner, 4096)
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    client.login(owner, PASSWORD)
    try:
        assert client.append("INBOX", None, None, filler(3000))[0] == "OK"
        typ, data = client.append("INBOX", None, None, filler(2000))
        assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]")
        typ, data = client.getquotaroot("INBOX")
        assert (typ, data) == ("OK", [[b'INBOX ""'], [b'"" (STORAGE 3 4)']])
        assert len(stack.mail_store().list_messages(owner, "INBOX")[1]) == 1
    finally:
        client.logout()


def test_appends_one_after_another_stop_at_the_limit_and_a_multiappend_past_it_stores_nothing(
    stack, owner: str
) -> None:
    """The quota cache (quota_cache.py) counts again near the limit: APPENDs in a row are refused
    from the first that would cross it, and a MULTIAPPEND that would is refused whole."""
    stack.directory().set_quota(owner, 10_000)
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    client.login(owner, PASSWORD)
    try:
        answers = [client.append("INBOX", None, None, filler(1500)) for _ in range(8)]
        assert [typ for typ, _ in answers] == ["OK"] * 6 + ["NO"] * 2
        assert all(data[0].startswith(b"[OVERQUOTA]") for typ, data in answers if typ == "NO")
        client.select("INBOX")
        two = filler(600)  # 9,000 + 1,200 > 10,000, though each alone would fit
        wire = b"m APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(two), two, len(two), two)
        client.send(wire)
        assert client.readline().startswith(b"m NO [OVERQUOTA]")
        assert len(stack.mail_store().list_messages(owner, "INBOX")[1]) == 6
        typ, data = client.getquotaroot("INBOX")
        assert typ == "OK" and data[1] == [b'"" (STORAGE 9 9)']
    finally:
        client.logout()


def test_rcpt_reads_the_users_mailbox_items_never_their_messages(stack, owner: str) -> None:
    """Usage is the sum of the running totals on the mailbox items: one Query of those, however
    much mail the user has; so every user's quota (the default too) is checked at RCPT."""
    store = stack.mail_store()
    for _ in range(3):
        store.append(owner, "INBOX", filler(3000))
    checker = quotas()
    client = checker._store._client  # the store's own DynamoDB client: its requests, observed
    partitions: list[str] = []

    def seen(params: dict, **_kwargs: object) -> None:
        values = json.loads(params["body"])["ExpressionAttributeValues"].values()
        partitions.extend(v["S"] for v in values if "S" in v)

    client.meta.events.register("before-call.dynamodb.Query", seen)
    try:
        assert answer(stack.directory(), RecipientQuery(owner), checker)["verdict"] == "deliverable"
        assert set(partitions) == {f"user#{owner}", "mailbox#"}, partitions
        assert checker.state(owner).used == 3 * 3000
    finally:
        client.meta.events.unregister("before-call.dynamodb.Query", seen)


def test_the_default_quota_is_enforced_at_rcpt_too(stack, owner: str) -> None:
    stack.mail_store().append(owner, "INBOX", filler(3000))
    assert stack.directory().quota(owner) is None
    small_default = Quotas(stack.directory(), stack.mail_store(), default=2048)
    assert answer(stack.directory(), RecipientQuery(owner), small_default)["verdict"] == "over_quota"
    roomy_default = Quotas(stack.directory(), stack.mail_store(), default=4096)
    assert answer(stack.directory(), RecipientQuery(owner), roomy_default)["verdict"] == "deliverable"


def test_totals_follow_every_change(stack, owner: str) -> None:
    """deliver/append/copy add, expunge takes off, a deleted mailbox's share goes with it."""
    store = stack.mail_store()
    checker = quotas()

    def listed() -> tuple[int, int]:
        messages = [m for box in store.list_mailboxes(owner) for m in store.messages_in(box)]
        return sum(m.crlf_size for m in messages), len(messages)

    store.append(owner, "INBOX", filler(1000))
    store.append(owner, "INBOX", b"From: a@b.test\nSubject: bare LFs\n\nline\nline\n")  # counted as CRLF
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.sendmail("someone@sender.test", [owner], message("someone@sender.test", owner, 500))
    wait_for_inbox(stack, owner, 3)
    store.create_mailbox(owner, "Kept")
    store.copy(owner, "INBOX", [1, 2, 3], "Kept")
    store.expunge(owner, "INBOX", [2])
    assert (checker.state(owner).used, checker.state(owner).messages) == listed()
    assert checker.state(owner).messages == 5
    store.delete_mailbox(owner, "Kept")
    assert (checker.state(owner).used, checker.state(owner).messages) == listed()
    assert checker.state(owner).messages == 2


def test_a_mailbox_without_totals_is_counted_once(stack, owner: str) -> None:
    """Mailboxes made before the totals existed: counted when first asked, and stored."""
    store = stack.mail_store()
    for size in (1000, 2000):
        store.append(owner, "Archive", filler(size))
    archive = store.require_mailbox(owner, "Archive")
    store.table.update_item(
        Key={"pk": f"user#{owner}", "sk": "mailbox#Archive"},
        UpdateExpression="SET size_total = :wrong REMOVE message_total, counted",
        ExpressionAttributeValues={":wrong": 17},
    )
    assert not store.require_mailbox(owner, "Archive").counted
    store.append(owner, "Archive", filler(500))  # a change before the count: its ADD is not trusted
    # The recipient check may only read: it counts, and leaves storing the count to a writer.
    assert quotas(read_only=True).state(owner).used == 3500
    assert not store.require_mailbox(owner, "Archive").counted
    assert quotas().state(owner).used == 3500
    counted = store.require_mailbox(owner, "Archive")
    assert (counted.size_total, counted.message_total) == (3500, 3)
    assert counted.highestmodseq == archive.highestmodseq + 1  # counting is no change to the mailbox
    store.append(owner, "Archive", filler(700))
    assert quotas().state(owner).used == 4200
