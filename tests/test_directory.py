"""The directory against DynamoDB on moto: what is accepted at RCPT and where it is stored."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import DOMAIN, OTHER_DOMAIN, PASSWORD

from mailpipe.directory import INDEX_PK, SENDAS_INDEX_SK, Directory, DirectoryError, Verdict


@pytest.fixture
def directory(stack):
    return stack.directory()


def test_lookup_verdicts(directory, new_user) -> None:
    bob = new_user()
    local = bob.split("@")[0]
    assert directory.lookup(bob).verdict is Verdict.DELIVERABLE
    assert directory.lookup(f"{local.upper()}@{DOMAIN.upper()}").verdict is Verdict.DELIVERABLE
    assert directory.lookup(f"{local}+news@{DOMAIN}").verdict is Verdict.DELIVERABLE
    assert directory.lookup(f"nobody-{secrets.token_hex(3)}@{DOMAIN}").verdict is Verdict.UNKNOWN_USER
    assert directory.lookup("someone@not-hosted.test").verdict is Verdict.NOT_LOCAL
    assert directory.lookup("no-at-sign").verdict is Verdict.INVALID
    assert directory.lookup(f"postmaster@{OTHER_DOMAIN}").verdict is Verdict.DELIVERABLE
    directory.set_disabled(bob, True)
    assert directory.lookup(bob).verdict is Verdict.DISABLED


def test_subaddress_lands_with_the_base_user_unless_the_full_name_exists(directory, new_user) -> None:
    bob = new_user()
    local = bob.split("@")[0]
    assert directory.expand(f"{local}+tag@{DOMAIN}") == [bob]
    exact = directory.add_user(f"{local}+tag@{DOMAIN}", PASSWORD)
    assert directory.expand(f"{local}+tag@{DOMAIN}") == [exact.address]


def test_aliases_nest_and_loops_are_cut(directory, new_user, stack) -> None:
    bob, carol = new_user(), new_user()
    a, b = (f"{name}-{secrets.token_hex(3)}@{DOMAIN}" for name in ("a", "b"))
    directory.add_alias(b, [carol, bob])
    directory.add_alias(a, [bob, b])
    assert directory.expand(a) == [bob, carol]
    assert directory.lookup(a).verdict is Verdict.DELIVERABLE
    # A loop can only be made behind the directory's back (an item written by hand): cut there.
    from mailpipe import aws

    table = aws.table(stack.resources.directory_table)
    table.put_item(Item={"pk": DOMAIN, "sk": f"alias#{b.split('@')[0]}", "targets": [carol, a, bob]})
    assert directory.expand(a) == [bob, carol]


def test_bad_aliases_are_refused_with_the_reason(directory, new_user) -> None:
    bob = new_user()
    a, b, c = (f"{name}-{secrets.token_hex(3)}@{DOMAIN}" for name in ("a", "b", "c"))
    with pytest.raises(DirectoryError, match="no user or alias"):
        directory.add_alias(a, [bob, f"ghost-{secrets.token_hex(3)}@{DOMAIN}"])
    with pytest.raises(DirectoryError, match="is a user"):
        directory.add_alias(bob, [new_user()])
    with pytest.raises(DirectoryError, match="to itself"):
        directory.add_alias(a, [a])
    directory.add_alias(a, [bob])
    directory.add_alias(b, [a])
    with pytest.raises(DirectoryError, match="loop back"):
        directory.add_alias(a, [b], replace=True)
    directory.add_alias(c, [b])
    with pytest.raises(DirectoryError, match=r"alias exists.*--replace"):
        directory.add_alias(c, [bob])
    assert directory.expand(c) == [bob]
    carol = new_user()
    directory.add_alias(c, [carol], replace=True)
    assert directory.expand(c) == [carol]
    with pytest.raises(DirectoryError, match="is an alias"):
        directory.add_user(c, PASSWORD)


def test_disabled_and_deleted_users_receive_nothing(directory, new_user) -> None:
    bob, carol = new_user(), new_user()
    team = f"team-{secrets.token_hex(3)}@{DOMAIN}"
    directory.add_alias(team, [bob, carol])
    directory.set_disabled(bob, True)
    assert directory.expand(bob) == [] and directory.expand(team) == [carol]
    directory.delete_user(carol)
    assert directory.lookup(carol).verdict is Verdict.UNKNOWN_USER
    assert directory.expand(team) == []


def test_alias_targets_must_be_hosted(directory) -> None:
    with pytest.raises(DirectoryError):
        directory.add_alias(f"fwd@{DOMAIN}", ["someone@not-hosted.test"])


def test_catch_all_takes_what_matches_nothing_else(directory, new_user) -> None:
    domain = f"catch-{secrets.token_hex(3)}.test"
    directory.add_domain(domain)
    owner = f"owner@{domain}"
    directory.add_user(owner, PASSWORD)
    assert directory.lookup(f"anything@{domain}").verdict is Verdict.UNKNOWN_USER
    directory.set_catch_all(domain, [owner])
    assert directory.lookup(f"anything@{domain}").verdict is Verdict.DELIVERABLE
    assert directory.expand(f"anything@{domain}") == [owner]
    directory.set_catch_all(domain, [])
    assert directory.lookup(f"anything@{domain}").verdict is Verdict.UNKNOWN_USER


def test_postmaster_is_the_domains_admin(directory, new_user) -> None:
    domain = f"pm-{secrets.token_hex(3)}.test"
    directory.add_domain(domain)
    # No admin, no postmaster: refused at RCPT rather than kept in a mailbox nobody reads.
    assert directory.lookup(f"postmaster@{domain}").verdict is Verdict.UNKNOWN_USER
    assert directory.expand(f"postmaster@{domain}") == []
    ann = f"ann@{domain}"
    directory.set_admin(domain, ann)  # an admin in the domain itself may be added after it
    directory.add_user(ann, PASSWORD)
    assert directory.lookup(f"Postmaster@{domain}").verdict is Verdict.DELIVERABLE
    assert directory.expand(f"postmaster@{domain}") == [ann]
    assert directory.get_domain(domain).admin == ann
    with pytest.raises(DirectoryError, match="reads postmaster mail"):
        directory.delete_user(ann)
    with pytest.raises(DirectoryError, match="not in a hosted domain"):
        directory.set_admin(domain, "someone@not-hosted.test")
    other = f"pm2-{secrets.token_hex(3)}.test"
    bob = new_user()
    assert directory.add_domain(other, admin=bob).admin == bob
    assert directory.expand(f"postmaster@{other}") == [bob]
    # The stack's domains have its demo user as admin.
    assert directory.expand(f"postmaster@{OTHER_DOMAIN}") == [f"bob@{DOMAIN}"]


def test_unlock_is_recorded_for_the_gateways(directory, new_user) -> None:
    bob = new_user()
    assert directory.unlocked_at(bob) is None
    at = directory.unlock(bob.upper())
    assert directory.unlocked_at(bob) == pytest.approx(at)
    local, domain = bob.split("@")
    assert directory.unlocked_at(f"{local}+tag@{domain}") == pytest.approx(at)
    assert directory.unlocked_at("not an address") is None


def test_passwords(directory, new_user) -> None:
    bob = new_user()
    assert directory.authenticate(bob, PASSWORD) is not None
    assert directory.authenticate(bob.upper(), PASSWORD) is not None
    assert directory.authenticate(bob, "wrong") is None
    assert directory.authenticate(f"nobody@{DOMAIN}", PASSWORD) is None
    directory.set_password(bob, "new secret")
    assert directory.authenticate(bob, PASSWORD) is None
    assert directory.authenticate(bob, "new secret") is not None
    directory.set_disabled(bob, True)
    assert directory.authenticate(bob, "new secret") is None


def test_users_need_a_hosted_domain_and_are_unique(directory, new_user) -> None:
    with pytest.raises(DirectoryError):
        directory.add_user("x@not-hosted.test", PASSWORD)
    bob = new_user()
    with pytest.raises(DirectoryError):
        directory.add_user(bob, PASSWORD)
    directory.delete_user(bob)
    with pytest.raises(DirectoryError):
        directory.delete_user(bob)


def test_domain_delete_refuses_while_in_use(directory) -> None:
    domain = f"del-{secrets.token_hex(3)}.test"
    directory.add_domain(domain)
    directory.add_user(f"u@{domain}", PASSWORD)
    with pytest.raises(DirectoryError):
        directory.delete_domain(domain)
    directory.delete_domain(domain, force=True)
    assert directory.get_domain(domain) is None
    assert directory.list_users(domain) == []


def test_a_password_hashed_the_old_way_still_works_and_is_rehashed(stack, directory, new_user) -> None:
    from argon2 import PasswordHasher

    from mailpipe import aws
    from mailpipe.passwords import needs_rehash

    bob = new_user()
    local, domain = bob.split("@")
    table = aws.table(stack.resources.directory_table)
    old = PasswordHasher().hash(PASSWORD)  # argon2-cffi's defaults: four lanes, as hashes used to be
    table.update_item(
        Key={"pk": domain, "sk": f"user#{local}"},
        UpdateExpression="SET password_hash = :h",
        ExpressionAttributeValues={":h": old},
    )
    assert directory.authenticate(bob, "wrong") is None
    assert table.get_item(Key={"pk": domain, "sk": f"user#{local}"})["Item"]["password_hash"] == old
    assert directory.authenticate(bob, PASSWORD) is not None
    new = table.get_item(Key={"pk": domain, "sk": f"user#{local}"})["Item"]["password_hash"]
    assert new != old and not needs_rehash(new) and ",p=1$" in new
    assert directory.authenticate(bob, PASSWORD) is not None
    assert directory.authenticate(bob, "wrong") is None


def test_password_hashes_are_argon2id_with_the_declared_cost() -> None:
    from mailpipe.passwords import hash_password, needs_rehash, verify_password

    hashed = hash_password("s3cret")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=1$") and not needs_rehash(hashed)
    assert verify_password(hashed, "s3cret") and not verify_password(hashed, "s3cret!")
    assert not verify_password(None, "s3cret")
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=1$broken", "s3cret")
    assert not verify_password("not a hash", "s3cret")


@contextmanager
def requests(directory: Directory) -> Iterator[Counter[str]]:
    """The DynamoDB operations `directory` makes, counted on its own client."""
    counted: Counter[str] = Counter()

    def count(event_name: str, **_kwargs: object) -> None:
        counted[event_name.split(".")[-1]] += 1

    events = directory._table.meta.client.meta.events
    events.register("before-call.dynamodb", count)
    try:
        yield counted
    finally:
        events.unregister("before-call.dynamodb", count)


def test_owned_addresses_are_a_query_and_follow_alias_changes_at_once(stack, new_user) -> None:
    """What a user may send as (JMAP Identity/get and EmailSubmission/set, SMTP submission): the
    user's send-as hints (one GetItem) and the aliases they name (one BatchGetItem), never a Scan
    of the directory; an alias added, replaced or deleted counts at the next call."""
    admin, reader = stack.directory(), stack.directory()  # the CLI, and a JMAP function's process
    bob, carol, dave = new_user(), new_user(), new_user()
    tag = secrets.token_hex(3)
    sales, team = f"sales-{tag}@{DOMAIN}", f"team-{tag}@{OTHER_DOMAIN}"
    admin.add_alias(sales, [bob])
    admin.add_alias(team, [carol, bob])
    with requests(reader) as counted:
        assert reader.owned_addresses(bob) == {bob, sales, team}
        assert reader.owned_addresses(carol) == {carol, team}
        assert reader.owned_addresses(dave) == {dave}
    # One GetItem of the hints each (and once per process the index item), a BatchGetItem of the
    # aliases named for those who have any.
    assert counted["Scan"] == counted["Query"] == 0
    assert counted["BatchGetItem"] == 2 and 3 <= counted["GetItem"] <= 4

    admin.add_alias(team, [carol], replace=True)
    admin.delete_alias(sales)
    with requests(reader) as counted:
        assert reader.owned_addresses(bob) == {bob}
        assert reader.owned_addresses(carol) == {carol, team}
    assert counted["Scan"] == counted["Query"] == 0 and counted["GetItem"] == 2
    # A hint that outlived its alias (the alias's domain deleted with --force) names nobody.
    domain = f"gone-{tag}.test"
    admin.add_domain(domain)
    admin.add_alias(f"old@{domain}", [bob])
    assert reader.owned_addresses(bob) == {bob, f"old@{domain}"}
    admin.delete_domain(domain, force=True)
    assert reader.owned_addresses(bob) == {bob}
    # An alias elsewhere still names an address of a domain deleted and added again: it is the
    # user's again, as the alias delivers to them again.
    carl, fan = f"carl@{domain}", f"fan-{tag}@{OTHER_DOMAIN}"
    admin.add_domain(domain)
    admin.add_user(carl, PASSWORD)
    admin.add_alias(fan, [carl])
    admin.delete_domain(domain, force=True)
    admin.add_domain(domain)
    admin.add_user(carl, PASSWORD)
    assert reader.owned_addresses(carl) == {carl, fan}


def test_a_directory_from_before_the_send_as_hints_is_scanned_until_indexed(stack, new_user) -> None:
    directory = stack.directory()
    table = directory._table
    bob = new_user()
    alias = f"old-{secrets.token_hex(3)}@{DOMAIN}"
    # As an older mailpipe left it: the alias item alone, and no index item.
    table.put_item(Item={"pk": DOMAIN, "sk": "alias#" + alias.split("@")[0], "targets": [bob]})
    table.delete_item(Key={"pk": INDEX_PK, "sk": SENDAS_INDEX_SK})
    try:
        old = stack.directory()
        with requests(old) as counted:
            assert old.owned_addresses(bob) == {bob, alias}
        assert counted["Scan"] == 1
    finally:
        stack.directory().ensure_sendas_index()  # as the next `mailpipe user add` would
    new = stack.directory()
    with requests(new) as counted:
        assert new.owned_addresses(bob) == {bob, alias}
    assert counted["Scan"] == 0
