"""`mailpipe dkim ...`, `mailpipe dns DOMAIN` and `mailpipe dns check DOMAIN`, run as the command runs,
against the session's moto (keys) and a DNS server on loopback serving what `mailpipe dns` printed."""

from __future__ import annotations

import secrets
from xml.etree import ElementTree

import pytest
from dns_zone import serving
from https_policy_server import PolicyServer

from mailpipe import aws
from mailpipe.dkim_signing.store import KeyStore
from mailpipe_tools.cli import main


@pytest.fixture
def domain(stack) -> str:
    # A name of its own per test: the resolver's cache is shared by the process.
    return f"dns-{secrets.token_hex(4)}.test"


@pytest.fixture
def mx_host(domain) -> str:
    return f"mx.{domain}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def zone_part(output: str) -> str:
    """The zone lines of `mailpipe dns` (before the files to serve)."""
    return output.split("\n\n#", 1)[0] + "\n"


def test_keygen_list_rotate_del(capsys, domain) -> None:
    code, out, _ = run(capsys, "dkim", "keygen", domain, "--selector", "first")
    assert code == 0
    assert f'first-r._domainkey.{domain}. 3600 IN TXT "v=DKIM1; k=rsa; p=' in out
    assert f'first-e._domainkey.{domain}. 3600 IN TXT "v=DKIM1; k=ed25519; p=' in out
    assert "PRIVATE" not in out
    code, out, _ = run(capsys, "dkim", "list", domain)
    assert code == 0 and out.splitlines()[0].split()[:4] == [domain, "first-e", "ed25519-sha256", "active"]
    code, out, _ = run(capsys, "dkim", "rotate", domain)
    assert code == 0 and "retiring first-r" in out and out.count("IN TXT") == 2
    states = {k.selector: k.state for k in KeyStore(aws.client("secretsmanager")).keys(domain)}
    assert states["first-r"] == states["first-e"] == "retiring" and len(states) == 4
    code, out, _ = run(capsys, "dkim", "del", domain, "first-r")
    assert code == 0 and f"remove first-r._domainkey.{domain}" in out
    active = next(s for s, state in states.items() if state == "active")
    code, _, err = run(capsys, "dkim", "del", domain, active)
    assert code == 1 and "is active: rotate first" in err


def test_bad_input_gets_a_clear_answer(capsys, monkeypatch, domain, mx_host) -> None:
    assert run(capsys, "dkim", "keygen", "not a domain")[2].startswith("mailpipe: not a domain name")
    assert (
        run(capsys, "dkim", "rotate", domain)[2]
        == f"mailpipe: {domain} has no active DKIM key to rotate; make one with keygen\n"
    )
    monkeypatch.delenv("MAILPIPE_HOSTNAME", raising=False)  # the dev stack's gateway name
    code, _, err = run(capsys, "dns", domain)
    assert code == 1 and "--mx-host" in err
    code, _, err = run(capsys, "dns", "check", "a", "b", "--mx-host", mx_host)
    assert code == 1 and "usage" in err


def test_dns_prints_every_record_and_check_finds_them(capsys, monkeypatch, tmp_path, domain, mx_host) -> None:
    run(capsys, "dkim", "keygen", domain)
    code, out, _ = run(capsys, "dns", domain, "--mx-host", mx_host, "--outbound-ip", "192.0.2.7")
    assert code == 0
    assert f"{domain}. 3600 IN MX 10 {mx_host}." in out
    assert f'{domain}. 3600 IN TXT "v=spf1 mx ip4:192.0.2.7 ~all"' in out
    assert out.count(f"._domainkey.{domain}. 3600 IN TXT") == 2
    assert f'_dmarc.{domain}. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@{domain}"' in out
    assert f'_mta-sts.{domain}. 3600 IN TXT "v=STSv1; id=' in out
    assert f'_smtp._tls.{domain}. 3600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@{domain}"' in out
    for service, port in (("_submissions", 465), ("_submission", 587), ("_imaps", 993), ("_imap", 143)):
        assert f"{service}._tcp.{domain}. 3600 IN SRV 0 1 {port} {mx_host}." in out
    assert f"_pop3s._tcp.{domain}. 3600 IN SRV 0 1 995 {mx_host}." in out
    assert (
        f"# https://mta-sts.{domain}/.well-known/mta-sts.txt\nversion: STSv1\nmode: testing\nmx: {mx_host}\n"
        in out
    )
    xml = out.split("config-v1.1.xml\n", 1)[1]
    config = ElementTree.fromstring(xml.strip().encode())
    assert config.find("emailProvider/incomingServer[@type='imap']/hostname").text == mx_host
    assert (
        run(capsys, "dns", domain, "--mx-host", mx_host, "--outbound-ip", "192.0.2.7")[1] == out
    )  # stable ids

    policy_file = out.split(".well-known/mta-sts.txt\n", 1)[1].split("\n\n", 1)[0] + "\n"
    zone = zone_part(out) + f"{mx_host}. 3600 IN A 192.0.2.1\nmta-sts.{domain}. 3600 IN A 127.0.0.1\n"
    with serving(zone) as (port, _zone), PolicyServer(tmp_path, f"mta-sts.{domain}") as policy:
        policy.serve(policy_file)
        monkeypatch.setenv("MAILPIPE_DNS_SERVER", f"127.0.0.1:{port}")
        monkeypatch.setenv("MAILPIPE_MTA_STS_CA_FILE", str(policy.cert_file))
        monkeypatch.setenv("MAILPIPE_MTA_STS_PORT", str(policy.port))
        code, out, _ = run(capsys, "dns", "check", domain, "--mx-host", mx_host)
    assert code == 0, out
    assert "PROBLEM" not in out and out.count("ok ") >= 14
    assert f"ok       MTA-STS policy: https://mta-sts.{domain}/.well-known/mta-sts.txt: mode testing" in out


