"""Logins answered from the cache of verified credentials cost no argon2id check, and a password
change, disable or delete made by the `mailpipe` command (another process) is seen at the next login.

The evidence that no hash was checked is mailpipe.passwords' count of verifications, in this process
(the dev stack's gateways run in the test process).
"""

from __future__ import annotations

import imaplib
import os
import poplib
import subprocess
import sys

import pytest
from conftest import PASSWORD

from mailpipe import passwords
from mailpipe.addresses import parse_address
from mailpipe.auth.cache import VerifiedCredentials
from mailpipe.directory import StoredLogin


def mailpipe(stack, *args: str, stdin: str = "") -> None:
    env = {**os.environ, **stack.environment}
    done = subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def imap_login(stack, user: str, password: str) -> str:
    """The tagged status of LOGIN: "OK" or "NO"."""
    client = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error:
        return "NO"
    finally:
        client.shutdown()
    return "OK"


def hashes_for(login) -> tuple[str, int]:
    before = passwords.verifications()
    status = login()
    return status, passwords.verifications() - before


@pytest.fixture
def user(stack, new_user) -> str:
    owner = new_user()
    stack.mail_store().ensure_mailboxes(owner)
    return owner


def test_a_second_login_costs_no_hash_in_any_protocol(stack, user) -> None:
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 1)
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 0)
    assert hashes_for(lambda: imap_login(stack, user.upper(), PASSWORD)) == ("OK", 0)

    def pop3() -> str:
        client = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
        try:
            client.user(user)
            client.pass_(PASSWORD)
        finally:
            client.quit()
        return "OK"

    assert hashes_for(pop3) == ("OK", 0)  # one cache for the whole process


def test_a_wrong_password_is_never_cached(stack, user) -> None:
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 1)
    for _ in range(2):
        assert hashes_for(lambda: imap_login(stack, user, "wrong password")) == ("NO", 1)
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 0)


def test_passwd_refuses_the_old_password_at_once(stack, user) -> None:
    assert imap_login(stack, user, PASSWORD) == "OK"
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 0)
    mailpipe(stack, "user", "passwd", user, "--password-stdin", stdin="a new password\n")
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("NO", 1)
    assert hashes_for(lambda: imap_login(stack, user, "a new password")) == ("OK", 1)
    assert hashes_for(lambda: imap_login(stack, user, "a new password")) == ("OK", 0)
    # The same password set again is a new hash (a new salt): verified again, then cached again.
    mailpipe(stack, "user", "passwd", user, "--password-stdin", stdin="a new password\n")
    assert hashes_for(lambda: imap_login(stack, user, "a new password")) == ("OK", 1)


def test_disable_and_delete_refuse_a_cached_login_at_once(stack, user) -> None:
    assert imap_login(stack, user, PASSWORD) == "OK"
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 0)
    mailpipe(stack, "user", "disable", user)
    assert imap_login(stack, user, PASSWORD) == "NO"
    mailpipe(stack, "user", "enable", user)
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 0)
    mailpipe(stack, "user", "del", user, "--yes")
    assert imap_login(stack, user, PASSWORD) == "NO"
    # Made again with the same password: a new hash, so the old entry does not let it in unchecked.
    stack.directory().add_user(user, PASSWORD)
    assert hashes_for(lambda: imap_login(stack, user, PASSWORD)) == ("OK", 1)


def test_a_throttled_user_is_refused_even_when_cached(stack, user) -> None:
    imap = stack.build_imap()  # a throttle of its own, so other tests' logins are not held back
    stack.loop.run(imap.start())
    try:

        def login(password: str) -> str:
            client = imaplib.IMAP4("127.0.0.1", imap.port, timeout=30)
            try:
                client.login(user, password)
                return "OK"
            except imaplib.IMAP4.error as exc:
                return "UNAVAILABLE" if "UNAVAILABLE" in str(exc) else "NO"
            finally:
                client.shutdown()

        assert login(PASSWORD) == "OK"
        for _ in range(5):
            assert login("wrong password") == "NO"
        assert hashes_for(lambda: login(PASSWORD)) == ("UNAVAILABLE", 0)
    finally:
        stack.loop.run(imap.stop())


def stored(address: str, password_hash: str = "$argon2id$salt-1", disabled: bool = False) -> StoredLogin:
    return StoredLogin(parse_address(address), password_hash, disabled)


def test_entries_expire_after_the_ttl() -> None:
    now = [1000.0]
    cache = VerifiedCredentials(ttl=300, size=10, clock=lambda: now[0])
    bob = stored("bob@example.test")
    cache.remember(bob, "pw")
    now[0] += 299
    assert cache.verified(bob, "pw") is not None
    now[0] += 2
    assert cache.verified(bob, "pw") is None
    assert len(cache) == 0


def test_a_hit_needs_the_same_user_password_hash_and_an_enabled_account() -> None:
    cache = VerifiedCredentials()
    bob = stored("bob@example.test")
    cache.remember(bob, "pw")
    assert cache.verified(bob, "pw") is not None
    assert cache.verified(bob, "pw2") is None
    assert cache.verified(stored("ann@example.test"), "pw") is None
    assert cache.verified(stored("bob@example.test", disabled=True), "pw") is None
    assert cache.verified(None, "pw") is None
    assert cache.verified(stored("bob@example.test", "$argon2id$salt-2"), "pw") is None
    assert cache.verified(bob, "pw") is None  # the stale entry was dropped


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = VerifiedCredentials(size=3)
    users = [stored(f"u{i}@example.test") for i in range(4)]
    for u in users[:3]:
        cache.remember(u, "pw")
    assert cache.verified(users[0], "pw") is not None  # now the most recently used
    cache.remember(users[3], "pw")
    assert len(cache) == 3
    assert cache.verified(users[1], "pw") is None
    assert all(cache.verified(u, "pw") is not None for u in (users[0], users[2], users[3]))


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache = VerifiedCredentials(ttl=0)
    bob = stored("bob@example.test")
    cache.remember(bob, "pw")
    assert cache.verified(bob, "pw") is None and len(cache) == 0
