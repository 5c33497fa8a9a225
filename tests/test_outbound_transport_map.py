"""The transport map: Postfix transport(5) notation and lookup order."""

from __future__ import annotations

import pytest

from mailpipe.outbound.transport_map import (
    MX,
    Route,
    TransportMap,
    TransportMapError,
    parse_route,
)


@pytest.mark.parametrize(
    ("value", "route"),
    [
        ("mx", MX),
        ("MX", MX),
        ("smtp", MX),
        ("smtp:", MX),
        ("ses", Route("ses")),
        ("SES", Route("ses")),
        ("smtp:[127.0.0.1]:2525", Route("smtp", "127.0.0.1", 2525, mx_lookup=False)),
        ("smtp:[relay.example.net]", Route("smtp", "relay.example.net", 25, mx_lookup=False)),
        ("smtp:[Relay.Example.NET.]:587", Route("smtp", "relay.example.net", 587, mx_lookup=False)),
        ("smtp:[relay.example.net]:submission", Route("smtp", "relay.example.net", 587, mx_lookup=False)),
        ("smtp:[relay.example.net]:smtps", Route("smtp", "relay.example.net", 465, mx_lookup=False)),
        ("smtp:[IPv6:2001:db8::1]:2525", Route("smtp", "2001:db8::1", 2525, mx_lookup=False)),
        ("smtp:[2001:DB8::1]", Route("smtp", "2001:db8::1", 25, mx_lookup=False)),
        ("smtp:example.net", Route("smtp", "example.net", 25, mx_lookup=True)),
        ("smtp:example.net:2525", Route("smtp", "example.net", 2525, mx_lookup=True)),
        (":[relay.example.net]:2525", Route("smtp", "relay.example.net", 2525, mx_lookup=False)),
        ("  smtp:[relay.example.net]  ", Route("smtp", "relay.example.net", 25, mx_lookup=False)),
        ("smtp:[bücher.example]", Route("smtp", "xn--bcher-kva.example", 25, mx_lookup=False)),
    ],
)
def test_parse_route(value: str, route: Route) -> None:
    assert parse_route(value) == route


@pytest.mark.parametrize(
    "value",
    [
        "",
        "lmtp:[x]",
        "mx:example.net",
        "ses:eu-west-1",
        "smtp:[relay.example.net",
        "smtp:[relay.example.net]2525",
        "smtp:[relay.example.net]:",
        "smtp:[relay.example.net]:0",
        "smtp:[relay.example.net]:65536",
        "smtp:[relay.example.net]:http",
        "smtp:2001:db8::1",
        "smtp:[2001:db8::zz]",
        "smtp:bad_host!:25",
        "smtp:-bad.example",
    ],
)
def test_parse_route_rejects(value: str) -> None:
    with pytest.raises(TransportMapError):
        parse_route(value)


def test_route_destination_and_notation() -> None:
    assert MX.destination("crepes.fr") == "crepes.fr"
    relay = parse_route("smtp:[relay.example.net]:587")
    assert relay.destination("crepes.fr") == "relay.example.net"
    for text in (
        "mx",
        "ses",
        "smtp:[relay.example.net]:587",
        "smtp:[relay.example.net]",
        "smtp:example.net:2525",
        "smtp:[IPv6:2001:db8::1]:2525",
        "smtp:[127.0.0.1]:2525",
    ):
        assert str(parse_route(text)) == text
        assert parse_route(str(parse_route(text))) == parse_route(text)


def test_exact_domain_only_matches_itself_by_default() -> None:
    table = TransportMap.parse(["example.com=ses"])
    assert table.lookup("example.com") == Route("ses")
    assert table.lookup("bob@Example.COM") == Route("ses")
    assert table.lookup("sub.example.com") == MX
    assert table.lookup("notexample.com") == MX


def test_dot_key_matches_subdomains_not_the_domain() -> None:
    table = TransportMap.parse([".example.com=smtp:[relay]:2525"])
    relay = Route("smtp", "relay", 2525, mx_lookup=False)
    assert table.lookup("a.example.com") == relay
    assert table.lookup("deep.a.example.com") == relay
    assert table.lookup("example.com") == MX
    assert table.lookup("badexample.com") == MX


def test_most_specific_entry_wins() -> None:
    table = TransportMap.parse(
        [
            "*=smtp:[smarthost.example.net]:587",
            ".example.com=ses",
            ".lab.example.com=smtp:[lab-relay]",
            "exact.lab.example.com=mx",
            "example.com=smtp:[hq-relay]",
        ]
    )
    assert str(table.lookup("example.com")) == "smtp:[hq-relay]"
    assert str(table.lookup("www.example.com")) == "ses"
    assert str(table.lookup("x.lab.example.com")) == "smtp:[lab-relay]"
    assert str(table.lookup("lab.example.com")) == "ses"
    assert table.lookup("exact.lab.example.com") == MX
    assert str(table.lookup("alice@elsewhere.org")) == "smtp:[smarthost.example.net]:587"


def test_parent_matches_subdomains_mode() -> None:
    table = TransportMap.parse(
        ["example.com=ses", ".example.com=smtp:[relay]", "a.example.com=mx"],
        parent_matches_subdomains=True,
    )
    assert table.lookup("example.com") == Route("ses")
    assert table.lookup("b.example.com") == Route("ses"), "the bare parent comes before its dot form"
    assert table.lookup("a.example.com") == MX
    assert table.lookup("x.a.example.com") == MX
    assert TransportMap.parse([".example.com=ses"], parent_matches_subdomains=True).lookup(
        "x.example.com"
    ) == (Route("ses"))


def test_keys_are_case_insensitive_and_idna() -> None:
    table = TransportMap.parse(["EXAMPLE.com.=ses", ".Bücher.example=smtp:[relay]"])
    assert table.lookup("example.COM") == Route("ses")
    assert str(table.lookup("shop.BÜCHER.example")) == "smtp:[relay]"
    assert str(table.lookup("bob@shop.xn--bcher-kva.example")) == "smtp:[relay]"


def test_default_without_star_and_with_it() -> None:
    assert TransportMap().lookup("anything.test") == MX
    assert TransportMap(default=Route("ses")).lookup("anything.test") == Route("ses")
    assert TransportMap.parse(["*=ses"], default=MX).lookup("anything.test") == Route("ses")


def test_from_text_and_entries() -> None:
    table = TransportMap.from_text(
        """
        # dev: two stacks delivering to each other
        hamburger.edu=smtp:[127.0.0.1]:2526, crepes.fr=smtp:[127.0.0.1]:2525
        *=ses   # everything else through SES
        """
    )
    assert table.entries() == [
        "hamburger.edu=smtp:[127.0.0.1]:2526",
        "crepes.fr=smtp:[127.0.0.1]:2525",
        "*=ses",
    ]
    assert str(table.lookup("bob@hamburger.edu")) == "smtp:[127.0.0.1]:2526"
    assert TransportMap.from_text("").entries() == ["*=mx"]


@pytest.mark.parametrize(
    "specs",
    [
        ["example.com"],
        ["=ses"],
        ["example.com=ses", "EXAMPLE.COM=mx"],
        ["exa mple.com=ses"],
        ["..example.com=ses"],
        ["example.com=nope"],
    ],
)
def test_bad_maps_are_rejected(specs: list[str]) -> None:
    with pytest.raises(TransportMapError):
        TransportMap.parse(specs)
