"""Helpers for the authentication tests: resolvers on the loopback DNS server, keys, signing."""

from __future__ import annotations

import base64

import dns.asyncresolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dns_zone import txt_strings

from mailpipe import dns_resolver
from mailpipe.mailauth.dns import Lookup


def resolver_at(port: int, lifetime: float | None = None) -> dns.asyncresolver.Resolver:
    """The shared resolver's configuration, pointed at a test server, without the shared cache
    (each test's zone says different things about the same names)."""
    resolver = dns_resolver.async_resolver({"MAILPIPE_DNS_SERVER": f"127.0.0.1:{port}"})
    resolver.cache = None
    if lifetime is not None:
        resolver.lifetime = lifetime
        resolver.timeout = lifetime
    return resolver


def lookup_at(port: int, lifetime: float | None = None) -> Lookup:
    return Lookup(resolver_at(port, lifetime))


class RSAKey:
    def __init__(self, bits: int = 2048) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
        self.algorithm = b"rsa-sha256"


class Ed25519Key:
    def __init__(self) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.private = base64.b64encode(seed)
        self.record = f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
        self.algorithm = b"ed25519-sha256"


def key_record(selector: str, domain: str, key: RSAKey | Ed25519Key) -> str:
    return f"{selector}._domainkey.{domain}. 60 IN TXT {txt_strings(key.record)}\n"
