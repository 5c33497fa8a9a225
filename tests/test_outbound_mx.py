"""MX lookup against a real DNS server on loopback (dnslib), never the system's resolver."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import dns.resolver
import pytest
from dns_zone import ZoneResolver, serving
from dnslib import RR, DNSLabel, DNSRecord

from mailpipe.outbound.mx import (
    DnsTemporaryFailure,
    DomainNotFound,
    InvalidDomain,
    MailLoopsBack,
    NoReachableHost,
    NullMX,
    Target,
    resolve_targets,
)
from mailpipe.outbound.status import DeliveryError, PermanentFailure, TemporaryFailure

ZONE = """
order.test.          60 IN MX 20 mx2.order.test.
order.test.          60 IN MX 10 mx1.order.test.
order.test.          60 IN MX 30 mx3.order.test.
mx1.order.test.      60 IN A 192.0.2.1
mx2.order.test.      60 IN A 192.0.2.2
mx2.order.test.      60 IN AAAA 2001:db8::2
mx3.order.test.      60 IN A 192.0.2.3

equal.test.          60 IN MX 10 a.equal.test.
equal.test.          60 IN MX 10 b.equal.test.
equal.test.          60 IN MX 10 c.equal.test.
equal.test.          60 IN MX 20 z.equal.test.
a.equal.test.        60 IN A 192.0.2.11
b.equal.test.        60 IN A 192.0.2.12
c.equal.test.        60 IN A 192.0.2.13
z.equal.test.        60 IN A 192.0.2.19

dup.test.            60 IN MX 30 mx.dup.test.
dup.test.            60 IN MX 10 MX.dup.test.
mx.dup.test.         60 IN A 192.0.2.40

nomx.test.           60 IN A 192.0.2.10
nomx.test.           60 IN AAAA 2001:db8::10

v6only.test.         60 IN AAAA 2001:db8::20
v6mx.test.           60 IN MX 10 mx.v6mx.test.
mx.v6mx.test.        60 IN AAAA 2001:db8::21

nullmx.test.         60 IN MX 0 .
nullmx.test.         60 IN A 192.0.2.50
mixednull.test.      60 IN MX 0 .
mixednull.test.      60 IN MX 10 mx.mixednull.test.
mx.mixednull.test.   60 IN A 192.0.2.51

ghost.test.          60 IN MX 10 nowhere.ghost.test.
ghost.test.          60 IN MX 20 noaddr.ghost.test.
noaddr.ghost.test.   60 IN TXT "a name without addresses"
partial.test.        60 IN MX 10 nowhere.partial.test.
partial.test.        60 IN MX 20 real.partial.test.
real.partial.test.   60 IN A 192.0.2.60
brokenmx.test.       60 IN MX 10 host.servfail.test.

cname.test.          60 IN MX 10 alias.cname.test.
alias.cname.test.    60 IN CNAME real.cname.test.
real.cname.test.     60 IN A 192.0.2.30
real.cname.test.     60 IN AAAA 2001:db8::30
aliased.test.        60 IN CNAME order.test.

empty.test.          60 IN TXT "exists, accepts nothing"

