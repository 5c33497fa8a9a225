"""Every DNS record a hosted domain needs, ready to paste into a zone (`mailpipe dns DOMAIN`).

- MX at the gateway's host name. That name must have A/AAAA records of its own (an ALIAS at the
  apex is fine), never a CNAME: RFC 2181 10.3 forbids an MX pointing at an alias, and some
  senders refuse one.
- SPF (RFC 7208): `mx` (the gateway's addresses), the outbound addresses given, SES's include
  when SES sends; `~all` so that a forgotten sender is marked rather than refused at first.
- DKIM: one TXT per stored key (active and retiring: mail signed with a retiring key must still
  verify).
- DMARC (RFC 7489): `p=none` with aggregate reports to the postmaster, the place to start; raise
  it to quarantine or reject once the reports show only mail that passes.
- MTA-STS (RFC 8461): the `_mta-sts` TXT with a policy id, and the policy file to serve at
  `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, in `testing` mode to start.
- TLS-RPT (RFC 8460): reports of TLS failures to the postmaster.
- Client set-up: RFC 6186 SRV records (and RFC 8314's `_submissions`), and the autoconfig XML
  Thunderbird fetches from `https://autoconfig.DOMAIN/mail/config-v1.1.xml`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from mailpipe.dkim_signing.keys import DkimKey

TTL = 3600
MTA_STS_MAX_AGE = 604800  # one week: RFC 8461 3.2 suggests weeks once the policy is settled
# RFC 6186 service, port; the first of a kind is what clients should prefer.
CLIENT_SERVICES = (
    ("_submissions._tcp", 465),
    ("_submission._tcp", 587),
    ("_imaps._tcp", 993),
    ("_imap._tcp", 143),
    ("_pop3s._tcp", 995),
)


@dataclass(frozen=True)
class Record:
    name: str  # absolute, no final dot
    rtype: str
    value: str  # for TXT, the text as one string (split on output)
    note: str = ""

    def zone_line(self) -> str:
        if self.rtype == "TXT":
            parts = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
            data = " ".join('"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in parts)
        else:
            data = self.value
        return f"{self.name}. {TTL} IN {self.rtype} {data}"


@dataclass(frozen=True)
class DomainSetup:
    """What `mailpipe dns` needs to know: the domain, the gateway's name, the keys, who sends."""

    domain: str
    mx_host: str
    dkim_keys: list[DkimKey] = field(default_factory=list)
    outbound_ips: list[str] = field(default_factory=list)
    ses: bool = False

    @property
    def report_address(self) -> str:
        return f"postmaster@{self.domain}"


def spf_value(setup: DomainSetup) -> str:
    terms = ["v=spf1", "mx"]
    terms += [f"ip6:{ip}" if ":" in ip else f"ip4:{ip}" for ip in setup.outbound_ips]
    if setup.ses:
        terms.append("include:amazonses.com")
    return " ".join([*terms, "~all"])


def mta_sts_policy(setup: DomainSetup, mode: str = "testing") -> str:
    """The policy file's contents (RFC 8461 3.2: CRLF or LF lines, key: value)."""
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {setup.mx_host}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n"


def records(setup: DomainSetup) -> list[Record]:
    domain, host = setup.domain, setup.mx_host
    # The id changes exactly when the policy does (RFC 8461 3.1), so re-running the command is idempotent.
    policy_id = hashlib.sha256(mta_sts_policy(setup).encode()).hexdigest()[:20]
    found = [
        Record(domain, "MX", f"10 {host}.", f"{host} needs A/AAAA records, never a CNAME"),
        Record(domain, "TXT", spf_value(setup), "SPF"),
    ]
    found += [
        Record(key.record_name, "TXT", key.record_value, f"DKIM {key.algorithm}, {key.state}")
        for key in setup.dkim_keys
    ]
    found += [
        Record(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua=mailto:{setup.report_address}", "DMARC"),
        Record(
            f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={policy_id}", "MTA-STS; change id= with the policy"
        ),
        Record(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:{setup.report_address}", "TLS-RPT"),
    ]
    found += [
        Record(f"{service}.{domain}", "SRV", f"0 1 {port} {host}.", "client autoconfiguration (RFC 6186)")
        for service, port in CLIENT_SERVICES
    ]
    return found


def autoconfig_xml(setup: DomainSetup) -> str:
    """Thunderbird's autoconfig file (served at https://autoconfig.DOMAIN/mail/config-v1.1.xml)."""
    domain, host = escape(setup.domain), escape(setup.mx_host)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <displayName>{domain}</displayName>
    <incomingServer type="imap">
      <hostname>{host}</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>{host}</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{host}</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


def render(setup: DomainSetup) -> str:
    """The whole `mailpipe dns` output: zone lines with notes, then the files to serve."""
    lines = [f"; DNS records for {setup.domain} (paste into its zone)"]
    for record in records(setup):
        if record.note:
            lines.append(f"; {record.note}")
        lines.append(record.zone_line())
    if not setup.dkim_keys:
        lines.append(f"; no DKIM key stored: mailpipe dkim keygen {setup.domain}")
    lines.append(
        f"; mta-sts.{setup.domain} and autoconfig.{setup.domain} need A/AAAA (or CNAME) to a web host"
    )
    lines += [
        "",
        f"# https://mta-sts.{setup.domain}/.well-known/mta-sts.txt",
        mta_sts_policy(setup).replace("\r\n", "\n"),
    ]
    lines += [f"# https://autoconfig.{setup.domain}/mail/config-v1.1.xml", autoconfig_xml(setup)]
    return "\n".join(lines)
