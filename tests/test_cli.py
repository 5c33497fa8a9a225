"""The `mailpipe` command run as a user runs it, against the stack's moto endpoint."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from conftest import DOMAIN, PASSWORD

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
    assert mailpipe(stack, "domain", "add", domain).returncode == 0
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
    assert mailpipe(stack, "user", "del", user).returncode == 0
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
