"""The `mailpipe` command run as a user runs it, against the stack's moto endpoint."""

from __future__ import annotations

import imaplib
import os
import secrets
import smtplib
import subprocess
import sys

from conftest import DOMAIN, PASSWORD, inbox, wait_for_inbox

from mailpipe import aws
from mailpipe.outbound.suppression import Suppression, SuppressionList


def mailpipe(stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.environment}
    return subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_domain_user_alias_lifecycle(stack) -> None:
    domain = f"cli-{secrets.token_hex(3)}.test"
    assert mailpipe(stack, "domain", "add", domain, "--admin", f"bob@{DOMAIN}").returncode == 0
    assert domain in mailpipe(stack, "domain", "list").stdout

    user = f"ann@{domain}"
    added = mailpipe(stack, "user", "add", user, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert stack.directory().authenticate(user, PASSWORD) is not None
    assert {m.name for m in stack.mail_store().list_mailboxes(user)} >= {"INBOX", "Sent", "Trash"}
    assert mailpipe(stack, "user", "list", "--domain", domain).stdout.split() == [user]

    assert mailpipe(stack, "user", "passwd", user, stdin="new-password\n").returncode == 0
    assert stack.directory().authenticate(user, "new-password") is not None

    assert mailpipe(stack, "alias", "add", f"team@{domain}", user, f"bob@{DOMAIN}").returncode == 0
    assert f"team@{domain} -> {user}, bob@{DOMAIN}" in mailpipe(stack, "alias", "list").stdout

    refused = mailpipe(stack, "domain", "del", domain)
    assert refused.returncode == 1 and "still has" in refused.stderr
    assert mailpipe(stack, "alias", "del", f"team@{domain}").returncode == 0
    assert mailpipe(stack, "user", "del", user, "--yes").returncode == 0
    assert mailpipe(stack, "domain", "del", domain).returncode == 0
    assert domain not in mailpipe(stack, "domain", "list").stdout


def test_errors_are_one_clear_line(stack) -> None:
    result = mailpipe(stack, "user", "add", "x@not-hosted.test", stdin="pw\n")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "mailpipe: no such domain: not-hosted.test (add it with `mailpipe domain add`)"
    )
    empty = mailpipe(stack, "user", "add", f"y@{DOMAIN}", stdin="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr


def test_queue_commands(stack) -> None:
    listing = mailpipe(stack, "queue", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.strip().endswith("recipients queued")
    for action in ("retry", "delete"):
        missing = mailpipe(stack, "queue", action, "NO-SUCH-ID")
        assert missing.returncode == 1 and "nothing queued for NO-SUCH-ID" in missing.stderr


def test_queue_suppressed_and_unsuppress(stack) -> None:
    address = f"gone-{secrets.token_hex(3)}@hamburger.edu"
    suppressions = SuppressionList(aws.table(stack.environment["MAILPIPE_OUTBOUND_TABLE"]))
    suppressions.add(
        Suppression(address, "bounce", "2026-11-27T17:21:05Z", "550 5.1.1 User unknown", "01ABC")
    )
    listing = mailpipe(stack, "queue", "suppressed")
    assert listing.returncode == 0, listing.stderr
    assert f"{address}  bounce  since=2026-11-27T17:21:05Z  550 5.1.1 User unknown" in listing.stdout
    assert listing.stdout.strip().endswith("addresses suppressed")

    cleared = mailpipe(stack, "queue", "unsuppress", address.upper())
    assert cleared.returncode == 0 and f"{address.upper()} no longer suppressed (mailpipe)" in cleared.stdout
    assert suppressions.get(address) is None
    assert address not in mailpipe(stack, "queue", "suppressed").stdout
    again = mailpipe(stack, "queue", "unsuppress", address)
    assert again.returncode == 1 and f"mailpipe: {address} is not suppressed" in again.stderr


def mail_to(stack, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        client.sendmail("sender@remote.test", [rcpt], f"Subject: {subject}\r\n\r\nhello\r\n")


def uidvalidity(stack, user: str) -> tuple[int, int]:
    """INBOX's UIDVALIDITY and message count, as an IMAP client sees them."""
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=60) as client:
        client.login(user, PASSWORD)
        count = int(client.select("INBOX")[1][0])
        [answer] = client.response("UIDVALIDITY")[1]
        return int(answer), count


def bodies_in_s3(stack, user: str) -> int:
    listed = aws.client("s3").list_objects_v2(Bucket=stack.resources.mail_bucket, Prefix=f"messages/{user}/")
    return listed.get("KeyCount", 0)


def test_user_del_deletes_the_mail_and_a_user_added_again_starts_empty(stack, new_user) -> None:
    ann = new_user()
    mail_to(stack, ann, "for the first ann")
    wait_for_inbox(stack, ann, 1)
    old_validity, count = uidvalidity(stack, ann)
    assert count == 1 and bodies_in_s3(stack, ann) == 1

    refused = mailpipe(stack, "user", "del", ann)  # no terminal to ask on
    assert refused.returncode == 1 and "--yes" in refused.stderr and "--keep-mail" in refused.stderr
    deleted = mailpipe(stack, "user", "del", ann, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted {ann} and 1 messages in 6 mailboxes"
    assert bodies_in_s3(stack, ann) == 0 and stack.mail_store().list_mailboxes(ann) == []
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        client.ehlo("client.test")
        client.mail("sender@remote.test")
        assert client.rcpt(ann)[0] == 550

    added = mailpipe(stack, "user", "add", ann, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    new_validity, count = uidvalidity(stack, ann)
    assert count == 0 and new_validity > old_validity


def test_user_del_keep_mail_leaves_it(stack, new_user) -> None:
    ann = new_user()
    mail_to(stack, ann, "kept")
    wait_for_inbox(stack, ann, 1)
    deleted = mailpipe(stack, "user", "del", ann, "--keep-mail")
    assert deleted.returncode == 0 and "mail kept" in deleted.stdout
    assert len(inbox(stack, ann)) == 1


def test_domain_del_force_deletes_its_users_mail(stack) -> None:
    domain = f"gone-{secrets.token_hex(3)}.test"
    user = f"ann@{domain}"
    assert mailpipe(stack, "domain", "add", domain, "--admin", user).returncode == 0
    assert mailpipe(stack, "user", "add", user, stdin=PASSWORD + "\n").returncode == 0
    mail_to(stack, f"postmaster@{domain}", "to the admin")
    wait_for_inbox(stack, user, 1)
    deleted = mailpipe(stack, "domain", "del", domain, "--force", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines() == [
        f"deleted {domain}",
        f"deleted {user} and 1 messages in 6 mailboxes",
    ]
    assert stack.mail_store().list_mailboxes(user) == [] and bodies_in_s3(stack, user) == 0


def test_domain_admin_reads_postmaster_mail(stack, new_user) -> None:
    domain = f"adm-{secrets.token_hex(3)}.test"
    ann = f"ann@{domain}"
    added = mailpipe(stack, "domain", "add", domain, "--admin", ann)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (
        f"added {domain} (postmaster mail to {ann}); {ann} receives nothing yet: "
        f"add it with `mailpipe user add {ann}`"
    )
    assert f"{domain}  admin: {ann}" in mailpipe(stack, "domain", "list").stdout
    other = f"adm2-{secrets.token_hex(3)}.test"
    unnamed = mailpipe(stack, "domain", "add", other)
    assert unnamed.returncode == 2 and "--admin" in unnamed.stderr
    assert mailpipe(stack, "domain", "add", other, "--admin", f"bob@{DOMAIN}").returncode == 0
    bob = new_user()
    assert (
        mailpipe(stack, "domain", "admin", other, bob).stdout.strip()
        == f"postmaster@{other} now reaches {bob}"
    )
    refused = mailpipe(stack, "user", "del", bob, "--yes")
    assert refused.returncode == 1 and "name another admin first" in refused.stderr


def test_alias_add_refuses_what_would_not_deliver(stack, new_user) -> None:
    bob, carol = new_user(), new_user()
    team = f"team-{secrets.token_hex(3)}@{DOMAIN}"
    ghost = f"ghost-{secrets.token_hex(3)}@{DOMAIN}"
    cases = [
        ((team, ghost), f"mailpipe: alias target {ghost} is no user or alias (add it first)"),
        ((bob, carol), f"mailpipe: {bob} is a user: an alias there would never get mail"),
        ((team, team), f"mailpipe: alias {team} would deliver to itself"),
    ]
    for args, message in cases:
        result = mailpipe(stack, "alias", "add", *args)
        assert (result.returncode, result.stderr.strip()) == (1, message)
    assert mailpipe(stack, "alias", "add", team, bob).stdout.strip() == f"{team} -> {bob}"
    again = mailpipe(stack, "alias", "add", team, carol)
    assert again.returncode == 1
    assert again.stderr.strip() == f"mailpipe: alias exists: {team} (use --replace to change its targets)"
    loop = f"loop-{secrets.token_hex(3)}@{DOMAIN}"
    assert mailpipe(stack, "alias", "add", loop, team).returncode == 0
    looped = mailpipe(stack, "alias", "add", team, loop, "--replace")
    assert looped.stderr.strip() == f"mailpipe: alias {team} would loop back to itself"
    replaced = mailpipe(stack, "alias", "add", team, carol, "--replace")
    assert replaced.stdout.strip() == f"{team} -> {carol}"


def test_user_unlock_records_the_time(stack, new_user) -> None:
    bob = new_user()
    result = mailpipe(stack, "user", "unlock", bob.upper())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"unlocked {bob}: failed logins before now no longer count on any gateway"
    assert stack.directory().unlocked_at(bob) is not None