def test_check_says_what_is_missing_or_wrong(capsys, monkeypatch, domain, mx_host) -> None:
    run(capsys, "dkim", "keygen", domain, "--algorithm", "ed25519", "--selector", "k1")
    _, printed, _ = run(capsys, "dns", domain, "--mx-host", mx_host)
    other = KeyStore(aws.client("secretsmanager")).create(f"other-{domain}", algorithm="ed25519")[0]
    kept = [
        line
        for line in zone_part(printed).splitlines()
        if not line.startswith((f"_dmarc.{domain}", f"_imap._tcp.{domain}", f"k1._domainkey.{domain}"))
    ]
    zone = "\n".join(kept) + "\n"
    # The DKIM record publishes a key of another domain; the MX host is an alias.
    zone += f'k1._domainkey.{domain}. 3600 IN TXT "{other.record_value}"\n'
    zone += f"{mx_host}. 3600 IN CNAME web.{domain}.\nweb.{domain}. 3600 IN A 192.0.2.1\n"
    zone += f'{domain}. 3600 IN TXT "v=spf1 -all"\n'.replace("-all", "ip4:192.0.2.9 -all")
    with serving(zone) as (port, _zone):
        monkeypatch.setenv("MAILPIPE_DNS_SERVER", f"127.0.0.1:{port}")
        code, out, err = run(capsys, "dns", "check", domain, "--mx-host", mx_host)
    assert code == 1 and "problem(s)" in err
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    assert any(f"{mx_host} is a CNAME" in line for line in problems)
    assert any("2 records starting 'v=spf1'" in line for line in problems)
    assert any("publishes another key than the stored one" in line for line in problems)
    assert any(f"no TXT record starting 'v=DMARC1' at _dmarc.{domain}" in line for line in problems)
    assert any(f"_imap._tcp.{domain} should point at {mx_host}:143" in line for line in problems)
    assert any(f"mta-sts.{domain} has no address" in line for line in problems)  # no policy host
    assert len(problems) == 6, out


def test_an_spf_record_that_names_none_of_our_senders_is_a_problem(
    capsys, monkeypatch, domain, mx_host
) -> None:
    zone = f'{domain}. 3600 IN TXT "v=spf1 all"\n'
    with serving(zone) as (port, _zone):
        monkeypatch.setenv("MAILPIPE_DNS_SERVER", f"127.0.0.1:{port}")
        code, out, _ = run(capsys, "dns", "check", domain, "--mx-host", mx_host)
    assert code == 1 and "PROBLEM  SPF: SPF 'v=spf1 all' names none of our senders (add mx)" in out


def test_check_of_a_failing_resolver_reports_instead_of_crashing(capsys, monkeypatch, stack) -> None:
    with serving("") as (port, _zone):
        monkeypatch.setenv("MAILPIPE_DNS_SERVER", f"127.0.0.1:{port}")
        code, out, _ = run(capsys, "dns", "check", "x.servfail.test", "--mx-host", "mx.x.test")
    assert code == 1
    assert "PROBLEM  MX: lookup of x.servfail.test MX failed (NoNameservers)" in out


def test_a_policy_file_that_does_not_name_the_mx_is_a_problem(
    capsys, monkeypatch, tmp_path, domain, mx_host
) -> None:
    zone = f"mta-sts.{domain}. 3600 IN A 127.0.0.1\n"
    with serving(zone) as (port, _zone), PolicyServer(tmp_path, f"mta-sts.{domain}") as policy:
        policy.serve("version: STSv1\nmode: enforce\nmx: elsewhere.test\nmax_age: 86400\n")
        monkeypatch.setenv("MAILPIPE_DNS_SERVER", f"127.0.0.1:{port}")
        monkeypatch.setenv("MAILPIPE_MTA_STS_CA_FILE", str(policy.cert_file))
        monkeypatch.setenv("MAILPIPE_MTA_STS_PORT", str(policy.port))
        code, out, _ = run(capsys, "dns", "check", domain, "--mx-host", mx_host)
    assert code == 1
    url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    assert f"PROBLEM  MTA-STS policy: {url} (enforce) does not name {mx_host}" in out
