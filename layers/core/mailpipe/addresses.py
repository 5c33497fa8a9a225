"""Mail addresses as the directory sees them: case-insensitive, with subaddressing."""

from __future__ import annotations

from dataclasses import dataclass

SUBADDRESS_SEPARATOR = "+"
MAX_ADDRESS_LENGTH = 254  # RFC 5321 4.5.3.1.3 (path minus the angle brackets)
MAX_LOCAL_PART_LENGTH = 64


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
