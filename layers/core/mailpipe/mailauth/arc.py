"""ARC (RFC 8617): the chain of custody intermediaries added, verified with dkimpy.

Synchronous like dkim_verify.py: it runs in an executor with keys fetched beforehand (keys.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim

from mailpipe.mailauth.keys import KeyTable

log = logging.getLogger(__name__)
_dkimpy_log = logging.getLogger("mailpipe.mailauth.dkimpy")

# Each set's ARC-Message-Signature hashes the whole body again; RFC 8617 allows 50 sets, real
# chains have a few, and 50 hashes of a 40 MB body is minutes of a thread.
MAX_SETS = 10


@dataclass(frozen=True)
class ARCResult:
    result: str  # none, pass, fail (RFC 8617 4.4)
    instances: int  # how many ARC sets the message carries
    reason: str = ""


def verify_chain(message: bytes, keys: KeyTable) -> ARCResult:
    verifier = dkim.ARC(message, logger=_dkimpy_log, minkey=1024)
    seals = sum(1 for name, _ in verifier.headers if name.lower() == b"arc-seal")
    if seals > MAX_SETS:
        log.info("ARC fail: %d sets, more than the %d verified", seals, MAX_SETS)
        return ARCResult("fail", seals, f"more than {MAX_SETS} ARC sets")
    try:
        cv, results, reason = verifier.verify(dnsfunc=keys.dnsfunc)
    except dkim.DKIMException as exc:
        cv, results, reason = dkim.CV_Fail, [], str(exc)
    # None: an earlier hop already recorded cv=fail, so the chain is over: a failure for us too.
    result = {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")
    if result == "fail":
        log.info("ARC fail: %s", reason)
    return ARCResult(result, len(results), "" if result == "pass" else str(reason))
