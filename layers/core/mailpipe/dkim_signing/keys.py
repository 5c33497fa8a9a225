"""One DKIM key pair as mailpipe stores it, and the DNS TXT record that publishes it.

A key is stored as a JSON object (the contract the SES set-up shares, see store.py):
`domain`, `selector`, `algorithm` (`rsa-sha256` or `ed25519-sha256`), `private_key` (PEM),
`public_key` (the base64 of the `p=` tag), `created` (ISO time) and `state` (`active` keys
sign; `retiring` keys stay published so that mail already sent still verifies, but sign no
more); RSA keys also carry `private_key_base64`, the form SES Bring-Your-Own-DKIM reads.

RSA keys are 2048 bits (RFC 8301 asks for at least 1024, and large receivers for 2048) and
stored as PKCS#1 PEM, which both dkimpy and SES Bring-Your-Own-DKIM read. Ed25519 keys
(RFC 8463) are stored as PKCS#8 PEM; their `p=` is the raw 32-byte public key, not a
SubjectPublicKeyInfo as for RSA.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
ALGORITHMS = (RSA, ED25519)
ACTIVE = "active"
RETIRING = "retiring"
STATES = (ACTIVE, RETIRING)
RSA_BITS = 2048
# A DNS TXT record is made of strings of at most 255 octets each (RFC 1035 3.3.14).
TXT_STRING = 255

# A selector is a DNS label sequence (RFC 6376 3.1); kept to letters, digits, '-' and '.' so it
# is also a valid part of a Secrets Manager name.
_SELECTOR = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


class DkimKeyError(ValueError):
    """A key, selector or domain that cannot be used, with a message for the person who gave it."""


def check_domain(domain: str) -> str:
    """The domain in the form keys are stored under (lower case, ASCII, no final dot), or DkimKeyError."""
    text = domain.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise DkimKeyError(f"not a domain name: {domain!r}") from exc
    if not _DOMAIN.match(text):
        raise DkimKeyError(f"not a domain name: {domain!r}")
    return text


def check_selector(selector: str) -> str:
    if len(selector) > 63 or not _SELECTOR.match(selector):
        raise DkimKeyError(f"not a selector (letters, digits, '-', dot-separated labels): {selector!r}")
    return selector.lower()


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str
    private_key: str
    public_key: str
    created: str
    state: str = ACTIVE

    def __repr__(self) -> str:
        # The private key never appears in a log line or a traceback.
        return f"DkimKey({self.domain!r}, {self.selector!r}, {self.algorithm!r}, state={self.state!r})"

    __str__ = __repr__

    @property
    def key_type(self) -> str:
        """The `k=` tag of the DNS record."""
        return "rsa" if self.algorithm == RSA else "ed25519"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record_value(self) -> str:
        """The TXT record's text, as one string (DNS splits it, see `record_strings`)."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key}"

    def record_strings(self) -> list[str]:
        """The text in pieces of at most 255 characters, as a TXT record must carry a 2048-bit key."""
        value = self.record_value
        return [value[i : i + TXT_STRING] for i in range(0, len(value), TXT_STRING)]

    def zone_line(self) -> str:
        """The record in master-file form, ready to paste into a zone."""
        strings = " ".join(f'"{part}"' for part in self.record_strings())
        return f"{self.record_name}. 3600 IN TXT {strings}"

    def with_state(self, state: str) -> DkimKey:
        if state not in STATES:
            raise DkimKeyError(f"state is one of {STATES}, not {state!r}")
        return replace(self, state=state)

    def signing_key(self) -> bytes:
        """The private key in the form dkimpy takes: PKCS#1 PEM for RSA, the base64 raw seed for Ed25519."""
        if self.algorithm == RSA:
            return self.private_key.encode("ascii")
        loaded = serialization.load_pem_private_key(self.private_key.encode("ascii"), password=None)
        assert isinstance(loaded, ed25519.Ed25519PrivateKey)
        raw = loaded.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(raw)

    def to_json(self) -> str:
        stored = asdict(self)
        if self.algorithm == RSA:
            # What SES Bring-Your-Own-DKIM takes (template.yaml reads it at deploy time): the
            # key as base64 DER, the PEM's body without its armour lines and line breaks.
            stored["private_key_base64"] = "".join(
                line for line in self.private_key.splitlines() if not line.startswith("-----")
            )
        return json.dumps(stored)

    @classmethod
    def from_json(cls, text: str) -> DkimKey:
        try:
            data: dict[str, Any] = json.loads(text)
            key = cls(**{name: str(data[name]) for name in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError) as exc:
            raise DkimKeyError(f"not a stored DKIM key: {type(exc).__name__}") from None
        if key.algorithm not in ALGORITHMS or key.state not in STATES:
            raise DkimKeyError(f"stored DKIM key has algorithm {key.algorithm!r}, state {key.state!r}")
        return key


def generate(domain: str, selector: str, algorithm: str, now: datetime | None = None) -> DkimKey:
    """A new key pair for `domain` and `selector`, active."""
    domain, selector = check_domain(domain), check_selector(selector)
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    if algorithm == RSA:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif algorithm == ED25519:
        private_ed = ed25519.Ed25519PrivateKey.generate()
        pem = private_ed.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = private_ed.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        raise DkimKeyError(f"algorithm is one of {ALGORITHMS}, not {algorithm!r}")
    return DkimKey(
        domain=domain,
        selector=selector,
        algorithm=algorithm,
        private_key=pem.decode("ascii"),
        public_key=base64.b64encode(public).decode("ascii"),
        created=created,
    )
