"""RFC 3464 DSNs: built, parsed back with the `email` package, and compared with real-world bounces."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from conftest import CORPUS

from mailpipe.outbound.dsn import (
    RecipientStatus,
    build_dsn,
    notify_allows,
    should_send_dsn,
    xtext_decode,
    xtext_encode,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ARRIVED = NOW - timedelta(hours=5)

ORIGINAL = (
    b"Received: from [192.0.2.7] (client.crepes.fr [192.0.2.7])\r\n"
    b"\tby mx.crepes.fr with ESMTPSA id 0123ABCD\r\n"
    b"\tfor <bob@hamburger.edu>; Sat, 01 Mar 2025 07:00:00 +0000\r\n"
    b"From: Alice <alice@crepes.fr>\r\n"
    b"To: Bob <bob@hamburger.edu>\r\n"
    b"Subject: " + b"a subject line long enough to be folded by anyone who refolds headers " * 2 + b"\r\n"
    b"Message-ID: <m1@crepes.fr>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Bonjour Bob, une cr\xc3\xaape ?\r\n"
    b"From here on, nothing may change.\r\n"
    b".\r\n"
)
HEADERS = ORIGINAL[: ORIGINAL.index(b"\r\n\r\n") + 2]

PER_MESSAGE_ORDER = ["Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"]
PER_RECIPIENT_ORDER = [
    "Original-Recipient",
    "Final-Recipient",
    "Action",
    "Status",
    "Remote-MTA",
    "Diagnostic-Code",
    "Last-Attempt-Date",
    "Will-Retry-Until",
]


def bounced(address: str = "bob@hamburger.edu", **fields: object) -> RecipientStatus:
    values: dict[str, object] = {
        "status": "5.1.1",
        "original_recipient": f"rfc822;{address}",
        "remote_mta": "mx.hamburger.edu",
        "diagnostic": f"550 5.1.1 <{address}>: Recipient address rejected: User unknown",
        "last_attempt": NOW,
    }
    values.update(fields)
    return RecipientStatus(address, **values)  # type: ignore[arg-type]


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.default)


def parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return payload


def status_blocks(message: Message) -> list[Message]:
    report = next(p for p in parts(message) if p.get_content_type() == "message/delivery-status")
    return parts(report)


def shape(message: Message) -> tuple[str, str | None, list[str]]:
    return (
        message.get_content_type(),
        message.get_param("report-type"),
        [p.get_content_type() for p in parts(message)],
    )


def field_names(block: Message) -> list[str]:
    return [name.lower() for name in block]


def raw_part(data: bytes, index: int) -> bytes:
    """The bytes of the index-th body part (headers and body), cut at the boundaries."""
    boundary = parse(data).get_boundary()
    assert boundary
    chunks = data.split(b"\r\n--" + boundary.encode())
    return chunks[index + 1].split(b"\r\n", 1)[1]


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def test_failure_dsn_structure_and_headers() -> None:
    data = build_dsn(
        ORIGINAL,
        "alice@crepes.fr",
        [bounced()],
        "mx.crepes.fr",
        envid="QQ314159",
        arrival_date=ARRIVED,
        now=NOW,
        from_domain="crepes.fr",
    )
    assert b"\n" not in data.replace(b"\r\n", b""), "CRLF line ends only"
    message = parse(data)
    assert shape(message) == (
        "multipart/report",
        "delivery-status",
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers",
        ],
    )
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@crepes.fr>"
    assert message["From"].addresses[0].addr_spec == "MAILER-DAEMON@crepes.fr"
    assert message["To"].addresses[0].addr_spec == "alice@crepes.fr"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert re.fullmatch(r"<[^<>@\s]+@mx\.crepes\.fr>", message["Message-ID"])
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert not message.defects and all(not p.defects for p in parts(message))

    text = parts(message)[0]
    assert text.get_content_charset() == "us-ascii"
    body = text.get_content()
    assert "mx.crepes.fr" in body
    assert "<bob@hamburger.edu>: host mx.hamburger.edu said: 550 5.1.1" in body
    assert "postmaster@crepes.fr" in body


def test_every_delivery_status_field() -> None:
    data = build_dsn(
        ORIGINAL,
        "alice@crepes.fr",
        [bounced()],
        "mx.crepes.fr",
        envid="QQ314159",
        arrival_date=ARRIVED,
        now=NOW,
        queue_id="0193ABCDEF",
    )
    per_message, recipient = status_blocks(parse(data))
    assert field_names(per_message) == [n.lower() for n in PER_MESSAGE_ORDER] + ["x-mailpipe-queue-id"]
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_message["Reporting-MTA"] == "dns; mx.crepes.fr"
    assert parsedate_to_datetime(per_message["Arrival-Date"]) == ARRIVED
    assert per_message["X-Mailpipe-Queue-ID"] == "0193ABCDEF"

    assert field_names(recipient) == [n.lower() for n in PER_RECIPIENT_ORDER if n != "Will-Retry-Until"]
    assert recipient["Original-Recipient"] == "rfc822; bob@hamburger.edu"
    assert recipient["Final-Recipient"] == "rfc822; bob@hamburger.edu"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == "dns; mx.hamburger.edu"
    assert recipient["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <bob@hamburger.edu>: Recipient address rejected: User unknown"
    )
    assert parsedate_to_datetime(recipient["Last-Attempt-Date"]) == NOW


def test_optional_fields_are_left_out() -> None:
    data = build_dsn(
        ORIGINAL, "alice@crepes.fr", [RecipientStatus("bob@hamburger.edu", "5.0.0")], "mx.crepes.fr"
    )
    per_message, recipient = status_blocks(parse(data))
    assert field_names(per_message) == ["reporting-mta"]
    assert field_names(recipient) == ["final-recipient", "action", "status"]
    assert "status 5.0.0" in parts(parse(data))[0].get_content()


def test_ret_hdrs_returns_the_header_section_byte_for_byte() -> None:
    data = build_dsn(ORIGINAL, "alice@crepes.fr", [bounced()], "mx.crepes.fr", ret="HDRS", now=NOW)
    raw = raw_part(data, 2)
    assert raw.startswith(
        b"Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n"
    )
    assert body_of(raw) == HEADERS
    assert b"Bonjour" not in data
    headers = parts(parse(data))[2]
    assert headers.get_content_type() == "text/rfc822-headers"


def test_ret_full_with_an_8bit_original_returns_it_byte_for_byte() -> None:
    data = build_dsn(ORIGINAL, "alice@crepes.fr", [bounced()], "mx.crepes.fr", ret="full", now=NOW)
    message = parse(data)
    assert shape(message)[2] == ["text/plain", "message/delivery-status", "message/rfc822"]
    assert message["Content-Transfer-Encoding"] == "8bit"
    returned = parts(message)[2]
    assert returned["Content-Transfer-Encoding"] == "8bit"
    assert body_of(raw_part(data, 2)) == ORIGINAL
    inner = returned.get_payload()[0]
    assert inner["Message-ID"] == "<m1@crepes.fr>"
    assert "cr\u00eape" in inner.get_content()
    assert "your message." in parts(message)[0].get_content().replace("\n", " ")


def test_line_ends_of_the_original_become_crlf() -> None:
    lf_only = ORIGINAL.replace(b"\r\n", b"\n")
    data = build_dsn(lf_only, "alice@crepes.fr", [bounced()], "mx.crepes.fr", ret="FULL")
    assert body_of(raw_part(data, 2)) == ORIGINAL
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_ret_full_falls_back_to_headers_when_too_big_or_for_a_delay() -> None:
    too_big = build_dsn(
        ORIGINAL, "alice@crepes.fr", [bounced()], "mx.crepes.fr", ret="FULL", max_full_size=100
    )
    assert shape(parse(too_big))[2][2] == "text/rfc822-headers"
    assert body_of(raw_part(too_big, 2)) == HEADERS
    assert "too large" in parts(parse(too_big))[0].get_content()
    delay = build_dsn(
        ORIGINAL,
        "alice@crepes.fr",
        [bounced(status="4.2.2", will_retry_until=ARRIVED + timedelta(days=5))],
        "mx.crepes.fr",
        ret="FULL",
        kind="delay",
    )
    assert shape(parse(delay))[2][2] == "text/rfc822-headers"


def test_delay_dsn() -> None:
    until = ARRIVED + timedelta(days=5)
    recipient = bounced(
        status="4.2.2",
        diagnostic="452 4.2.2 <bob@hamburger.edu>: Mailbox full",
        will_retry_until=until,
    )
    data = build_dsn(
        ORIGINAL, "alice@crepes.fr", [recipient], "mx.crepes.fr", kind="delay", arrival_date=ARRIVED, now=NOW
    )
    message = parse(data)
    assert message["Subject"] == "Delayed Mail (still being retried)"
    _per_message, block = status_blocks(message)
    assert field_names(block) == [n.lower() for n in PER_RECIPIENT_ORDER]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.2.2"
    assert parsedate_to_datetime(block["Will-Retry-Until"]) == until
    text = " ".join(parts(message)[0].get_content().split())
    assert "warning only" in text
    assert "do not need to send your message again" in text
    assert "Sat, 01 Mar 2025 07:00:00 +0000" in text and "Thu, 06 Mar 2025 07:00:00 +0000" in text


def test_success_dsn_defaults_to_relayed() -> None:
    data = build_dsn(
        ORIGINAL,
        "alice@crepes.fr",
        [RecipientStatus("bob@hamburger.edu", "2.0.0")],
        "mx.crepes.fr",
        kind="success",
    )
    assert status_blocks(parse(data))[1]["Action"] == "relayed"
    explicit = RecipientStatus("bob@hamburger.edu", "2.0.0", action="delivered")
    data = build_dsn(ORIGINAL, "alice@crepes.fr", [explicit], "mx.crepes.fr", kind="success")
    assert status_blocks(parse(data))[1]["Action"] == "delivered"


def test_many_recipients() -> None:
    recipients = [bounced(f"user{n}@hamburger.edu") for n in range(60)]
    recipients.append(
        RecipientStatus(
            "carol@nomail.example",
            "5.1.10",
            diagnostic="Domain nomail.example does not accept mail (null MX)",
            diagnostic_type="X-mailpipe",
        )
    )
    data = build_dsn(ORIGINAL, "alice@crepes.fr", recipients, "mx.crepes.fr")
    blocks = status_blocks(parse(data))
    assert len(blocks) == 1 + len(recipients)
    assert [b["Final-Recipient"] for b in blocks[1:]] == [f"rfc822; {r.final_recipient}" for r in recipients]
    assert blocks[-1]["Diagnostic-Code"] == "X-mailpipe; Domain nomail.example does not accept mail (null MX)"
    assert "Remote-MTA" not in blocks[-1]
    text = parts(parse(data))[0].get_content()
    assert all(f"<{r.final_recipient}>:" in text for r in recipients)


def test_long_multiline_diagnostic_is_folded_and_flattened() -> None:
    reply = (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        "550 5.1.1 unnecessary spaces. https://support.example/answer?id=6596&x=averyveryverylongtoken"
    )
    data = build_dsn(ORIGINAL, "alice@crepes.fr", [bounced(diagnostic=reply)], "mx.crepes.fr")
    raw_status = body_of(raw_part(data, 1))
    assert all(len(line) <= 78 for line in raw_status.split(b"\r\n") if b"https://" not in line)
    block = status_blocks(parse(data))[1]
    assert block["Diagnostic-Code"] == "smtp; " + " ".join(reply.split())


def test_non_ascii_addresses_use_utf8_address_type() -> None:
    recipient = RecipientStatus(
        "j\u00f6rg+list@b\u00fccher.example",
        "5.1.1",
        original_recipient="utf-8;j\u00f6rg+list@b\u00fccher.example",
        diagnostic="550 5.1.1 unknown user j\u00f6rg",
    )
    data = build_dsn(ORIGINAL, "\u00e7a@crepes.fr", [recipient], "mx.crepes.fr")
    message = parse(data)
    assert "To: <\u00e7a@crepes.fr>\r\n".encode() in data, "RFC 6532: UTF-8 header, not an encoded word"
    assert message["Content-Transfer-Encoding"] == "8bit"
    block = status_blocks(message)[1]
    assert block["Final-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}list@b\\x{FC}cher.example"
    assert block["Original-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}list@b\\x{FC}cher.example"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown user j?rg", (
        "delivery-status fields stay ASCII"
    )
    text = parts(message)[0]
    assert text.get_content_charset() == "utf-8"
    assert "j\u00f6rg+list@b\u00fccher.example" in text.get_content()


def test_non_ascii_diagnostic_alone_makes_the_report_8bit() -> None:
    data = build_dsn(
        ORIGINAL, "alice@crepes.fr", [bounced(diagnostic="550 bo\u00eete pleine")], "mx.crepes.fr"
    )
    message = parse(data)
    assert message["Content-Transfer-Encoding"] == "8bit"
    assert parts(message)[0]["Content-Transfer-Encoding"] == "8bit"
    assert "bo\u00eete pleine" in parts(message)[0].get_content()


def test_boundary_does_not_occur_in_the_original() -> None:
    data = build_dsn(ORIGINAL, "alice@crepes.fr", [bounced()], "mx.crepes.fr", ret="FULL")
    boundary = parse(data).get_boundary()
    assert boundary and boundary.endswith("/mx.crepes.fr")
    assert boundary.encode() not in ORIGINAL
    assert data.count(b"--" + boundary.encode()) == 4  # three parts and the close


def test_headerless_and_header_only_originals() -> None:
    no_headers = build_dsn(b"\r\njust a body\r\n", "alice@crepes.fr", [bounced()], "mx.crepes.fr")
    assert body_of(raw_part(no_headers, 2)) == b""
    only_headers = b"Subject: x\r\nFrom: a@crepes.fr\r\n"
    data = build_dsn(only_headers, "alice@crepes.fr", [bounced()], "mx.crepes.fr")
    assert body_of(raw_part(data, 2)) == only_headers


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "bounce"}, "kind"),
        ({"ret": "BODY"}, "ret"),
        ({"recipients": []}, "at least one"),
        ({"envelope_from": "<>"}, "null sender"),
        ({"envelope_from": ""}, "null sender"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "original": ORIGINAL,
        "envelope_from": "alice@crepes.fr",
        "recipients": [bounced()],
        "reporting_mta": "mx.crepes.fr",
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_dsn(**arguments)  # type: ignore[arg-type]


def test_recipient_status_validation() -> None:
    for status in ("550", "5.1", "3.0.0", "5.1.1 x"):
        with pytest.raises(ValueError):
            RecipientStatus("bob@hamburger.edu", status)
    with pytest.raises(ValueError):
        RecipientStatus("bob@hamburger.edu", "5.1.1", action="bounced")


@pytest.mark.parametrize(
    ("sender", "authenticated", "expected"),
    [
        ("alice@crepes.fr", True, True),
        ("alice@crepes.fr", False, False),
        ("", True, False),
        ("<>", True, False),
        (" <> ", True, False),
        (None, True, False),
    ],
)
def test_should_send_dsn(sender: str | None, authenticated: bool, expected: bool) -> None:
    assert should_send_dsn(sender, authenticated) is expected


@pytest.mark.parametrize(
    ("notify", "kind", "expected"),
    [
        (None, "failure", True),
        (None, "delay", True),
        (None, "success", False),
        ("NEVER", "failure", False),
        ("SUCCESS", "success", True),
        ("SUCCESS", "failure", False),
        ("success,failure", "failure", True),
        ("FAILURE", "delay", False),
        ("DELAY,FAILURE", "delay", True),
    ],
)
def test_notify_allows(notify: str | None, kind: str, expected: bool) -> None:
    assert notify_allows(notify, kind) is expected


def test_xtext() -> None:
    assert xtext_encode("bob+tag=1@hamburger.edu") == "bob+2Btag+3D1@hamburger.edu"
    assert xtext_decode("bob+2Btag+3D1@hamburger.edu") == "bob+tag=1@hamburger.edu"
    assert xtext_encode("a b\u00e9") == "a+20b+C3+A9"
    for text in ("QQ314159", "rfc822;bob+x@y.z", "spaces and = signs", "\u00e7a@crepes.fr"):
        assert xtext_decode(xtext_encode(text)) == text


# --- compared with real-world bounces -------------------------------------------------------------

REAL = CORPUS / "multipart_report_emails"


def real(name: str) -> Message:
    path: Path = REAL / name
    if not path.exists():
        pytest.skip(f"corpus file missing: {path}")
    return parse(path.read_bytes())


@pytest.mark.parametrize(
    ("name", "kind", "ret"),
    [
        ("multi_address_bounce1.eml", "failure", "FULL"),  # Postfix, message returned
        ("report_530.eml", "failure", "HDRS"),  # sendmail, headers returned
        ("report_422.eml", "delay", "HDRS"),  # sendmail delay warning
    ],
)
def test_same_shape_as_real_bounces(name: str, kind: str, ret: str) -> None:
    theirs = real(name)
    ours = parse(
        build_dsn(
            ORIGINAL,
            "alice@crepes.fr",
            [
                bounced(
                    status="5.1.1" if kind == "failure" else "4.2.2", will_retry_until=NOW + timedelta(days=4)
                )
            ],
            "mx.crepes.fr",
            kind=kind,
            ret=ret,
            arrival_date=ARRIVED,
            now=NOW,
        )
    )
    assert shape(ours) == shape(theirs)
    their_blocks, our_blocks = status_blocks(theirs), status_blocks(ours)
    # every standard field the real DSN uses, ours has too (their X- extensions and the
    # Received-From-MTA of a relay aside)
    standard = {"received-from-mta"}
    their_message = {f for f in field_names(their_blocks[0]) if not f.startswith("x-")} - standard
    assert their_message <= set(field_names(our_blocks[0]))
    for block in their_blocks[1:]:
        their_fields = {f for f in field_names(block) if not f.startswith("x-")}
        assert their_fields <= set(field_names(our_blocks[1])), their_fields
        assert block["Action"] == our_blocks[1]["Action"]
        assert block["Status"][0] == our_blocks[1]["Status"][0]
    assert theirs["Subject"] and ours["Subject"]
    assert "MAILER-DAEMON@" in str(theirs["From"]) and "MAILER-DAEMON@" in str(ours["From"])


def test_postfix_bounce_reads_like_ours() -> None:
    """The same reading code gets the same kind of answers from a Postfix bounce and from ours."""
    theirs = real("multi_address_bounce1.eml")

    def summary(message: Message) -> list[tuple[str, str, str, str]]:
        return [
            (
                block["Final-Recipient"].split(";", 1)[0].strip().lower(),
                block["Action"],
                block["Status"],
                block["Diagnostic-Code"].split(";", 1)[0].strip().lower(),
            )
            for block in status_blocks(message)[1:]
        ]

    recipients = [
        bounced(str(b["Final-Recipient"]).split(";", 1)[1].strip()) for b in status_blocks(theirs)[1:]
    ]
    ours = parse(build_dsn(ORIGINAL, "alice@crepes.fr", recipients, "mx.crepes.fr", ret="FULL"))
    assert summary(ours) == summary(theirs)
    assert len(recipients) == 5
    assert theirs["Auto-Submitted"] == ours["Auto-Submitted"] == "auto-replied"


def test_broken_real_report_is_not_our_shape() -> None:
    """A real report with two delivery-status parts and no text part: what we must never produce."""
    odd = real("multipart_report_multiple_status.eml")
    assert shape(odd)[2][:2] == ["message/delivery-status", "message/delivery-status"]
    ours = parse(build_dsn(ORIGINAL, "alice@crepes.fr", [bounced()], "mx.crepes.fr"))
    assert shape(ours)[2].count("message/delivery-status") == 1