loop.test.           60 IN MX 5 primary.loop.test.
loop.test.           60 IN MX 10 me.loop.test.
loop.test.           60 IN MX 10 peer.loop.test.
loop.test.           60 IN MX 20 backup.loop.test.
primary.loop.test.   60 IN A 192.0.2.70
me.loop.test.        60 IN A 192.0.2.71
peer.loop.test.      60 IN A 192.0.2.72
backup.loop.test.    60 IN A 192.0.2.73
onlyme.test.         60 IN MX 10 me.loop.test.
"""


@pytest.fixture(scope="module")
def dns_server() -> Iterator[tuple[int, ZoneResolver]]:
    with serving(ZONE) as served:
        yield served


def make_resolver(port: int, lifetime: float = 3.0) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.timeout = lifetime
    resolver.lifetime = lifetime
    return resolver


@pytest.fixture
def resolver(dns_server: tuple[int, ZoneResolver]) -> dns.resolver.Resolver:
    return make_resolver(dns_server[0])


def test_mx_in_preference_order_with_all_addresses(resolver: dns.resolver.Resolver) -> None:
    targets = resolve_targets("order.test", resolver)
    assert targets == [
        Target("mx1.order.test", 10, ("192.0.2.1",)),
        Target("mx2.order.test", 20, ("192.0.2.2", "2001:db8::2")),
        Target("mx3.order.test", 30, ("192.0.2.3",)),
    ]


def test_domain_is_case_insensitive_and_may_end_with_a_dot(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("ORDER.Test.", resolver) == resolve_targets("order.test", resolver)


def test_ip_versions_choose_families_and_their_order(resolver: dns.resolver.Resolver) -> None:
    targets = resolve_targets("order.test", resolver, ip_versions=(6, 4))
    assert targets[1].addresses == ("2001:db8::2", "192.0.2.2")
    only_v4 = resolve_targets("order.test", resolver, ip_versions=(4,))
    assert only_v4[1].addresses == ("192.0.2.2",)
    with pytest.raises(ValueError):
        resolve_targets("order.test", resolver, ip_versions=(5,))


def test_equal_preferences_are_shuffled_and_stay_ahead_of_worse_ones(resolver: dns.resolver.Resolver) -> None:
    seen: set[tuple[str, ...]] = set()
    for seed in range(40):
        targets = resolve_targets("equal.test", resolver, rng=random.Random(seed))
        hosts = tuple(t.host for t in targets)
        assert sorted(hosts[:3]) == ["a.equal.test", "b.equal.test", "c.equal.test"]
        assert hosts[3] == "z.equal.test"
        assert [t.preference for t in targets] == [10, 10, 10, 20]
        seen.add(hosts[:3])
    assert len(seen) > 1, "equal preferences should not always come out in the same order"


def test_shuffle_follows_the_injected_rng(resolver: dns.resolver.Resolver) -> None:
    first = resolve_targets("equal.test", resolver, rng=random.Random(7))
    again = resolve_targets("equal.test", resolver, rng=random.Random(7))
    assert first == again


def test_the_same_host_twice_keeps_its_best_preference(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("dup.test", resolver) == [Target("mx.dup.test", 10, ("192.0.2.40",))]


def test_no_mx_falls_back_to_the_domains_own_addresses(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("nomx.test", resolver) == [
        Target("nomx.test", 0, ("192.0.2.10", "2001:db8::10"), implicit=True)
    ]


def test_aaaa_only_domain_and_aaaa_only_mx_host(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("v6only.test", resolver) == [
        Target("v6only.test", 0, ("2001:db8::20",), implicit=True)
    ]
    assert resolve_targets("v6mx.test", resolver) == [Target("mx.v6mx.test", 10, ("2001:db8::21",))]
    with pytest.raises(NoReachableHost):
        resolve_targets("v6mx.test", resolver, ip_versions=(4,))


def test_null_mx_fails_permanently_without_a_fallback(
    dns_server: tuple[int, ZoneResolver], resolver: dns.resolver.Resolver
) -> None:
    zone = dns_server[1]
    zone.queries.clear()
    with pytest.raises(NullMX) as caught:
        resolve_targets("nullmx.test", resolver)
    error = caught.value
    assert (error.code, error.enhanced) == (556, "5.1.10")
    assert error.permanent and isinstance(error, PermanentFailure)
    assert "nullmx.test" in error.text
    assert str(error) == f"556 5.1.10 {error.text}"
    assert zone.queries == [("nullmx.test.", "MX")], "a null MX must not lead to an A lookup"


def test_a_null_mx_among_real_ones_is_ignored(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("mixednull.test", resolver) == [Target("mx.mixednull.test", 10, ("192.0.2.51",))]


def test_nxdomain_is_permanent(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(DomainNotFound) as caught:
        resolve_targets("no-such-domain.test", resolver)
    assert (caught.value.code, caught.value.enhanced) == (550, "5.1.2")
    assert caught.value.permanent


def test_a_domain_without_mx_or_address_is_permanent(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(DomainNotFound) as caught:
        resolve_targets("empty.test", resolver)
    assert caught.value.enhanced == "5.1.2"


def test_servfail_is_temporary(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        resolve_targets("servfail.test", resolver)
    error = caught.value
    assert (error.code, error.enhanced) == (451, "4.4.3")
    assert not error.permanent and isinstance(error, TemporaryFailure)


def test_timeout_is_temporary() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = make_resolver(silent.getsockname()[1], lifetime=0.3)
        with pytest.raises(DnsTemporaryFailure) as caught:
            resolve_targets("order.test", resolver)
        assert caught.value.enhanced == "4.4.3"
        assert "timed out" in caught.value.text
    finally:
        silent.close()


def test_mx_hosts_without_address_are_skipped(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("partial.test", resolver) == [Target("real.partial.test", 20, ("192.0.2.60",))]


def test_no_mx_host_with_an_address_is_temporary(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(NoReachableHost) as caught:
        resolve_targets("ghost.test", resolver)
    assert (caught.value.code, caught.value.enhanced) == (451, "4.4.4")
    assert "nowhere.ghost.test" in caught.value.text


def test_mx_host_whose_lookup_fails_is_a_dns_failure(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        resolve_targets("brokenmx.test", resolver)
    assert caught.value.enhanced == "4.4.3"
    assert "host.servfail.test" in caught.value.text


def test_cname_mx_host_and_cname_domain(resolver: dns.resolver.Resolver) -> None:
    assert resolve_targets("cname.test", resolver) == [
        Target("alias.cname.test", 10, ("192.0.2.30", "2001:db8::30"))
    ]
    assert [t.host for t in resolve_targets("aliased.test", resolver)] == [
        "mx1.order.test",
        "mx2.order.test",
        "mx3.order.test",
    ]


def test_local_host_drops_itself_and_worse_exchangers(resolver: dns.resolver.Resolver) -> None:
    targets = resolve_targets("loop.test", resolver, local_hosts=["ME.loop.test."])
    assert [t.host for t in targets] == ["primary.loop.test"]
    with pytest.raises(MailLoopsBack) as caught:
        resolve_targets("onlyme.test", resolver, local_hosts=["me.loop.test"])
    assert (caught.value.code, caught.value.enhanced) == (554, "5.4.6")


def test_address_literals_need_no_dns() -> None:
    unused = make_resolver(9)  # discard port: any query would time out
    assert resolve_targets("[192.0.2.9]", unused) == [Target("192.0.2.9", 0, ("192.0.2.9",), implicit=True)]
    assert resolve_targets("[IPv6:2001:db8::9]", unused)[0].addresses == ("2001:db8::9",)
    with pytest.raises(InvalidDomain):
        resolve_targets("[not-an-ip]", unused)


def test_invalid_domain_is_permanent(resolver: dns.resolver.Resolver) -> None:
    for bad in ("", "a..b", "x" * 64 + ".test"):
        with pytest.raises(InvalidDomain) as caught:
            resolve_targets(bad, resolver)
        assert caught.value.permanent and caught.value.enhanced == "5.1.3"


def test_every_failure_is_a_delivery_error_with_a_status(resolver: dns.resolver.Resolver) -> None:
    for domain in ("nullmx.test", "nope.test", "servfail.test", "ghost.test"):
        with pytest.raises(DeliveryError) as caught:
            resolve_targets(domain, resolver)
        status = caught.value.status
        assert status.reply.startswith(f"{status.code} {status.enhanced} ")


def test_root_label_is_what_a_null_mx_points_to() -> None:
    # guard for the fixture itself: dnslib must encode "." as the root, not as a label named "."
    rr = RR.fromZone("x.test. 60 IN MX 0 .")[0]
    assert rr.rdata.label == DNSLabel(".")
    assert DNSRecord.parse(DNSRecord(rr=[rr]).pack()).rr[0].rdata.label.label == ()
