"""DMARC (RFC 7489): does an aligned SPF or DKIM pass vouch for the From: domain, and if not, what
does the domain ask receivers to do?

Organizational domains come from the Public Suffix List through `publicsuffixlist`: maintained,
released with each list update, and it ships the list inside the package, so no download at run time
(the gateway and the Lambda layer have no business fetching it from the network).
"""

from __future__ import annotations

import functools
import logging
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from mailpipe.mailauth.dns import Lookup, TempError

log = logging.getLogger(__name__)

POLICIES = ("none", "quarantine", "reject")
_TAG = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Policy:
    domain: str  # where the record was found (the From domain or its organizational domain)
    p: str
    sp: str
    pct: int
    adkim: str
    aspf: str


@dataclass(frozen=True)
class DMARCResult:
    result: str  # pass, fail, none, temperror, permerror (RFC 8601 2.7.1 via RFC 7489 11.2)
    from_domain: str
    policy: Policy | None = None
    # What the domain's policy asks of this message after pct= sampling: none, quarantine, reject
    # (with result temperror: what it would ask if the pending check failed too).
    disposition: str = "none"
    reason: str = ""


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # parses the bundled list once per process


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (the domain itself when it is a suffix)."""
    domain = domain.rstrip(".").lower()
    return _suffixes().privatesuffix(domain) or domain


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    identifier, from_domain = identifier.rstrip(".").lower(), from_domain.rstrip(".").lower()
    if mode == "s":
        return identifier == from_domain
    return organizational_domain(identifier) == organizational_domain(from_domain)


class InvalidRecord(ValueError):
    pass


def parse_record(text: str, domain: str) -> Policy:
    """A DMARC record's tags (RFC 7489 6.3); InvalidRecord when it cannot be used."""
    tags: dict[str, str] = {}
    for index, part in enumerate(text.split(";")):
        if not part.strip():
            continue
        match = _TAG.match(part)
        if not match:
            raise InvalidRecord(f"bad tag {part.strip()[:40]!r}")
        name, value = match.group(1).lower(), match.group(2)
        if index == 0 and (name != "v" or value != "DMARC1"):
            raise InvalidRecord("v=DMARC1 must come first")
        tags.setdefault(name, value)
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        # 6.6.3: a record without a valid p= but with rua= is p=none; otherwise it is no record.
        if "rua" in tags:
            p = "none"
        else:
            raise InvalidRecord(f"bad or missing p= ({tags.get('p', '')[:20]!r})")
    sp = tags.get("sp", p).lower()
    if sp not in POLICIES:
        sp = p
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError as exc:
        raise InvalidRecord(f"bad pct= {tags['pct'][:20]!r}") from exc
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    if adkim not in ("r", "s") or aspf not in ("r", "s"):
        raise InvalidRecord("adkim= and aspf= take r or s")
    return Policy(domain, p, sp, pct, adkim, aspf)


class DMARCChecker:
    def __init__(self, lookup: Lookup, sample: Callable[[], int] | None = None) -> None:
        self._lookup = lookup
        # A number in 0..99 per message, compared with pct= (6.6.4).
        self._sample = sample or (lambda: random.randrange(100))

    async def _record(self, domain: str) -> str | None:
        texts = await self._lookup.txt(f"_dmarc.{domain}")
        records = [
            t.decode("ascii", "replace") for t in texts or [] if re.match(rb"^\s*v\s*=\s*DMARC1\s*(;|$)", t)
        ]
        # 6.6.3: more than one record is as good as none.
        return records[0] if len(records) == 1 else None

    async def policy(self, from_domain: str) -> tuple[str, Policy | None, str]:
        """(outcome, policy, reason) where outcome is found, none, temperror or permerror."""
        organizational = organizational_domain(from_domain)
        for domain in dict.fromkeys([from_domain, organizational]):
            try:
                text = await self._record(domain)
            except TempError as exc:
                return "temperror", None, str(exc)
            if text is None:
                continue
            try:
                return "found", parse_record(text, domain), ""
            except InvalidRecord as exc:
                return "permerror", None, f"_dmarc.{domain}: {exc}"
        return "none", None, "no DMARC record"

    async def check(
        self,
        from_domain: str,
        spf: tuple[str, str],
        dkim: Iterable[tuple[str, str]],
    ) -> DMARCResult:
        """`spf` is (result, domain) for the identity SPF checked; `dkim` (result, d=) per signature."""
        from_domain = from_domain.rstrip(".").lower()
        outcome, policy, reason = await self.policy(from_domain)
        if policy is None:
            if outcome != "none":
                log.info("DMARC %s for %s: %s", outcome, from_domain, reason)
            return DMARCResult(outcome, from_domain, reason=reason)
        spf_ok = spf[0] == "pass" and aligned(spf[1], from_domain, policy.aspf)
        dkim_ok = any(r == "pass" and aligned(d, from_domain, policy.adkim) for r, d in dkim)
        if spf_ok or dkim_ok:
            how = "DKIM" if dkim_ok else "SPF"
            return DMARCResult("pass", from_domain, policy, reason=f"aligned {how} pass")
        requested = policy.p if policy.domain == from_domain else policy.sp
        disposition = requested
        if requested != "none" and self._sample() >= policy.pct:
            # 6.6.4: messages outside the sample get the next policy down.
            disposition = "quarantine" if requested == "reject" else "none"
        # An aligned identifier that could not be checked for now might have passed (6.6.2):
        # the result is temperror, and the policy is the caller's to defer, not to apply.
        unsure = (spf[0] == "temperror" and aligned(spf[1], from_domain, policy.aspf)) or any(
            r == "temperror" and aligned(d, from_domain, policy.adkim) for r, d in dkim
        )
        return DMARCResult(
            "temperror" if unsure else "fail",
            from_domain,
            policy,
            disposition,
            f"no aligned pass{' (an aligned check failed for now)' if unsure else ''};"
            f" policy {requested}, pct={policy.pct}",
        )
