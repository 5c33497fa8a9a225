"""The directory: hosted domains, users, aliases and catch-alls, in one DynamoDB table.

Item layout (pk = domain, so everything about one address is one BatchGetItem away):

    pk=example.test  sk=domain          admin, catch_all=[targets]
    pk=example.test  sk=user#bob        password_hash, disabled, created
    pk=example.test  sk=alias#sales     targets=[addresses]
    pk=example.test  sk=unlock#bob      at (epoch seconds of the last `mailpipe user unlock`)
    pk=sendas#bob@example.test  sk=sendas   aliases={sales@other.test, ...}   (hints: see below)
    pk=#index        sk=sendas          the hints cover every alias (set once, by a backfill)

Send-as hints. `owned_addresses` (what a user may send as: JMAP's Identities and EmailSubmission,
SMTP submission) needs the aliases that deliver to a user, from any hosted domain. Rather than a
Scan of the whole directory per JMAP request, each alias is named in a hint item of each of its
targets (a string set kept by UpdateItem ADD/DELETE; not under a domain: no domain's listing or
deletion sees it), read by one GetItem; the alias items it names are read (one consistent
BatchGetItem) and kept only if they still deliver to the user. So a hint that outlived its alias
(a crash between writes, a domain deleted with its aliases) is harmless, and every write puts the
hints before the alias item and deletes them after it: no alias is ever without its hints. A
directory from before the hints has no `#index` item: then owned_addresses scans as before, until
the next directory change by the CLI (`add_domain`, `add_user`, `add_alias`, `delete_alias`)
writes the missing hints.

Mail for postmaster@ goes to the domain's admin (a person: RFC 5321 4.5.1 wants postmaster
read) unless a user or alias named postmaster exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from mailpipe.addresses import Address, AddressError, check_domain_name, normalise_domain, parse_address
from mailpipe.dynamo import query_all, scan_all
from mailpipe.passwords import hash_password, needs_rehash, verify_password

DOMAIN_SK = "domain"
log = logging.getLogger(__name__)

USER_PREFIX = "user#"
ALIAS_PREFIX = "alias#"
UNLOCK_PREFIX = "unlock#"
SENDAS_PREFIX = "sendas#"
INDEX_PK = "#index"  # not a domain name: nothing that lists domains or their entries sees it
SENDAS_INDEX_SK = "sendas"
POSTMASTER = "postmaster"
MAX_ALIAS_DEPTH = 8


class DirectoryError(RuntimeError):
    """A directory change that cannot be made (unknown domain, duplicate user, ...)."""


class Verdict(StrEnum):
    DELIVERABLE = "deliverable"
    UNKNOWN_USER = "unknown_user"
    DISABLED = "disabled"
    NOT_LOCAL = "not_local"
    INVALID = "invalid"
    OVER_QUOTA = "over_quota"  # mailpipe.recipients: every mailbox it reaches is full


@dataclass(frozen=True)
class Lookup:
    """The answer to "may mail for this address be accepted here?"."""

    verdict: Verdict
    address: str
    reason: str = ""


@dataclass(frozen=True)
class User:
    address: str
    disabled: bool = False
    created: int = 0


@dataclass(frozen=True)
class StoredLogin:
    """A user's directory item as a login sees it. `password_hash` has a fresh random salt at every
    `mailpipe user passwd` (and a user deleted and added again has a new one): it tells a cached
    verification whether it still holds."""

    address: Address
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class Alias:
    address: str
    targets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Domain:
    name: str
    catch_all: list[str] = field(default_factory=list)
    admin: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Domain:
        return cls(item["pk"], list(item.get("catch_all", [])), item.get("admin"))


def _user_sk(local: str) -> str:
    return USER_PREFIX + local


def _alias_sk(local: str) -> str:
    return ALIAS_PREFIX + local


def _sendas_key(target: str) -> dict[str, str]:
    return {"pk": SENDAS_PREFIX + target, "sk": SENDAS_INDEX_SK}


class Directory:
    def __init__(self, table: Any) -> None:
        self._table = table
        # Once seen, the hints' index item stays (nothing deletes it): no need to read it again.
        self._sendas_indexed = False

    # -- domains -----------------------------------------------------------------

    def add_domain(self, name: str, catch_all: list[str] | None = None, admin: str | None = None) -> Domain:
        """Host a new domain; `admin` reads its postmaster mail (see `set_admin`). DirectoryError if it
        is hosted already (its settings are kept)."""
        name = check_domain_name(name)
        domain = Domain(
            name, [parse_address(t).text for t in catch_all or []], self._admin_address(admin, name)
        )
        item: dict[str, Any] = {"pk": domain.name, "sk": DOMAIN_SK, "created": int(time.time())}
        if domain.catch_all:
            item["catch_all"] = domain.catch_all
        if domain.admin:
            item["admin"] = domain.admin
        self.ensure_sendas_index()
        with _or_directory_error(f"domain exists: {domain.name}"):
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        return domain

    def set_admin(self, name: str, admin: str) -> None:
        domain = normalise_domain(name)
        self._require_domain(domain)
        self._table.update_item(
            Key={"pk": domain, "sk": DOMAIN_SK},
            UpdateExpression="SET admin = :a",
            ExpressionAttributeValues={":a": self._admin_address(admin, domain)},
        )

    def _admin_address(self, admin: str | None, domain: str) -> str | None:
        """The admin, spelt as stored. It may be a user still to be added in `domain` itself (the
        domain comes first), but elsewhere only in a hosted domain: postmaster mail is local."""
        if admin is None:
            return None
        addr = parse_address(admin)
        if addr.domain != domain and self.get_domain(addr.domain) is None:
            raise DirectoryError(f"admin {addr} is not in a hosted domain")
        return addr.text

    def domains_administered_by(self, address: str) -> list[str]:
        own = parse_address(address).text
        return [d.name for d in self.list_domains() if d.admin == own]

    def set_catch_all(self, name: str, targets: list[str]) -> None:
        domain = normalise_domain(name)
        self._require_domain(domain)
        addresses = [parse_address(t).text for t in targets]
        if addresses:
            self._table.update_item(
                Key={"pk": domain, "sk": DOMAIN_SK},
                UpdateExpression="SET catch_all = :c",
                ExpressionAttributeValues={":c": addresses},
            )
        else:
            self._table.update_item(Key={"pk": domain, "sk": DOMAIN_SK}, UpdateExpression="REMOVE catch_all")

    def get_domain(self, name: str) -> Domain | None:
        item = self._table.get_item(Key={"pk": normalise_domain(name), "sk": DOMAIN_SK}).get("Item")
        return Domain.from_item(item) if item else None

    def list_domains(self) -> list[Domain]:
        items = self._scan(FilterExpression=Key("sk").eq(DOMAIN_SK))
        return sorted((Domain.from_item(i) for i in items), key=lambda d: d.name)

    def delete_domain(self, name: str, *, force: bool = False) -> None:
        domain = normalise_domain(name)
        entries = self._query(domain)
        if not any(i["sk"] == DOMAIN_SK for i in entries):
            raise DirectoryError(f"no such domain: {domain}")
        # (Send-as hints for this domain's addresses are not under it: aliases elsewhere still
        # name those addresses, and deliver to them again if the domain comes back.)
        others = [i for i in entries if i["sk"] != DOMAIN_SK]
        if others and not force:
            raise DirectoryError(f"{domain} still has {len(others)} users/aliases (use --force)")
        with self._table.batch_writer() as batch:
            for item in entries:
                batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})

    # -- users -------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> User:
        addr = parse_address(address)
        self._require_domain(addr.domain)
        self.ensure_sendas_index()
        if self._item(addr.domain, _alias_sk(addr.local)) is not None:
            raise DirectoryError(f"{addr} is an alias (delete it first with `mailpipe alias del`)")
        with _or_directory_error(f"user exists: {addr}"):
            self._table.put_item(
                Item={
                    "pk": addr.domain,
                    "sk": _user_sk(addr.local),
                    "password_hash": hash_password(password),
                    "disabled": False,
                    "created": int(time.time()),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        return User(addr.text)

    def set_password(self, address: str, password: str) -> None:
        addr = parse_address(address)
        self._update_user(addr, "SET password_hash = :h", {":h": hash_password(password)})

    def set_disabled(self, address: str, disabled: bool) -> None:
        addr = parse_address(address)
        self._update_user(addr, "SET disabled = :d", {":d": disabled})

    def set_quota(self, address: str, limit: int | None) -> None:
        """The most `address` may store, in octets; None: the default (mailpipe.quota)."""
        addr = parse_address(address)
        if limit is None:
            with _or_directory_error(f"no such user: {addr}"):
                self._table.update_item(
                    Key={"pk": addr.domain, "sk": _user_sk(addr.local)},
                    UpdateExpression="REMOVE quota_bytes",
                    ConditionExpression="attribute_exists(pk)",
                )
        else:
            self._update_user(addr, "SET quota_bytes = :q", {":q": limit})

    def quota(self, address: str) -> int | None:
        """The limit set for `address`, or None (none set, or no such user: a postmaster mailbox)."""
        addr = parse_address(address)
        item = self._table.get_item(
            Key={"pk": addr.domain, "sk": _user_sk(addr.local)}, ProjectionExpression="quota_bytes"
        ).get("Item")
        return int(item["quota_bytes"]) if item and "quota_bytes" in item else None

    def delete_user(self, address: str) -> None:
        addr = parse_address(address)
        administered = self.domains_administered_by(addr.text)
        if administered:
            raise DirectoryError(
                f"{addr} reads postmaster mail for {', '.join(administered)}: "
                "name another admin first (`mailpipe domain admin DOMAIN ADDR`)"
            )
        with _or_directory_error(f"no such user: {addr}"):
            self._table.delete_item(
                Key={"pk": addr.domain, "sk": _user_sk(addr.local)},
                ConditionExpression="attribute_exists(pk)",
            )

    def unlock(self, address: str) -> float:
        """Ask every gateway to forget the user's failed logins (auth/throttle.py); returns the time."""
        addr = parse_address(address).base
        self._require_domain(addr.domain)
        at = time.time()
        self._table.put_item(
            Item={"pk": addr.domain, "sk": UNLOCK_PREFIX + addr.local, "at": Decimal(str(at))}
        )
        return at

    def unlocked_at(self, address: str) -> float | None:
        """When `mailpipe user unlock` was last run for the user, or None; one GetItem."""
        try:
            addr = parse_address(address).base
        except AddressError:
            return None
        item = self._item(addr.domain, UNLOCK_PREFIX + addr.local)
        return float(item["at"]) if item else None

    def list_users(self, domain: str | None = None) -> list[User]:
        items = self._entries(domain, USER_PREFIX)
        return sorted(
            (
                User(
                    f"{i['sk'][len(USER_PREFIX) :]}@{i['pk']}",
                    bool(i.get("disabled")),
                    int(i.get("created", 0)),
                )
                for i in items
            ),
            key=lambda u: u.address,
        )

    def authenticate(self, address: str, password: str) -> User | None:
        """The user, if the password is right and the account enabled; else None."""
        return self.check_password(self.stored_login(address), password)

    def stored_login(self, address: str) -> StoredLogin | None:
        """What a login is checked against (one GetItem); None for no such user or no address.

        Split from check_password so that a gateway's cache of verified credentials
        (mailpipe/auth/cache.py) can compare against this read, made at every login,
        before it pays for an argon2id check.
        """
        try:
            addr = parse_address(address)
        except AddressError:
            return None
        item = self._table.get_item(Key={"pk": addr.domain, "sk": _user_sk(addr.local)}).get("Item")
        if item is None or not item.get("password_hash"):
            return None
        return StoredLogin(addr, str(item["password_hash"]), bool(item.get("disabled")))

    def check_password(self, stored: StoredLogin | None, password: str) -> User | None:
        """The user, if `password` matches `stored` and the account is enabled (argon2id: ~0.1 s of CPU).

        Without a stored login the check is made all the same, against a dummy hash, so that a
        wrong user name costs the same time as a wrong password.
        """
        ok = verify_password(stored.password_hash if stored else None, password)
        if not ok or stored is None or stored.disabled:
            return None
        if needs_rehash(stored.password_hash):
            self._rehash(stored.address, stored.password_hash, password)
        return User(stored.address.text)

    def _rehash(self, addr: Address, stored: str, password: str) -> None:
        """Replace a hash made the old way, now that the password is known to be right; unless
        the password changed meanwhile."""
        try:
            self._table.update_item(
                Key={"pk": addr.domain, "sk": _user_sk(addr.local)},
                UpdateExpression="SET password_hash = :new",
                ConditionExpression="password_hash = :old",
                ExpressionAttributeValues={":new": hash_password(password), ":old": stored},
            )
        except ClientError as exc:
            # The login stands either way; the old hash keeps working, at its old cost.
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                log.warning("could not rehash the password of %s: %s", addr, exc)

    # -- aliases -----------------------------------------------------------------

    def add_alias(self, address: str, targets: list[str], *, replace: bool = False) -> Alias:
        """Add an alias, refused when it could not deliver: over a user, onto a local address that
        is nobody, or into a loop. An existing alias is only replaced when asked to."""
        addr = parse_address(address)
        self._require_domain(addr.domain)
        if not targets:
            raise DirectoryError("an alias needs at least one target")
        if self._item(addr.domain, _user_sk(addr.local)) is not None:
            raise DirectoryError(f"{addr} is a user: an alias there would never get mail")
        resolved = list(dict.fromkeys(parse_address(t).text for t in targets))
        for target in map(parse_address, resolved):
            # Remote targets need the outbound queue (forwarding); until it exists an
            # alias may only point at hosted domains, so no accepted mail is stranded.
            if self.get_domain(target.domain) is None:
                raise DirectoryError(f"alias target {target} is not in a hosted domain")
            if target.text == addr.text:
                raise DirectoryError(f"alias {addr} would deliver to itself")
            if not self._names_someone(target):
                raise DirectoryError(f"alias target {target} is no user or alias (add it first)")
        self._refuse_loop(addr, resolved)
        self.ensure_sendas_index()
        item = {"pk": addr.domain, "sk": _alias_sk(addr.local), "targets": resolved}
        self._put_sendas(addr.text, resolved)  # before the alias: it is never without them
        if replace:
            old = self._table.put_item(Item=item, ReturnValues="ALL_OLD").get("Attributes") or {}
            self._delete_sendas(addr.text, [t for t in old.get("targets", []) if t not in resolved])
        else:
            with _or_directory_error(f"alias exists: {addr} (use --replace to change its targets)"):
                self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        return Alias(addr.text, resolved)

    def _names_someone(self, addr: Address) -> bool:
        """A user or alias answers to `addr` (or postmaster, which the domain's admin reads)."""
        entries = self._entries_for(addr)
        if addr.base_local == POSTMASTER:
            return True
        return any(
            _user_sk(local) in entries or _alias_sk(local) in entries for local in _candidate_locals(addr)
        )

    def _refuse_loop(self, alias: Address, targets: list[str]) -> None:
        """Follow the aliases the targets lead to: reaching `alias` again, or going deeper than
        delivery would follow, is refused."""
        frontier = [(parse_address(t), 1) for t in targets]
        seen: set[str] = set()
        while frontier:
            addr, depth = frontier.pop()
            if addr.text == alias.text:
                raise DirectoryError(f"alias {alias} would loop back to itself")
            if addr.text in seen:
                continue
            seen.add(addr.text)
            if depth > MAX_ALIAS_DEPTH:
                raise DirectoryError(f"alias {alias} nests deeper than {MAX_ALIAS_DEPTH} aliases")
            entries = self._entries_for(addr)
            for local in _candidate_locals(addr):
                if _user_sk(local) in entries:
                    break
                alias_item = entries.get(_alias_sk(local))
                if alias_item is not None:
                    frontier += [(parse_address(t), depth + 1) for t in alias_item.get("targets", [])]
                    break

    def delete_alias(self, address: str) -> None:
        addr = parse_address(address)
        self.ensure_sendas_index()
        with _or_directory_error(f"no such alias: {addr}"):
            old = (
                self._table.delete_item(
                    Key={"pk": addr.domain, "sk": _alias_sk(addr.local)},
                    ConditionExpression="attribute_exists(pk)",
                    ReturnValues="ALL_OLD",
                ).get("Attributes")
                or {}
            )
        self._delete_sendas(addr.text, list(old.get("targets", [])))

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        items = self._entries(domain, ALIAS_PREFIX)
        return sorted(
            (Alias(f"{i['sk'][len(ALIAS_PREFIX) :]}@{i['pk']}", list(i.get("targets", []))) for i in items),
            key=lambda a: a.address,
        )

    def owned_addresses(self, address: str) -> set[str]:
        """The addresses `address` may send as: its own, and every alias that delivers to it.

        One GetItem of the user's send-as hints, and one consistent BatchGetItem
        of the aliases they name (none without aliases): read at each call, so an alias added or
        deleted counts at once. A directory without the hints' index item is scanned instead."""
        own = parse_address(address).text
        owned = {own}
        if not self._has_sendas_index():
            for alias in self.list_aliases():
                if own in alias.targets:
                    owned.add(alias.address)
            return owned
        hints = self._table.get_item(Key=_sendas_key(own), ConsistentRead=True).get("Item") or {}
        named = {str(a) for a in hints.get("aliases", ())}
        keys = []
        for alias in sorted(named):
            alias_addr = parse_address(alias)
            keys.append({"pk": alias_addr.domain, "sk": _alias_sk(alias_addr.local)})
        for item in self._batch_get(keys):
            if own in item.get("targets", []):
                owned.add(f"{item['sk'][len(ALIAS_PREFIX) :]}@{item['pk']}")
        return owned

    def ensure_sendas_index(self) -> None:
        """Write the send-as hints of every alias, once per directory (a directory from before
        them); after that, alias writes keep them. A Scan of the aliases, then a BatchWrite."""
        if self._has_sendas_index():
            return
        for alias in self.list_aliases():
            self._put_sendas(alias.address, alias.targets)
        self._table.put_item(Item={"pk": INDEX_PK, "sk": SENDAS_INDEX_SK, "at": int(time.time())})
        self._sendas_indexed = True

    def _has_sendas_index(self) -> bool:
        if not self._sendas_indexed:
            self._sendas_indexed = self._item(INDEX_PK, SENDAS_INDEX_SK) is not None
        return self._sendas_indexed

    def _put_sendas(self, alias: str, targets: list[str]) -> None:
        self._change_sendas("ADD", alias, targets)

    def _delete_sendas(self, alias: str, targets: list[str]) -> None:
        self._change_sendas("DELETE", alias, targets)

    def _change_sendas(self, action: str, alias: str, targets: list[str]) -> None:
        """ADD or DELETE `alias` in each target's hint set (atomic: concurrent changes both hold)."""
        for target in targets:
            self._table.update_item(
                Key=_sendas_key(target),
                UpdateExpression=f"{action} aliases :alias",
                ExpressionAttributeValues={":alias": {alias}},
            )

    # -- resolution --------------------------------------------------------------

    def lookup(self, address: str) -> Lookup:
        """Whether mail for `address` is accepted, answered with one BatchGetItem."""
        try:
            addr = parse_address(address)
        except AddressError as exc:
            return Lookup(Verdict.INVALID, address, str(exc))
        entries = self._entries_for(addr)
        if DOMAIN_SK not in entries:
            return Lookup(Verdict.NOT_LOCAL, addr.text)
        for local in _candidate_locals(addr):
            user = entries.get(_user_sk(local))
            if user is not None:
                if user.get("disabled"):
                    return Lookup(Verdict.DISABLED, addr.text)
                return Lookup(Verdict.DELIVERABLE, addr.text)
            if _alias_sk(local) in entries:
                return Lookup(Verdict.DELIVERABLE, addr.text)
        domain = entries[DOMAIN_SK]
        if domain.get("catch_all") or (addr.base_local == POSTMASTER and domain.get("admin")):
            return Lookup(Verdict.DELIVERABLE, addr.text)
        return Lookup(Verdict.UNKNOWN_USER, addr.text)

    def expand(self, address: str) -> list[str]:
        """The mailbox owners that mail for `address` is stored for: enabled users only.

        Aliases expand recursively (bounded depth, loops cut); `bob+tag` lands in bob's
        mailbox; a domain's catch-all takes what matches nothing else; postmaster, when no
        user or alias has the name, is the domain's admin. An address that resolves to
        nobody (a deleted or disabled user, an alias whose targets went) gives an empty
        list: the caller answers the sender (inbound.py), never a mailbox nobody reads.
        """
        owners: list[str] = []
        self._expand(parse_address(address), owners, set(), depth=0)
        return owners

    def _expand(self, addr: Address, owners: list[str], seen: set[str], depth: int) -> None:
        if addr.text in seen or depth > MAX_ALIAS_DEPTH:
            return
        seen.add(addr.text)
        entries = self._entries_for(addr)
        if DOMAIN_SK not in entries:
            return
        for local in _candidate_locals(addr):
            user = entries.get(_user_sk(local))
            if user is not None:
                owner = f"{local}@{addr.domain}"
                if owner not in owners and not user.get("disabled"):
                    owners.append(owner)
                return
            alias = entries.get(_alias_sk(local))
            if alias is not None:
                for target in alias.get("targets", []):
                    self._expand(parse_address(target), owners, seen, depth + 1)
                return
        domain = entries[DOMAIN_SK]
        if addr.base_local == POSTMASTER:
            if domain.get("admin"):
                self._expand(parse_address(domain["admin"]), owners, seen, depth + 1)
            return
        for target in domain.get("catch_all", []):
            self._expand(parse_address(target), owners, seen, depth + 1)

    # -- plumbing ----------------------------------------------------------------

    def _entries_for(self, addr: Address) -> dict[str, dict[str, Any]]:
        sort_keys = [DOMAIN_SK]
        for local in _candidate_locals(addr):
            sort_keys += [_user_sk(local), _alias_sk(local)]
        return {
            item["sk"]: item for item in self._batch_get([{"pk": addr.domain, "sk": sk} for sk in sort_keys])
        }

    def _batch_get(self, keys: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The items of `keys` that exist (consistent reads), 100 keys per request."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            # The table resource's client converts between DynamoDB's typed values and Python's.
            pending: dict[str, Any] = {
                self._table.name: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            for _ in range(5):
                response = self._table.meta.client.batch_get_item(RequestItems=pending)
                found += response.get("Responses", {}).get(self._table.name, [])
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise RuntimeError("directory lookup throttled")
        return found

    def _item(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self._table.get_item(Key={"pk": pk, "sk": sk}, ConsistentRead=True).get("Item")

    def _require_domain(self, domain: str) -> None:
        if self.get_domain(domain) is None:
            raise DirectoryError(f"no such domain: {domain} (add it with `mailpipe domain add`)")

    def _update_user(self, addr: Address, expression: str, values: dict[str, Any]) -> None:
        with _or_directory_error(f"no such user: {addr}"):
            self._table.update_item(
                Key={"pk": addr.domain, "sk": _user_sk(addr.local)},
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
                ConditionExpression="attribute_exists(pk)",
            )

    def _entries(self, domain: str | None, prefix: str) -> list[dict[str, Any]]:
        if domain:
            return self._query(normalise_domain(domain), prefix)
        return self._scan(FilterExpression=Key("sk").begins_with(prefix))

    def _query(self, domain: str, prefix: str | None = None) -> list[dict[str, Any]]:
        condition = Key("pk").eq(domain)
        if prefix:
            condition = condition & Key("sk").begins_with(prefix)
        return query_all(self._table, condition)

    def _scan(self, **kwargs: Any) -> list[dict[str, Any]]:
        return scan_all(self._table, **kwargs)


@contextmanager
def _or_directory_error(message: str) -> Iterator[None]:
    """Turns a failed write condition (no such entry, or one already there) into a DirectoryError."""
    try:
        yield
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise DirectoryError(message) from None
        raise


def _candidate_locals(addr: Address) -> list[str]:
    """`bob+tag` is tried as itself first (an account may really be named so), then as `bob`."""
    return [addr.local] if addr.base_local == addr.local else [addr.local, addr.base_local]
