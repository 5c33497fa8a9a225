"""MTA-STS (RFC 8461) for delivery by MX: policies from an HTTPS server on loopback (certificates
trusted through a CA file of the test's own), TXT records and MX from a DNS server on loopback,
mail to an SMTP sink with STARTTLS."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dns_zone import ZoneResolver, serving
from dnslib import RR
from https_policy_server import PolicyServer, bundle, silent_listener
from smtp_sink import SmtpSink

from mailpipe import dns_resolver
from mailpipe.outbound.mta_sts import (
    MtaSts,
    PolicyError,
    parse_policy,
    txt_policy_id,
)
from mailpipe.outbound.smtp_client import DeliveryOptions, Recipient, deliver
from mailpipe.outbound.transport_map import MX, parse_route

MESSAGE = b"From: alice@crepes.fr\r\nTo: bob@remote.test\r\nSubject: sts\r\n\r\nhello\r\n"


def policy_text(mode: str, *mx: str, max_age: int = 86400) -> str:
    return (
        "version: STSv1\r\nmode: "
        + mode
        + "\r\n"
        + "".join(f"mx: {m}\r\n" for m in mx)
        + f"max_age: {max_age}\r\n"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    domain: str
    mx_host: str
    zone: ZoneResolver
    sink: SmtpSink
    policy: PolicyServer
    sts: MtaSts
    clock: Clock
    resolver: object

    def set_txt(self, text: str | None) -> None:
        name = f"_mta-sts.{self.domain}."
        self.zone.records.pop(name, None)
        if text is not None:
            self.zone.records[name] = RR.fromZone(f'{name} 60 IN TXT "{text}"')

    def send(self, route=MX) -> object:
        [result] = deliver(
            MESSAGE,
            "alice@crepes.fr",
            [Recipient(f"bob@{self.domain}")],
            route,
            resolver=self.resolver,
            helo="mail.crepes.fr",
            options=DeliveryOptions(timeout=5, connect_timeout=5, port_override=self.sink.port),
            mta_sts=self.sts,
        )
        return result


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    domain = f"sts-{secrets.token_hex(3)}.test"
    mx_host = f"mx.{domain}"
    with (
        SmtpSink(starttls=True, hostname=mx_host) as sink,
        PolicyServer(tmp_path / "policy", f"mta-sts.{domain}") as policy,
    ):
        zone = f"""
{domain}.            60 IN MX 10 {mx_host}.
{mx_host}.           60 IN A 127.0.0.1
mta-sts.{domain}.    60 IN A 127.0.0.1
_mta-sts.{domain}.   60 IN TXT "v=STSv1; id=first"
"""
        with serving(zone) as (port, resolver_zone):
            resolver = dns_resolver.resolver({"MAILPIPE_DNS_SERVER": f"127.0.0.1:{port}"})
            resolver.cache = None  # the test changes records as it goes
            clock = Clock()
            ca_file = bundle(tmp_path / "ca.pem", sink.cert_file, policy.cert_file)
            sts = MtaSts(resolver, ca_file=ca_file, port=policy.port, timeout=5, clock=clock)
            yield World(domain, mx_host, resolver_zone, sink, policy, sts, clock, resolver)


def test_enforce_delivers_over_verified_tls_to_a_matching_mx(world) -> None:
    world.policy.serve(policy_text("enforce", world.mx_host))
    result = world.send()
    assert result.delivered, result
    assert [t.tls for t in world.sink.transactions] == [True]
    assert world.policy.requests == ["/.well-known/mta-sts.txt"]


def test_enforce_with_a_wildcard_pattern(world) -> None:
    world.policy.serve(policy_text("enforce", f"*.{world.domain}"))
    assert world.send().delivered


def test_enforce_refuses_an_mx_the_policy_does_not_name_temporarily(world) -> None:
    world.policy.serve(policy_text("enforce", f"other.{world.domain}"))
    result = world.send()
    assert result.temporary and result.status.enhanced == "4.7.5"
    assert "matches none of its MX hosts" in result.status.text
    assert world.sink.transactions == [] and world.sink.connections == 0


def test_enforce_refuses_a_certificate_that_does_not_verify(world, tmp_path) -> None:
    world.policy.serve(policy_text("enforce", world.mx_host))
    # Trust the policy host only: the MX's self-signed certificate no longer verifies.
    strict = MtaSts(
        world.resolver,
        ca_file=bundle(tmp_path / "only-policy.pem", world.policy.cert_file),
        port=world.policy.port,
    )
    world.sts = strict
    result = world.send()
    assert result.temporary and result.status.enhanced == "4.7.5"
    assert world.sink.transactions == []  # and no plaintext retry


def test_enforce_refuses_an_mx_without_starttls(world) -> None:
    world.policy.serve(policy_text("enforce", world.mx_host))
    world.sink.starttls = False
    with SmtpSink(hostname=world.mx_host) as plain:
        world.sink = plain
        result = world.send()
    assert result.temporary and result.status.enhanced == "4.7.4"
    assert plain.transactions == []


def test_testing_mode_delivers_and_logs(world, caplog) -> None:
    world.policy.serve(policy_text("testing", f"other.{world.domain}"))
    with caplog.at_level(logging.WARNING, logger="mailpipe.outbound.mta_sts"):
        assert world.send().delivered
    assert f"MTA-STS testing policy of {world.domain}: MX {world.mx_host} would be refused" in caplog.text


def test_no_policy_and_mode_none_change_nothing(world) -> None:
    world.set_txt(None)
    assert world.send().delivered and world.policy.requests == []
    world.set_txt("v=STSv1; id=none1")
    world.policy.serve(policy_text("none"))
    assert world.send().delivered


def test_a_smarthost_route_is_not_subject_to_the_policy(world) -> None:
    world.policy.serve(policy_text("enforce", f"other.{world.domain}"))
    assert world.send(parse_route("smtp:[127.0.0.1]")).delivered
    assert world.policy.requests == []


REFUSING = "version: STSv1\r\nmode: enforce\r\nmx: nowhere.test\r\nmax_age: 86400\r\n"


@pytest.mark.parametrize(
    "status, headers, body",
    [
        (
            301,
            {"Location": "https://elsewhere.test/", "Content-Type": "text/plain"},
            REFUSING,
        ),  # no redirects
        (404, {"Content-Type": "text/plain"}, REFUSING),
        (200, {"Content-Type": "text/html"}, REFUSING),  # wrong media type
        (200, {"Content-Type": "text/plain"}, REFUSING + "x-padding: y\r\n" * 6000),  # over 64 KB
        (200, {"Content-Type": "text/plain"}, REFUSING.replace("STSv1", "STSv2")),  # not a policy
    ],
)
def test_a_policy_that_cannot_be_had_is_no_policy(world, status, headers, body) -> None:
    """Each body would refuse delivery if it were taken as the policy."""
    world.policy.status, world.policy.headers = status, headers
    world.policy.serve(body)
    assert world.send().delivered
    assert len(world.policy.requests) == 1


def test_an_untrusted_policy_host_is_no_policy(world, tmp_path) -> None:
    world.policy.serve(policy_text("enforce", "nowhere.test"))
    world.sts = MtaSts(
        world.resolver, ca_file=bundle(tmp_path / "mx-only.pem", world.sink.cert_file), port=world.policy.port
    )
    assert world.send().delivered


def test_a_stalling_policy_host_is_bounded_and_no_policy(world) -> None:
    with silent_listener() as port:
        world.sts = MtaSts(world.resolver, port=port, timeout=0.5)
        assert world.send().delivered


def test_cached_until_the_id_changes_and_kept_when_lookups_fail(world) -> None:
    world.policy.serve(policy_text("enforce", world.mx_host, max_age=3600))
    assert world.send().delivered
    assert world.send().delivered
    assert len(world.policy.requests) == 1  # same id: the cached policy
    world.policy.serve(policy_text("enforce", f"other.{world.domain}", max_age=3600))
    world.set_txt("v=STSv1; id=second")
    assert world.send().status.enhanced == "4.7.5"  # new id: fetched again
    assert len(world.policy.requests) == 2
    world.set_txt(None)  # the TXT record gone (or blocked): the cached policy still holds
    world.policy.status = 500
    assert world.send().status.enhanced == "4.7.5"
    world.clock.now += 3601  # past max_age, and nothing to fetch: no policy any more
    assert world.send().delivered


def test_policy_and_record_parsing() -> None:
    policy = parse_policy(policy_text("enforce", "mx1.example.net", "*.example.org", max_age=60), "abc")
    assert policy.matches("MX1.example.net.") and policy.matches("a.example.org")
    assert not policy.matches("a.b.example.org") and not policy.matches("example.org")
    for bad in (
        "",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode: sure\nmx: a\nmax_age: 1",
        "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1",
        "no colon here",
    ):
        with pytest.raises(PolicyError):
            parse_policy(bad, "abc")
    assert txt_policy_id(["v=STSv1; id=20261205", "v=spf1 -all"]) == "20261205"
    for texts in ([], ["v=STSv1; id=a", "v=STSv1; id=b"], ["v=STSv1; id=bad-id!"], ["v=STSv1;"]):
        with pytest.raises(PolicyError):
            txt_policy_id(texts)


def test_the_outbound_engine_defers_what_the_policy_refuses(stack, world) -> None:
    """A refusal is temporary: the recipient waits on the retry schedule, nothing bounces."""
    from test_dkim_signing import spooled_message

    from mailpipe import aws
    from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
    from mailpipe.outbound.queue import OutboundQueue
    from mailpipe.outbound.state import DEFERRED, QueueState
    from mailpipe.outbound.transport_map import TransportMap

    world.policy.serve(policy_text("enforce", f"other.{world.domain}"))
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    name = f"outbound-sts-{secrets.token_hex(4)}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    config = OutboundConfig(
        hostname="mail.crepes.fr",
        transports=TransportMap.from_text("*=mx"),
        options=DeliveryOptions(timeout=5, connect_timeout=5, port_override=world.sink.port),
        resolver=world.resolver,
        mta_sts=world.sts,
    )
    engine = OutboundDelivery(
        stack.spool(), QueueState(aws.table(name)), OutboundQueue(sqs, queue_url), config
    )
    message = spooled_message(stack, "alice@crepes.fr", MESSAGE, f"bob@{world.domain}")
    engine.process(message)
    entry = engine.state.entries(message.envelope_id)[f"bob@{world.domain}"]
    assert entry.status == DEFERRED, entry
    assert "MTA-STS policy of" in entry.last_reply
    assert world.sink.transactions == []
    sqs.delete_queue(QueueUrl=queue_url)
    dynamodb.delete_table(TableName=name)
