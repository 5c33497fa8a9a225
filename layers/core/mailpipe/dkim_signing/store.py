"""DKIM keys in AWS Secrets Manager: one secret per (domain, selector), never a DynamoDB item.

The secret is named `mailpipe/dkim/<domain>/<selector>` and holds `keys.DkimKey` as JSON. This
naming is a contract: the SES set-up (Bring-Your-Own-DKIM) reads the same secrets, so that a
message carries the same signatures whatever the transport. The outbound function's role may
read `mailpipe/dkim/*` and list secrets (ListSecrets takes no resource scope; it returns names,
never values).

Rotation (`rotate`): new key pairs (one per algorithm the domain signs with now) become
active and the active ones become `retiring`: still in DNS, so mail signed before verifies,
but no longer used. `delete` removes a key; an active one only when asked to (`force`),
since its domain would then go out unsigned or with one signature less.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from mailpipe.dkim_signing.keys import (
    ACTIVE,
    ALGORITHMS,
    ED25519,
    RETIRING,
    RSA,
    DkimKey,
    DkimKeyError,
    check_domain,
    check_selector,
    generate,
)

PREFIX = "mailpipe/dkim/"
# Default selector suffixes: one selector per algorithm, so a receiver finds each key by name.
SUFFIX = {RSA: "r", ED25519: "e"}


def secret_name(domain: str, selector: str) -> str:
    return f"{PREFIX}{check_domain(domain)}/{check_selector(selector)}"


def algorithms(choice: str) -> tuple[str, ...]:
    """`rsa`, `ed25519` or `both` (the CLI's words) as the algorithms to make keys for."""
    table = {"rsa": (RSA,), "ed25519": (ED25519,), "both": (RSA, ED25519)}
    if choice not in table:
        raise DkimKeyError(f"algorithm is rsa, ed25519 or both, not {choice!r}")
    return table[choice]


class KeyStore:
    def __init__(self, secretsmanager: Any) -> None:
        self._sm = secretsmanager

    def keys(self, domain: str | None = None) -> list[DkimKey]:
        """Every stored key of `domain` (or of every domain), by domain then selector."""
        prefix = PREFIX + (check_domain(domain) + "/" if domain else "")
        found = [self._read(name) for name in self._names(prefix)]
        return sorted((key for key in found if key is not None), key=lambda k: (k.domain, k.selector))

    def domains(self) -> set[str]:
        """The domains that have keys, from names alone (one listing, no secret read)."""
        return {name[len(PREFIX) :].rpartition("/")[0] for name in self._names(PREFIX)}

    def _names(self, prefix: str) -> list[str]:
        names: list[str] = []
        paginator = self._sm.get_paginator("list_secrets")
        for page in paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}]):
            # The name filter matches a prefix of words; keep exactly ours.
            names += [s["Name"] for s in page.get("SecretList", []) if s["Name"].startswith(prefix)]
        return sorted(set(names))

    def get(self, domain: str, selector: str) -> DkimKey | None:
        return self._read(secret_name(domain, selector))

    def active(self, domain: str) -> list[DkimKey]:
        return [key for key in self.keys(domain) if key.state == ACTIVE]

    def create(
        self,
        domain: str,
        selector: str | None = None,
        algorithm: str = "both",
        now: datetime | None = None,
    ) -> list[DkimKey]:
        """New active key pair(s) for `domain`; `selector` named (suffixed per algorithm when several)."""
        now = now or datetime.now(UTC)
        wanted = algorithms(algorithm)
        made = []
        for algo in wanted:
            name = self._selector(domain, selector, algo, len(wanted) > 1, now)
            key = generate(domain, name, algo, now)
            try:
                self._sm.create_secret(
                    Name=secret_name(key.domain, key.selector),
                    Description=f"DKIM {algo} key for {key.domain}, selector {key.selector}",
                    SecretString=key.to_json(),
                    Tags=[{"Key": "mailpipe:dkim-domain", "Value": key.domain}],
                )
            except self._sm.exceptions.ResourceExistsException:
                raise DkimKeyError(f"{key.domain} already has a key with selector {key.selector}") from None
            made.append(key)
        return made

    def rotate(self, domain: str, now: datetime | None = None) -> tuple[list[DkimKey], list[DkimKey]]:
        """New keys for the algorithms `domain` signs with now; the old active ones retire. (new, retired)."""
        current = self.active(domain)
        if not current:
            raise DkimKeyError(f"{domain} has no active DKIM key to rotate; make one with keygen")
        now = now or datetime.now(UTC)
        made: list[DkimKey] = []
        for algo in ALGORITHMS:
            if any(key.algorithm == algo for key in current):
                made += self.create(domain, None, "rsa" if algo == RSA else "ed25519", now)
        retired = [self._save(key.with_state(RETIRING)) for key in current]
        return made, retired

    def delete(self, domain: str, selector: str, *, force: bool = False) -> DkimKey:
        key = self.get(domain, selector)
        if key is None:
            raise DkimKeyError(f"no DKIM key {selector} for {domain}")
        if key.state == ACTIVE and not force:
            raise DkimKeyError(f"{selector} of {domain} is active: rotate first (or force)")
        # No recovery window: a deleted selector must be free to be made again at once, and a
        # retired key has no use but verification of old mail, which its DNS record serves.
        self._sm.delete_secret(SecretId=secret_name(domain, selector), ForceDeleteWithoutRecovery=True)
        return key

    # -- helpers

    def _save(self, key: DkimKey) -> DkimKey:
        self._sm.put_secret_value(SecretId=secret_name(key.domain, key.selector), SecretString=key.to_json())
        return key

    def _read(self, name: str) -> DkimKey | None:
        try:
            value = self._sm.get_secret_value(SecretId=name)
        except self._sm.exceptions.ResourceNotFoundException:
            return None
        return DkimKey.from_json(value.get("SecretString", ""))

    def _selector(self, domain: str, given: str | None, algorithm: str, several: bool, now: datetime) -> str:
        """The selector to use: the one given (suffixed when several algorithms share it), or a dated one."""
        if given:
            base = check_selector(given)
            return f"{base}-{SUFFIX[algorithm]}" if several else base
        taken = {key.selector for key in self.keys(domain)}
        stem = f"mp{now:%Y%m%d}"
        return _first_free((f"{stem}{n}{SUFFIX[algorithm]}" for n in _counter()), taken)


def _counter() -> Iterable[str]:
    yield ""
    n = 2
    while True:
        yield f"-{n}"
        n += 1


def _first_free(candidates: Iterable[str], taken: set[str]) -> str:
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: the candidates never end")
