"""The DKIM-Signature header fields for a message about to leave, one per active key of its domain.

Which domain signs: the `From:` domain, so that the signature is aligned for DMARC (RFC 7489
3.1.1). When that domain has no key, its parent domains are tried up to two labels
(`MAILER-DAEMON@mail.example.org` is signed by `example.org`: relaxed alignment still holds).
A message whose domains have no key goes out unsigned, and that is logged once per domain and
process (a log line per message would drown the log of a domain that does not sign on purpose).

What is signed (RFC 6376 5.4.1): the header fields dkimpy's RFC list names that the message
has, every instance; then those of `OVERSIGNED` once more, present or not, so that nobody can
add a second `From:` or a missing `Cc:` after signing ("oversigning", RFC 6376 8.15).
Canonicalisation relaxed/relaxed: it survives the header refolding and whitespace changes
that relays make. No `l=`: a body tag would let anyone append content.

A Secrets Manager that cannot be reached raises (botocore's error): the function then fails the
record and the queue's back-off retries it, rather than the mail going out unsigned.

Keys are read through `KeyStore` and kept for `ttl` seconds, so a busy function asks Secrets
Manager once in a while, not per message, and a rotation takes effect within `ttl`: one listing
says which domains have keys (mail relayed from other domains costs no further call), and a
domain's keys are read when its mail is first signed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import getaddresses

import dkim

from mailpipe.dkim_signing.keys import DkimKey, DkimKeyError, check_domain
from mailpipe.dkim_signing.store import KeyStore

log = logging.getLogger(__name__)

DEFAULT_TTL = 300.0
MAX_LOGGED_DOMAINS = 10_000  # the "logged once" memory of a long-lived process stays bounded
OVERSIGNED = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)


class MessageSigner:
    def __init__(
        self,
        store: KeyStore,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, list[DkimKey]]] = {}
        self._domains: tuple[float, set[str]] | None = None
        self._unsigned_logged: set[str] = set()
        self._lock = threading.Lock()

    def sign(self, message: bytes) -> bytes:
        """`message` with a DKIM-Signature per active key prepended (Ed25519 first), or as it is."""
        domain = author_domain(message)
        keys = self._keys_for(domain) if domain else []
        if not keys:
            self._log_unsigned(domain or "(no From domain)")
            return message
        try:
            fields = [signature(message, key) for key in keys]
        except dkim.DKIMException as exc:
            # A message dkimpy cannot parse (no header/body split, a broken field): it still goes,
            # as it would have without signing; a receiver judges it unsigned.
            log.warning("cannot DKIM-sign a message from %s: %s", domain, exc)
            return message
        return b"".join(fields) + message

    def _keys_for(self, domain: str) -> list[DkimKey]:
        for candidate in _candidates(domain):
            keys = self._cached(candidate)
            if keys:
                # Ed25519 first: RFC 8463 receivers check it, the rest fall back to the RSA one.
                return sorted(keys, key=lambda k: (k.algorithm != "ed25519-sha256", k.selector))
        return []

    def _cached(self, domain: str) -> list[DkimKey]:
        now = self._clock()
        with self._lock:
            listed = self._domains
        if listed is None or now - listed[0] >= self._ttl:
            listed = (now, self._store.domains())
            with self._lock:
                self._domains = listed
        if domain not in listed[1]:
            return []
        with self._lock:
            hit = self._cache.get(domain)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        keys = self._store.active(domain)
        with self._lock:
            self._cache[domain] = (now, keys)
        return keys

    def _log_unsigned(self, domain: str) -> None:
        with self._lock:
            if domain in self._unsigned_logged or len(self._unsigned_logged) >= MAX_LOGGED_DOMAINS:
                return
            self._unsigned_logged.add(domain)
        log.warning(
            "no DKIM key for %s: its mail goes out unsigned (mailpipe dkim keygen %s)", domain, domain
        )


def signature(message: bytes, key: DkimKey) -> bytes:
    """One `DKIM-Signature:` header field (CRLF-terminated) for `message` with `key`."""
    signer = dkim.DKIM(message, linesep=b"\r\n")
    present = [
        name for name, _value in signer.headers if name.lower() in signer.should_sign | set(OVERSIGNED)
    ]
    include = present + list(OVERSIGNED)
    field = signer.sign(
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.signing_key(),
        signature_algorithm=key.algorithm.encode("ascii"),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    return field


def author_domain(message: bytes) -> str | None:
    """The domain of the (first) `From:` address, checked and lower-cased; None when there is none."""
    headers = BytesHeaderParser(policy=SMTP).parsebytes(message, headersonly=True)
    try:
        values = [str(value) for value in headers.get_all("From", [])]
    except (ValueError, TypeError, IndexError):  # a From the email package cannot read at all
        return None
    for _name, address in getaddresses(values):
        domain = address.rpartition("@")[2]
        if domain:
            try:
                return check_domain(domain)
            except DkimKeyError:
                return None
    return None


def _candidates(domain: str) -> list[str]:
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]
