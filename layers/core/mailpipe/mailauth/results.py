"""The Authentication-Results header field (RFC 8601) that reports what the checks found."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailpipe.mailauth.arc import ARCResult
from mailpipe.mailauth.dkim_verify import DKIMResult
from mailpipe.mailauth.dmarc import DMARCResult
from mailpipe.mailauth.spf import SPFResult

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+$")


@dataclass(frozen=True)
class Report:
    spf_mailfrom: SPFResult | None
    mail_from: str
    spf_helo: SPFResult | None
    helo: str
    dkim: list[DKIMResult] = field(default_factory=list)
    dmarc: DMARCResult | None = None
    arc: ARCResult | None = None


def value(text: str) -> str:
    """A property value: a token when it can be one, else a quoted-string (RFC 8601 2.2 / RFC 2045)."""
    text = "".join(ch for ch in text if ch >= " " and ch != "\x7f")[:256]
    if text and _TOKEN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    cleaned = "".join(ch if ch >= " " and ch not in "()\\\x7f" else " " for ch in text)[:120].strip()
    return f" ({cleaned})" if cleaned else ""


def header(authserv_id: str, report: Report) -> bytes:
    """The whole field, folded one result per line, ending in CRLF."""
    results: list[str] = []
    if report.spf_mailfrom is not None:
        results.append(f"spf={report.spf_mailfrom.result} smtp.mailfrom={value(report.mail_from)}")
    if report.spf_helo is not None:
        results.append(f"spf={report.spf_helo.result} smtp.helo={value(report.helo)}")
    for sig in report.dkim:
        results.append(
            f"dkim={sig.result}{_comment(sig.reason)} header.d={value(sig.domain or 'unknown')}"
            f" header.s={value(sig.selector or 'unknown')} header.a={value(sig.algorithm or 'unknown')}"
            f" header.b={value(sig.signature or 'none')}"
        )
    if not report.dkim:
        results.append("dkim=none")
    if report.dmarc is not None:
        policy = report.dmarc.policy
        dis = report.dmarc.disposition
        detail = f"p={policy.p} sp={policy.sp} pct={policy.pct} dis={dis}" if policy else ""
        from_domain = report.dmarc.from_domain or "unknown"
        results.append(f"dmarc={report.dmarc.result}{_comment(detail)} header.from={value(from_domain)}")
    if report.arc is not None:
        results.append(f"arc={report.arc.result}")
    body = ";\r\n\t".join([value(authserv_id), *results])
    return f"Authentication-Results: {body}\r\n".encode("utf-8", "replace")
