"""Address headers parsed once per warm process (jmap/parsed.py): the same answer every time, each
caller's copy its own, and a header too long to keep parsed the same way."""

from __future__ import annotations

from mailpipe.jmap import parsed


def test_a_kept_parse_gives_each_caller_its_own_copy() -> None:
    raw = '"Sender, Example" <sender@remote.test>, Friends: a@remote.test, b@remote.test;'
    first = parsed.as_grouped_addresses(raw)
    assert first == [
        {"name": None, "addresses": [{"name": "Sender, Example", "email": "sender@remote.test"}]},
        {
            "name": "Friends",
            "addresses": [{"name": None, "email": "a@remote.test"}, {"name": None, "email": "b@remote.test"}],
        },
    ]
    first[0]["addresses"][0]["name"] = "changed by a caller"
    first[1]["addresses"].clear()
    again = parsed.as_grouped_addresses(raw)
    assert again[0]["addresses"][0]["name"] == "Sender, Example" and len(again[1]["addresses"]) == 2
    assert parsed.as_addresses(raw) == [a for g in again for a in g["addresses"]]


def test_long_and_broken_headers_parse_as_before() -> None:
    many = ", ".join(f"Person {n} <p{n}@remote.test>" for n in range(80))
    assert len(many) > parsed.MAX_KEPT_ADDRESS_HEADER
    assert [a["email"] for a in parsed.as_addresses(many)] == [f"p{n}@remote.test" for n in range(80)]
    assert parsed.as_addresses("<<<@@@>>>") == parsed.as_addresses("<<<@@@>>>")
    assert parsed.as_addresses("") == []
