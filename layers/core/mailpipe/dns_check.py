"""`mailpipe dns check DOMAIN`: the records of dns_records.py looked up, and what is missing or wrong.

Lookups go through the configured resolver (dns_resolver: MAILPIPE_DNS_SERVER or the system's),
so a check can be pointed at a zone before it is delegated. Each finding is one line a person can
act on; a lookup that fails (SERVFAIL, timeout) is a finding too, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.resolver

from mailpipe.dns_records import CLIENT_SERVICES, DomainSetup
from mailpipe.outbound.mta_sts import FETCH_ERRORS, MtaSts


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"{'ok     ' if self.ok else 'PROBLEM'}  {self.what}: {self.detail}"


class _Lookups:
    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self._resolver = resolver

    def answer(self, name: str, rtype: str) -> tuple[list[object], str | None]:
        """The records (empty when none), and a problem text when the lookup itself failed."""
        try:
            return list(self._resolver.resolve(name.rstrip(".") + ".", rtype)), None
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], None
        except dns.exception.Timeout:
            return [], f"lookup of {name} {rtype} timed out"
        except dns.exception.DNSException as exc:
            return [], f"lookup of {name} {rtype} failed ({type(exc).__name__})"

    def texts(self, name: str) -> tuple[list[str], str | None]:
        records, problem = self.answer(name, "TXT")
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in records], problem  # type: ignore[attr-defined]


def check(
    setup: DomainSetup, resolver: dns.resolver.Resolver, mta_sts: MtaSts | None = None
) -> list[Finding]:
    """Every record's finding; with `mta_sts`, also the policy file, fetched as senders fetch it."""
    lookups = _Lookups(resolver)
    findings: list[Finding] = []
    for step in (_mx, _spf, _dkim, _dmarc, _mta_sts, _tls_rpt, _srv):
        findings += step(setup, lookups)
    if mta_sts is not None:
        findings.append(_policy_file(setup, mta_sts))
    return findings


def _policy_file(setup: DomainSetup, mta_sts: MtaSts) -> Finding:
    url = f"https://mta-sts.{setup.domain}/.well-known/mta-sts.txt"
    try:
        policy = mta_sts.fetch(setup.domain, "check")
    except FETCH_ERRORS as exc:
        return Finding(False, "MTA-STS policy", f"{url}: {exc or type(exc).__name__}")
    if policy.mode != "none" and not policy.matches(setup.mx_host):
        return Finding(False, "MTA-STS policy", f"{url} ({policy.mode}) does not name {setup.mx_host}")
    return Finding(True, "MTA-STS policy", f"{url}: mode {policy.mode}, max_age {policy.max_age}")


def _txt_check(
    lookups: _Lookups, what: str, name: str, prefix: str, extra: Callable[[str], str | None] | None = None
) -> list[Finding]:
    texts, problem = lookups.texts(name)
    if problem:
        return [Finding(False, what, problem)]
    matching = [t for t in texts if t.lower().startswith(prefix.lower())]
    if not matching:
        return [Finding(False, what, f"no TXT record starting {prefix!r} at {name}")]
    if len(matching) > 1:
        return [Finding(False, what, f"{len(matching)} records starting {prefix!r} at {name}: keep one")]
    wrong = extra(matching[0]) if extra else None
    if wrong:
        return [Finding(False, what, wrong)]
    return [Finding(True, what, matching[0])]


def _mx(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    records, problem = lookups.answer(setup.domain, "MX")
    if problem:
        return [Finding(False, "MX", problem)]
    hosts = {rr.exchange.to_text(omit_final_dot=True).lower() for rr in records}  # type: ignore[attr-defined]
    want = setup.mx_host.lower()
    if want not in hosts:
        shown = ", ".join(sorted(hosts)) or "none"
        return [Finding(False, "MX", f"{setup.domain} MX should name {want} (found: {shown})")]
    findings = [Finding(True, "MX", f"{setup.domain} -> {want}")]
    cname, _ = lookups.answer(want, "CNAME")
    if cname:
        findings.append(Finding(False, "MX host", f"{want} is a CNAME; an MX must name A/AAAA records"))
    else:
        addresses = [rr for rtype in ("A", "AAAA") for rr in lookups.answer(want, rtype)[0]]
        findings.append(Finding(bool(addresses), "MX host", f"{want} has {len(addresses)} A/AAAA record(s)"))
    return findings


def _spf(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    def covers(text: str) -> str | None:
        mechanisms = [term.lstrip("+").lower() for term in text.split()[1:]]
        ours = [
            m
            for m in mechanisms
            if m in ("mx", "a") or m.startswith(("mx:", "mx/", "a:", "a/", "ip4:", "ip6:", "include:"))
        ]
        if not ours:
            return f"SPF {text!r} names none of our senders (add mx)"
        return None

    return _txt_check(lookups, "SPF", setup.domain, "v=spf1", covers)


def _dkim(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    if not setup.dkim_keys:
        return [
            Finding(False, "DKIM", f"no key stored for {setup.domain}: mailpipe dkim keygen {setup.domain}")
        ]
    findings = []
    for key in setup.dkim_keys:
        texts, problem = lookups.texts(key.record_name)
        if problem:
            findings.append(Finding(False, f"DKIM {key.selector}", problem))
            continue
        tags = [_tags(text) for text in texts if "p=" in text]
        if not tags:
            findings.append(Finding(False, f"DKIM {key.selector}", f"no TXT record at {key.record_name}"))
        elif any(t.get("p") == key.public_key and t.get("k", "rsa") == key.key_type for t in tags):
            findings.append(Finding(True, f"DKIM {key.selector}", f"{key.record_name} ({key.state})"))
        else:
            findings.append(
                Finding(
                    False,
                    f"DKIM {key.selector}",
                    f"{key.record_name} publishes another key than the stored one",
                )
            )
    return findings


def _dmarc(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    def policy(text: str) -> str | None:
        tags = _tags(text)
        if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
            return f"DMARC {text!r} has no valid p= tag"
        return None

    return _txt_check(lookups, "DMARC", f"_dmarc.{setup.domain}", "v=DMARC1", policy)


def _mta_sts(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    def has_id(text: str) -> str | None:
        return None if _tags(text).get("id") else f"MTA-STS {text!r} has no id="

    return _txt_check(lookups, "MTA-STS", f"_mta-sts.{setup.domain}", "v=STSv1", has_id)


def _tls_rpt(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    return _txt_check(lookups, "TLS-RPT", f"_smtp._tls.{setup.domain}", "v=TLSRPTv1")


def _srv(setup: DomainSetup, lookups: _Lookups) -> list[Finding]:
    findings = []
    for service, port in CLIENT_SERVICES:
        name = f"{service}.{setup.domain}"
        records, problem = lookups.answer(name, "SRV")
        if problem:
            findings.append(Finding(False, service, problem))
            continue
        targets = {
            (rr.target.to_text(omit_final_dot=True).lower(), int(rr.port))  # type: ignore[attr-defined]
            for rr in records
        }
        ok = (setup.mx_host.lower(), port) in targets
        detail = (
            f"{name} -> {setup.mx_host}:{port}" if ok else f"{name} should point at {setup.mx_host}:{port}"
        )
        findings.append(Finding(ok, service, detail))
    return findings


def _tags(text: str) -> dict[str, str]:
    """A tag-list (DKIM, DMARC, MTA-STS TXT): `k=v; k=v`, whitespace removed from values."""
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags
