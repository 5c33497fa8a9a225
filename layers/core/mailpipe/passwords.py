"""Password hashing: argon2id (t=3, 64 MiB, one lane), computed by libsodium through PyNaCl.

libsodium's argon2 is the optimised one (SIMD BLAKE2b rounds): the same hash costs ~90 ms of
CPU there against ~150 ms in the reference implementation that argon2-cffi binds, and every
IMAP, POP3 and SMTP AUTH login pays it. libsodium only takes hashes with one lane (p=1); the
hashes mailpipe made before with argon2-cffi's defaults have four, so those are still checked
by argon2-cffi, and replaced at the user's next good login (`needs_rehash`).
"""

from __future__ import annotations

import re
import threading

import nacl.exceptions
import nacl.pwhash
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TIME_COST = 3
MEMORY_COST = 64 * 1024 * 1024  # bytes

# What libsodium verifies: argon2id, version 19, one lane.
_LIBSODIUM_HASH = re.compile(r"^\$argon2id\$v=19\$m=\d+,t=\d+,p=1\$")
_CURRENT_PARAMETERS = f"$argon2id$v=19$m={MEMORY_COST // 1024},t={TIME_COST},p=1$"
_LEGACY = PasswordHasher()  # argon2-cffi's defaults, which earlier hashes were made with


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("empty password")
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=TIME_COST, memlimit=MEMORY_COST).decode()


# Verified against when the user does not exist, so that a wrong user name costs
# the same time as a wrong password and does not reveal which accounts exist. Made on first use,
# not at import: every function imports this module (through the directory), and only the
# gateways check passwords; an argon2 hash at import is ~0.1 s of CPU and 64 MiB added to every
# Lambda cold start (bench/cold_import.py). The lock makes concurrent first logins (the gateways'
# thread pool) compute it once.
_dummy_hash: str | None = None
_dummy_lock = threading.Lock()


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        with _dummy_lock:
            if _dummy_hash is None:
                _dummy_hash = hash_password("mailpipe-no-such-user")
    return _dummy_hash


# How many hashes this process has verified: what shows that a login answered from the gateways'
# cache of verified credentials (mailpipe/auth/cache.py) cost no argon2id check (tests,
# bench/imap.py). Counted under a lock: the gateways verify on several executor threads.
_verified = 0
_verified_lock = threading.Lock()


def verifications() -> int:
    """Password hashes verified in this process so far."""
    return _verified


def verify_password(stored_hash: str | None, password: str) -> bool:
    global _verified
    with _verified_lock:
        _verified += 1
    candidate = stored_hash or _dummy()
    if _LIBSODIUM_HASH.match(candidate):
        try:
            ok = nacl.pwhash.argon2id.verify(candidate.encode(), password.encode())
        except nacl.exceptions.CryptoError:  # a wrong password, or a malformed hash
            return False
    else:
        try:
            ok = _LEGACY.verify(candidate, password)
        except (VerificationError, InvalidHashError):
            return False
    return ok and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    """True for a hash made otherwise than hash_password makes them now."""
    return not stored_hash.startswith(_CURRENT_PARAMETERS)
