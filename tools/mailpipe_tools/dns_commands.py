"""`mailpipe dkim ...` and `mailpipe dns ...`: the sub-commands for signing keys and a domain's DNS.

The work is in the core (dkim_signing.store, dns_records, dns_check); this module only parses
arguments and prints. Keys are read from and written to Secrets Manager wherever boto3 points
(the dev stack after `source .mailpipe/dev.env`, or an AWS account).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mailpipe import aws, dns_resolver
from mailpipe.config import ENV_HOSTNAME, ConfigError
from mailpipe.dkim_signing.keys import DkimKey, DkimKeyError, check_domain
from mailpipe.dkim_signing.store import KeyStore
from mailpipe.dns_check import check
from mailpipe.dns_records import DomainSetup, render
from mailpipe.outbound.mta_sts import MtaSts


def register(commands: Any) -> None:
    """Adds `dkim` and `dns` to the `mailpipe` parser's sub-commands."""
    dkim = commands.add_parser("dkim", help="DKIM signing keys (Secrets Manager)").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = dkim.add_parser("keygen", help="make and store key pair(s); prints the DNS records")
    p.add_argument("domain")
    p.add_argument("--selector", help="default: mpYYYYMMDD with r (RSA) or e (Ed25519)")
    p.add_argument("--algorithm", choices=["rsa", "ed25519", "both"], default="both")
    p.set_defaults(run=_keygen)
    p = dkim.add_parser("list", help="stored keys and their state")
    p.add_argument("domain", nargs="?")
    p.set_defaults(run=_list)
    p = dkim.add_parser("rotate", help="new keys sign; the old ones retire (still published)")
    p.add_argument("domain")
    p.set_defaults(run=_rotate)
    p = dkim.add_parser("del", help="delete a key (a retiring one, or --force)")
    p.add_argument("domain")
    p.add_argument("selector")
    p.add_argument("--force", action="store_true", help="also an active key")
    p.set_defaults(run=_delete)

    dns = commands.add_parser("dns", help="the DNS records a domain needs, or `dns check DOMAIN`")
    dns.add_argument("words", nargs="+", metavar="DOMAIN | check DOMAIN")
    dns.add_argument("--mx-host", help=f"the gateway's public name (default: ${ENV_HOSTNAME})")
    dns.add_argument("--outbound-ip", action="append", default=[], help="an address mail leaves from (SPF)")
    dns.add_argument("--ses", action="store_true", help="SES sends for the domain (SPF include)")
    dns.set_defaults(run=_dns)


def _store() -> KeyStore:
    return KeyStore(aws.client("secretsmanager"))


def _print_keys(keys: list[DkimKey]) -> None:
    for key in keys:
        print(f"; {key.algorithm} selector {key.selector} ({key.state}, created {key.created})")
        print(key.zone_line())


def _keygen(args: argparse.Namespace) -> int:
    keys = _store().create(args.domain, args.selector, args.algorithm)
    _print_keys(keys)
    print(f"; stored as mailpipe/dkim/{keys[0].domain}/<selector> in Secrets Manager; publish the records")
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = _store().keys(args.domain)
    for key in keys:
        print(f"{key.domain}  {key.selector}  {key.algorithm}  {key.state}  {key.created}")
    if not keys:
        print("no DKIM keys" + (f" for {args.domain}" if args.domain else ""))
    return 0


def _rotate(args: argparse.Namespace) -> int:
    made, retired = _store().rotate(args.domain)
    print("; new keys, signing from now on (within the signer's cache time): publish these now")
    _print_keys(made)
    for key in retired:
        print(f"; retiring {key.selector}: keep its record published until mail signed with it is old")
    return 0


def _delete(args: argparse.Namespace) -> int:
    key = _store().delete(args.domain, args.selector, force=args.force)
    print(f"deleted {key.selector} of {key.domain}; remove {key.record_name} TXT from DNS")
    return 0


def _dns(args: argparse.Namespace) -> int:
    words = args.words
    checking = words[0] == "check" and len(words) == 2
    if len(words) != 1 and not checking:
        raise ValueError("usage: mailpipe dns DOMAIN | mailpipe dns check DOMAIN")
    domain = check_domain(words[-1])
    host = args.mx_host or os.environ.get(ENV_HOSTNAME)
    if not host:
        raise ConfigError(f"say which host receives the mail: --mx-host NAME (or set {ENV_HOSTNAME})")
    setup = DomainSetup(
        domain=domain,
        mx_host=check_domain(host),
        dkim_keys=_store().keys(domain),
        outbound_ips=args.outbound_ip,
        ses=args.ses,
    )
    if not checking:
        print(render(setup))
        return 0
    resolver = dns_resolver.resolver()
    findings = check(setup, resolver, MtaSts.from_env(resolver))
    for finding in findings:
        print(finding.line())
    problems = sum(not f.ok for f in findings)
    print(
        f"{problems} problem(s)" if problems else "all records in place",
        file=sys.stderr if problems else sys.stdout,
    )
    return 1 if problems else 0


__all__ = ["DkimKeyError", "register"]
