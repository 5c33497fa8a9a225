"""DKIM (RFC 6376, RFC 8463 Ed25519): every signature of a message verified, each with its result.

Synchronous and CPU-bound on purpose: it runs in an executor with keys fetched beforehand (keys.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from mailpipe.mailauth.keys import KeyTable, key_name

log = logging.getLogger(__name__)
# dkimpy reports every failed signature at ERROR; that is a remote sender's problem, not ours.
_dkimpy_log = logging.getLogger("mailpipe.mailauth.dkimpy")
_dkimpy_log.setLevel(logging.CRITICAL)

# Signatures verified per message (each hashes the whole body again); later ones get "policy".
MAX_SIGNATURES = 5


@dataclass(frozen=True)
class DKIMResult:
    result: str  # pass, fail, neutral, temperror, permerror, policy (RFC 8601 2.7.1)
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    signature: str  # the start of b=, to tell signatures of one domain apart (RFC 6008)
    reason: str = ""


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace").strip()


def signature_count(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(1 for name, _ in headers if name.lower() == b"dkim-signature")


def verify_all(message: bytes, keys: KeyTable) -> list[DKIMResult]:
    """One result per DKIM-Signature field, topmost first."""
    verifier = dkim.DKIM(message, logger=_dkimpy_log, minkey=1024)
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(fields):
        if index >= MAX_SIGNATURES:
            results.append(_result("policy", value, f"more than {MAX_SIGNATURES} signatures"))
            continue
        results.append(_verify_one(verifier, index, value, keys))
    for outcome in results:
        if outcome.result != "pass":
            log.info(
                "DKIM %s for d=%s s=%s: %s", outcome.result, outcome.domain, outcome.selector, outcome.reason
            )
    return results


def unverifiable(value: bytes, reason: str, result: str = "neutral") -> DKIMResult:
    """A signature left unverified: neutral for a message that could not be read, policy for one
    we decline to read (RFC 8601 2.7.1)."""
    return _result(result, value, reason)


def _result(result: str, value: bytes, reason: str) -> DKIMResult:
    try:
        tags = parse_tag_value(value)
    except InvalidTagValueList:
        tags = {}
    return DKIMResult(
        result,
        _text(tags.get(b"d")).lower(),
        _text(tags.get(b"s")),
        _text(tags.get(b"a")),
        _text(tags.get(b"b")).replace(" ", "").replace("\t", "").replace("\r\n", "")[:12],
        reason,
    )


def _verify_one(verifier: dkim.DKIM, index: int, value: bytes, keys: KeyTable) -> DKIMResult:
    try:
        tags = parse_tag_value(value)
        dkim.validate_signature_fields(tags)
    except (InvalidTagValueList, dkim.DKIMException) as exc:
        return _result("neutral", value, f"unusable signature: {exc}")
    name = key_name(tags) or ""
    if (problem := keys.temperror(name)) is not None:
        return _result("temperror", value, f"key {name}: {problem}")
    try:
        dkim.evaluate_pk(name, keys.dnsfunc(name))
    except dkim.DKIMException as exc:
        return _result("permerror", value, f"key {name}: {exc}")
    try:
        valid = verifier.verify(idx=index, dnsfunc=keys.dnsfunc)
    except dkim.KeyFormatError as exc:
        return _result("permerror", value, str(exc))
    except dkim.DKIMException as exc:
        return _result("fail", value, str(exc))
    except Exception as exc:
        # dkimpy lets some key/signature mismatches escape as the crypto library's own errors
        # (an Ed25519 key named by an RSA signature): a remote problem, never a crash of ours.
        return _result("permerror", value, f"{type(exc).__name__}: {exc}")
    return _result("pass" if valid else "fail", value, "" if valid else "signature did not verify")
