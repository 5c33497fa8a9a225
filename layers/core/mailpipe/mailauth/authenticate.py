"""All the checks for one message, in the order DMARC needs them: SPF and DKIM (and ARC), then DMARC.

DNS waits on the event loop (asyncio resolver); CPU work (parsing, hashing a body of up to 40 MB,
signature arithmetic) goes to the executor through `run`, so no message can stall the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import dns.asyncresolver

from mailpipe.mailauth import arc, dkim_verify, keys
from mailpipe.mailauth.dmarc import DMARCChecker, DMARCResult
from mailpipe.mailauth.dns import Lookup
from mailpipe.mailauth.headers import from_domains, header_fields
from mailpipe.mailauth.results import Report
from mailpipe.mailauth.spf import SPFChecker, SPFResult, valid_domain

log = logging.getLogger(__name__)

T = TypeVar("T")


class Authenticator:
    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        executor: Executor | None = None,
        *,
        sample: Callable[[], int] | None = None,
    ) -> None:
        lookup = Lookup(resolver)
        self._lookup = lookup
        self._spf = SPFChecker(lookup)
        self._dmarc = DMARCChecker(lookup, sample)
        self._executor = executor

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(function, *args)
        )

    async def check(self, message: bytes, *, client_ip: str, helo: str, mail_from: str) -> Report:
        helo_domain = helo.strip().rstrip(".").lower()
        helo_check = self._spf.check(client_ip, helo_domain, f"postmaster@{helo_domain}", helo)
        if mail_from:
            mail_domain = mail_from.rpartition("@")[2].lower()
            mailfrom_check = self._spf.check(client_ip, mail_domain, mail_from, helo)
            spf_helo, spf_mailfrom, signed = await asyncio.gather(
                helo_check, mailfrom_check, self._signatures(message)
            )
        else:
            spf_helo, signed = await asyncio.gather(helo_check, self._signatures(message))
            # RFC 7208 2.4: a null reverse-path is checked as postmaster@<HELO domain>.
            spf_mailfrom = spf_helo
        dkim_results, arc_result, fields = signed
        # RFC 7489 4.1: SPF's identity for DMARC is MAIL FROM, or HELO when MAIL FROM is null.
        spf_identity = (spf_mailfrom.result, spf_mailfrom.domain)
        dmarc = await self._check_dmarc(fields, spf_identity, dkim_results)
        return Report(
            spf_mailfrom=spf_mailfrom,
            mail_from=mail_from or f"postmaster@{helo_domain}",
            spf_helo=spf_helo if valid_domain(helo_domain) else SPFResult("none", helo_domain),
            helo=helo,
            dkim=dkim_results,
            dmarc=dmarc,
            arc=arc_result,
        )

    async def _signatures(
        self, message: bytes
    ) -> tuple[list[dkim_verify.DKIMResult], arc.ARCResult, list[tuple[bytes, bytes]]]:
        fields, names, header_size = await self._run(_prepare, message)
        if not any(name.lower() in keys.SIGNATURE_FIELDS for name, _ in fields):
            return [], arc.ARCResult("none", 0), fields  # nothing to hash: skip the executor
        if header_size > MAX_VERIFIED_HEADER:
            log.info(
                "DKIM/ARC: header block of %d bytes not verified (limit %d)", header_size, MAX_VERIFIED_HEADER
            )
            return (*_unverified(fields, f"header block over {MAX_VERIFIED_HEADER} bytes"), fields)
        table = await keys.fetch(self._lookup, names)
        dkim_results, arc_result = await self._run(_verify, message, table)
        return dkim_results, arc_result, fields

    async def _check_dmarc(
        self,
        fields: list[tuple[bytes, bytes]],
        spf: tuple[str, str],
        dkim_results: list[dkim_verify.DKIMResult],
    ) -> DMARCResult:
        domains = sorted({_a_label(domain) for domain in from_domains(fields)})[:MAX_FROM_DOMAINS]
        if not domains:
            return DMARCResult("none", "", reason="no From: address")
        invalid = [domain for domain in domains if not valid_domain(domain)]
        if invalid:
            log.info("DMARC permerror: invalid From: domain %r", invalid[0][:100])
            return DMARCResult("permerror", invalid[0][:100], reason="invalid From: domain")
        signatures = [(r.result, r.domain) for r in dkim_results]
        # Concurrently: a slow DNS costs one lookup lifetime per level, not one per domain.
        results = await asyncio.gather(*(self._dmarc.check(domain, spf, signatures) for domain in domains))
        # 6.6.1: several author domains. Each is evaluated and the strictest outcome stands, or
        # a second address in From: would carry a forged one past its domain's p=reject.
        return max(results, key=_severity)


# dkimpy joins a field's folded lines one at a time, quadratic in their number (a 3.5 MB field of
# 100,000 lines takes it 18 s). Postfix cuts header blocks at 100 KB (header_size_limit), so no
# sender can count on more being verified; past this the signatures get "policy".
MAX_VERIFIED_HEADER = 256 * 1024
MAX_FROM_DOMAINS = 5  # From: domains evaluated per message (each costs up to two lookups)
_DISPOSITIONS = {"none": 0, "quarantine": 1, "reject": 2}
_RESULTS = {"pass": 0, "none": 1, "permerror": 2, "temperror": 3, "fail": 4}


def _severity(result: DMARCResult) -> tuple[int, int]:
    return _DISPOSITIONS.get(result.disposition, 0), _RESULTS.get(result.result, 0)


def _a_label(domain: str) -> str:
    """An internationalized From: domain in the form DNS knows it (its DMARC record is there)."""
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain  # not a valid name: reported as an invalid From: domain


def _prepare(message: bytes) -> tuple[list[tuple[bytes, bytes]], list[str], int]:
    fields, rest = header_fields(message)
    names = keys.key_names([(name, raw.partition(b":")[2]) for name, raw in fields])
    return fields, names, len(message) - len(rest)


def _unverified(
    fields: list[tuple[bytes, bytes]], reason: str, result: str = "policy"
) -> tuple[list[dkim_verify.DKIMResult], arc.ARCResult]:
    """Every signature reported as `result`; ARC fails when there is a chain to fail."""
    signatures = [
        dkim_verify.unverifiable(raw.partition(b":")[2], reason, result)
        for name, raw in fields
        if name.lower() == b"dkim-signature"
    ]
    names = {name.lower() for name, _ in fields}
    chain = "fail" if {b"arc-seal", b"arc-message-signature"} & names else "none"
    return signatures, arc.ARCResult(chain, 0, reason)


def _verify(message: bytes, table: keys.KeyTable) -> tuple[list[dkim_verify.DKIMResult], arc.ARCResult]:
    try:
        return dkim_verify.verify_all(message, table), arc.verify_chain(message, table)
    except Exception as exc:  # a header block dkimpy cannot parse: nothing verifiable
        log.info("DKIM/ARC: unparsable message: %s", exc)
        fields, _ = header_fields(message)
        return _unverified(fields, f"unparsable message: {exc}", "neutral")
