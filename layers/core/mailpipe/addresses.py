"""Mail addresses as the directory sees them: case-insensitive, with subaddressing."""

from __future__ import annotations

import re
from dataclasses import dataclass

SUBADDRESS_SEPARATOR = "+"
MAX_ADDRESS_LENGTH = 254  # RFC 5321 4.5.3.1.3 (path minus the angle brackets)
MAX_LOCAL_PART_LENGTH = 64
# A host name as DNS and MX records allow it (RFC 1123 2.1): dot-separated letter-digit-hyphen
# labels, none starting or ending with a hyphen, at least two of them, 253 characters at most.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
)


class AddressError(ValueError):
    """The text is not a usable mailbox address."""


@dataclass(frozen=True)
class Address:
    local: str
    domain: str

    @property
    def text(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def base_local(self) -> str:
        """The local part without its `+tag` (bob+lists -> bob)."""
        base, _, _tag = self.local.partition(SUBADDRESS_SEPARATOR)
        return base or self.local

    @property
    def base(self) -> Address:
        return Address(self.base_local, self.domain)

    def __str__(self) -> str:
        return self.text


def parse_address(text: str) -> Address:
    """Parse and normalise `local@domain` (no angle brackets, no display name).

    Local parts are matched case-insensitively (RFC 5321 allows case-sensitive local
    parts, but every mail system users meet treats them case-insensitively), and
    domains are case-insensitive by definition; both are folded to lower case.
    """
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text or len(text) > MAX_ADDRESS_LENGTH:
        raise AddressError("address is empty or too long")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"not an address: {text!r}")
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise AddressError("local part is too long")
    if any(ch.isspace() or ch in "<>" for ch in text):
        raise AddressError(f"not an address: {text!r}")
    domain = domain.rstrip(".").lower()
    if not domain or ".." in domain or domain.startswith("."):
        raise AddressError(f"bad domain in {text!r}")
    return Address(local.casefold() if not local.isascii() else local.lower(), domain)


def normalise_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if not domain or "@" in domain or any(ch.isspace() for ch in domain) or ".." in domain:
        raise AddressError(f"not a domain: {domain!r}")
    return domain


def check_domain_name(domain: str) -> str:
    """The domain normalised, if it is a name mail can be addressed to; else AddressError.

    Stricter than normalise_domain (which only folds what a peer sent, for lookups): a domain
    being added must be a real host name, so `-` or `foo` never become hosted domains.
    Internationalised names are taken in their A-label form (xn--...), as DNS holds them.
    """
    name = normalise_domain(domain)
    if not _HOST_NAME.match(name):
        hint = " (use the xn-- form of an internationalised name)" if not name.isascii() else ""
        raise AddressError(f"not a domain name: {domain.strip()!r}{hint}")
    return name
