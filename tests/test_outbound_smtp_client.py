"""The SMTP delivery engine against a real aiosmtpd server on loopback (tests/smtp_sink.py).

MX lookups go to a real DNS server on loopback (dnslib) whose zone points exchangers at
127.0.0.1, where a sink listens, and at 127.0.0.2, where nothing does.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import dns.resolver
import pytest
from dnslib import RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from smtp_sink import DROP, HANG, SmtpSink

from mailpipe.outbound.dsn import build_dsn
from mailpipe.outbound.smtp_client import (
    MAX_REPLY_TEXT,
    DeliveryOptions,
    DsnParams,
    Recipient,
    RecipientResult,
    data_payload,
    deliver,
)
from mailpipe.outbound.transport_map import Route, parse_route

HELO = "out.sender.test"
SENDER = "alice@sender.test"
MESSAGE = (
    b"From: Alice <alice@sender.test>\r\n"
    b"To: Bob <bob@dest.test>\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b".a line that starts with a dot\r\n"
    b".\r\n"
    b"..two dots\r\n"
    b"bye\r\n"
)
EIGHT_BIT = "From: a@sender.test\r\nSubject: caf\u00e9\r\n\r\nD\u00e9j\u00e0 vu, \u00fcber alles\r\n".encode()
TIMEOUT = 1.0

ZONE = """
fallback.test.       60 IN MX 10 dead.fallback.test.
fallback.test.       60 IN MX 20 live.fallback.test.
dead.fallback.test.  60 IN A 127.0.0.2
live.fallback.test.  60 IN A 127.0.0.1
alldead.test.        60 IN MX 10 a.alldead.test.
alldead.test.        60 IN MX 20 b.alldead.test.
a.alldead.test.      60 IN A 127.0.0.2
b.alldead.test.      60 IN A 127.0.0.3
backup.test.         60 IN MX 10 primary.backup.test.
backup.test.         60 IN MX 20 secondary.backup.test.
primary.backup.test. 60 IN A 127.0.0.1
secondary.backup.test. 60 IN A 127.0.0.2
nomx.test.           60 IN A 127.0.0.1
nullmx.test.         60 IN MX 0 .
relay.test.          60 IN A 127.0.0.1
"""


class Zone(BaseResolver):
    """Exact-match answers from ZONE; NXDOMAIN for any other name."""

    def __init__(self) -> None:
        self.records: dict[str, list[RR]] = {}
        for rr in RR.fromZone(ZONE):
            self.records.setdefault(str(rr.rname).lower(), []).append(rr)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        records = self.records.get(str(request.q.qname).lower())
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
        for rr in records or []:
            if rr.rtype == request.q.qtype:
                reply.add_answer(rr)
        return reply


@pytest.fixture(scope="module")
def resolver() -> Iterator[dns.resolver.Resolver]:
    server = DNSServer(Zone(), address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply,-truncated"))
    server.start_thread()
    try:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = server.server.server_address[1]
        resolver.lifetime = resolver.timeout = 3.0
        yield resolver
    finally:
        server.stop()
        server.server.server_close()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def options(**overrides: object) -> DeliveryOptions:
    settings: dict[str, object] = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "tls": "opportunistic"}
    settings.update(overrides)
    return DeliveryOptions(**settings)  # type: ignore[arg-type]


def send(
    sink: SmtpSink,
    *addresses: str,
    message: bytes = MESSAGE,
    sender: str = SENDER,
    route: Route | None = None,
    **overrides: object,
) -> list[RecipientResult]:
    recipients = [Recipient(a) for a in addresses or ("bob@dest.test",)]
    return deliver(
        message,
        sender,
        recipients,
        route or parse_route(sink.nexthop),
        resolver=None,
        helo=HELO,
        options=options(**overrides),
    )


def codes(results: list[RecipientResult]) -> list[tuple[str, int, str]]:
    return [(r.address, r.status.code, r.status.enhanced) for r in results]


# --- the message and the envelope as they arrive


def test_delivers_the_bytes_exactly(sink: SmtpSink) -> None:
    [result] = send(sink)
    assert result.delivered and result.status.code == 250
    assert (result.remote_mta, result.diagnostic_type) == ("127.0.0.1", "smtp")
    assert result.status.reply == "250 2.0.0 Ok: queued"
    [transaction] = sink.transactions
    assert transaction.data == MESSAGE
    assert (transaction.mail_from, transaction.rcpt_tos, transaction.helo) == (
        SENDER,
        ["bob@dest.test"],
        HELO,
    )
    assert transaction.mail_params == {"SIZE": str(len(MESSAGE))}


def test_a_message_without_final_crlf_gets_one(sink: SmtpSink) -> None:
    send(sink, message=MESSAGE + b"no newline at the end")
    assert sink.transactions[0].data == MESSAGE + b"no newline at the end\r\n"


def test_eight_bit_message_goes_with_body_8bitmime(sink: SmtpSink) -> None:
    [result] = send(sink, message=EIGHT_BIT)
    assert result.delivered
    assert sink.transactions[0].data == EIGHT_BIT
    assert sink.transactions[0].mail_params["BODY"] == "8BITMIME"


def test_eight_bit_message_to_a_server_without_8bitmime_is_sent_unchanged() -> None:
    with SmtpSink(eight_bit_mime=False) as sink:
        [result] = send(sink, message=EIGHT_BIT)
    assert result.delivered
    assert sink.transactions[0].data == EIGHT_BIT
    assert "BODY" not in sink.transactions[0].mail_params


def test_seven_bit_message_has_no_body_parameter(sink: SmtpSink) -> None:
    send(sink)
    assert "BODY" not in sink.transactions[0].mail_params


def test_null_sender(sink: SmtpSink) -> None:
    for sender in ("", "<>"):
        [result] = send(sink, sender=sender)
        assert result.delivered
    assert [t.mail_from for t in sink.transactions] == ["<>", "<>"]
    assert sink.commands.count(f"MAIL FROM:<> SIZE={len(MESSAGE)}") == 2


def test_bare_lf_is_sent_as_is_and_dots_after_it_are_doubled(sink: SmtpSink) -> None:
    """As documented: bare LF passes; a dot after one is doubled, which a CRLF-only server keeps."""
    message = b"Subject: lf\n\nline one\nline two\r\n.after crlf\r\n"
    send(sink, message=message)
    assert sink.transactions[0].data == message
    send(sink, message=b"Subject: lf\n\n.after lf\r\n")
    assert sink.transactions[1].data == b"Subject: lf\n\n..after lf\r\n"


def test_data_payload_closes_every_smuggling_door() -> None:
    assert data_payload(b"a\r\n.\r\nb\r\n") == b"a\r\n..\r\nb\r\n.\r\n"
    assert data_payload(b"a\n.\nb") == b"a\n..\nb\r\n.\r\n"
    assert data_payload(b"a\r.\rb\r\n") == b"a\r..\rb\r\n.\r\n"
    assert data_payload(b".x") == b"..x\r\n.\r\n"
    assert data_payload(b"") == b"\r\n.\r\n"


# --- replies per recipient, at DATA and at the end of the data


def test_each_rcpt_reply_gives_its_recipient_result() -> None:
    replies = {"gone@dest.test": "550 5.1.1 no such user", "busy@dest.test": "451 4.2.1 try later"}
    with SmtpSink(recipients=replies) as sink:
        results = send(sink, "bob@dest.test", "gone@dest.test", "busy@dest.test")
    assert codes(results) == [
        ("bob@dest.test", 250, "2.0.0"),
        ("gone@dest.test", 550, "5.1.1"),
        ("busy@dest.test", 451, "4.2.1"),
    ]
    assert results[1].permanent and results[2].temporary
    assert results[1].diagnostic == "550 5.1.1 no such user"
    assert sink.transactions[0].rcpt_tos == ["bob@dest.test"]


def test_reply_without_enhanced_code_gets_x00() -> None:
    with SmtpSink(recipients={"bob@dest.test": "550 unknown user"}) as sink:
        [result] = send(sink)
    assert (result.status.code, result.status.enhanced, result.status.text) == (550, "5.0.0", "unknown user")


def test_552_at_rcpt_is_temporary() -> None:
    with SmtpSink(recipients={"bob@dest.test": "552 5.2.2 mailbox full"}) as sink:
        [result] = send(sink)
    assert (result.status.code, result.status.enhanced) == (452, "4.2.2")


def test_no_data_when_no_recipient_is_accepted() -> None:
    with SmtpSink(stages={"rcpt": "550 5.1.1 no"}) as sink:
        results = send(sink, "a@dest.test", "b@dest.test")
    assert all(r.permanent for r in results)
    assert "DATA" not in sink.commands and sink.transactions == []


@pytest.mark.parametrize(
    ("reply", "code"), [("451 4.3.0 disk full", 451), ("554 5.6.0 content rejected", 554)]
)
def test_end_of_data_reply_applies_to_all_accepted(reply: str, code: int) -> None:
    with SmtpSink(stages={"dot": reply}, recipients={"gone@dest.test": "550 5.1.1 no"}) as sink:
        results = send(sink, "a@dest.test", "b@dest.test", "gone@dest.test")
    assert [r.status.code for r in results] == [code, code, 550]
    assert results[0].status.reply == reply
    assert sink.transactions[0].data == MESSAGE


def test_data_command_refused() -> None:
    with SmtpSink(stages={"data": "554 5.5.1 no valid recipients"}) as sink:
        [result] = send(sink)
    assert (result.status.code, result.status.enhanced) == (554, "5.5.1")
    assert sink.transactions == []


def test_multiline_reply_is_one_bounded_line() -> None:
    long = "x" * 3000
    replies = {
        "multi@dest.test": "550-5.1.1 first line\r\n550 5.1.1 second line",
        "long@dest.test": f"550 5.7.1 {long}",
    }
    with SmtpSink(recipients=replies) as sink:
        multi, long_result = send(sink, "multi@dest.test", "long@dest.test")
    assert multi.status.text == "first line second line"
    assert len(long_result.status.text) <= MAX_REPLY_TEXT and long_result.status.text.endswith("...")
    assert "\n" not in long_result.diagnostic


# --- refusals at the session level


def test_421_greeting_is_temporary() -> None:
    with SmtpSink(stages={"connect": "421 4.3.2 shutting down"}) as sink:
        [result] = send(sink)
    assert result.status.reply == "421 4.3.2 shutting down"
    assert result.diagnostic_type == "smtp" and result.remote_mta == "127.0.0.1"


def test_554_greeting_is_made_temporary() -> None:
    with SmtpSink(stages={"connect": "554 5.7.1 go away"}) as sink:
        [result] = send(sink)
    assert (result.status.code, result.status.enhanced) == (454, "4.7.1")
    assert "refused to talk to me: 554 5.7.1 go away" in result.status.text


def test_ehlo_refused_falls_back_to_helo() -> None:
    with SmtpSink(stages={"ehlo": "502 5.5.2 no ESMTP here"}) as sink:
        [result] = send(sink, message=EIGHT_BIT)
    assert result.delivered
    assert sink.commands[:2] == [f"EHLO {HELO}", f"HELO {HELO}"]
    assert sink.transactions[0].mail_params == {}, "no extension without EHLO"


def test_4xx_to_ehlo_is_temporary() -> None:
    with SmtpSink(stages={"ehlo": "421 4.7.0 too busy"}) as sink:
        [result] = send(sink)
    assert result.status.reply == "421 4.7.0 too busy"


def test_4xx_at_mail_is_temporary_and_5xx_permanent_for_all() -> None:
    with SmtpSink(stages={"mail": "451 4.3.0 queue full"}) as sink:
        assert [r.status.code for r in send(sink, "a@dest.test", "b@dest.test")] == [451, 451]
        sink.stages["mail"] = "553 5.7.1 sender refused"
        results = send(sink, "a@dest.test", "b@dest.test")
    assert [(r.status.code, r.status.enhanced) for r in results] == [(553, "5.7.1")] * 2
    assert "RCPT TO:<a@dest.test>" not in sink.commands


def test_552_at_mail_is_permanent_for_all() -> None:
    with SmtpSink(stages={"mail": "552 5.3.4 message too big"}) as sink:
        results = send(sink, "a@dest.test", "b@dest.test")
    assert [(r.status.code, r.permanent) for r in results] == [(552, True)] * 2


def test_message_over_the_advertised_size_is_refused_before_mail() -> None:
    with SmtpSink(size_limit=100) as sink:
        [result] = send(sink, message=MESSAGE * 3)
    assert (result.status.code, result.status.enhanced) == (552, "5.3.4")
    assert "exceeds size limit 100" in result.status.text
    assert not any(command.startswith("MAIL") for command in sink.commands)


def test_421_at_rcpt_defers_the_rest() -> None:
    with SmtpSink(recipients={"b@dest.test": "421 4.4.5 too many connections"}) as sink:
        results = send(sink, "a@dest.test", "b@dest.test", "c@dest.test")
    assert [r.status.code for r in results] == [421, 421, 421]
    assert "RCPT TO:<c@dest.test>" not in sink.commands and "DATA" not in sink.commands


def test_mail_loop_is_detected_from_the_greeting() -> None:
    with SmtpSink(hostname="me.sender.test") as sink:
        [result] = send(sink, local_hosts=("ME.sender.test.",))
    assert (result.status.code, result.status.enhanced) == (554, "5.4.6")
    assert sink.transactions == []


# --- dropped connections and servers that hang


def test_connection_refused_is_temporary() -> None:
    with SmtpSink() as sink:
        route = parse_route(sink.nexthop)
    [result] = send(sink, route=route)
    assert (result.status.code, result.status.enhanced) == (451, "4.4.1")
    assert "Connection refused" in result.status.text and result.remote_mta is None


@pytest.mark.parametrize("stage", ["connect", "ehlo", "mail", "rcpt", "data"])
def test_a_server_that_hangs_times_out_temporarily(stage: str) -> None:
    with SmtpSink(stages={stage: HANG}) as sink:
        started = time.monotonic()
        [result] = send(sink)
        elapsed = time.monotonic() - started
    assert (result.status.code, result.status.enhanced) == (451, "4.4.2")
    assert "timed out" in result.status.text
    assert elapsed < 3 * TIMEOUT + 1


@pytest.mark.parametrize("stage", ["connect", "ehlo", "mail", "data"])
def test_a_dropped_connection_is_temporary(stage: str) -> None:
    with SmtpSink(stages={stage: DROP}) as sink:
        [result] = send(sink)
    assert (result.status.code, result.status.enhanced) == (451, "4.4.2")
    assert "lost connection" in result.status.text


def test_drop_during_rcpt_keeps_the_answers_already_given() -> None:
    replies = {"gone@dest.test": "550 5.1.1 no such user", "drop@dest.test": DROP}
    with SmtpSink(recipients=replies) as sink:
        results = send(sink, "ok@dest.test", "gone@dest.test", "drop@dest.test", "later@dest.test")
    assert codes(results) == [
        ("ok@dest.test", 451, "4.4.2"),
        ("gone@dest.test", 550, "5.1.1"),
        ("drop@dest.test", 451, "4.4.2"),
        ("later@dest.test", 451, "4.4.2"),
    ]
    assert "lost connection with 127.0.0.1 while sending RCPT TO" in results[0].status.text


@pytest.mark.parametrize("action", [DROP, HANG])
def test_no_answer_after_the_data_may_mean_delivered(action: str) -> None:
    with SmtpSink(stages={"dot": action}) as sink:
        [result] = send(sink)
    assert result.temporary and "may be sent more than once" in result.status.text
    assert sink.transactions[0].data == MESSAGE


def test_budget_cuts_waits_short() -> None:
    with SmtpSink(stages={"rcpt": HANG}) as sink:
        started = time.monotonic()
        [result] = send(sink, timeout=30.0, budget=0.5)
        elapsed = time.monotonic() - started
    assert result.temporary and elapsed < 2


# --- MX hosts in order


def mx_send(resolver: dns.resolver.Resolver, port: int, *addresses: str, **overrides: object) -> list:
    return deliver(
        MESSAGE,
        SENDER,
        [Recipient(a) for a in addresses],
        parse_route("mx"),
        resolver=resolver,
        helo=HELO,
        options=options(port_override=port, **overrides),
    )


def test_mx_falls_back_from_a_dead_first_exchanger(resolver: dns.resolver.Resolver, sink: SmtpSink) -> None:
    [result] = mx_send(resolver, sink.port, "bob@fallback.test")
    assert result.delivered and result.remote_mta == "live.fallback.test"
    assert sink.transactions[0].rcpt_tos == ["bob@fallback.test"]


def test_all_exchangers_dead_is_temporary(resolver: dns.resolver.Resolver, sink: SmtpSink) -> None:
    results = mx_send(resolver, sink.port, "a@alldead.test", "b@alldead.test")
    assert [(r.status.code, r.status.enhanced) for r in results] == [(451, "4.4.1")] * 2
    assert "b.alldead.test[127.0.0.3]" in results[0].status.text, "the last failure is reported"


def test_max_addresses_limits_the_hosts_tried(resolver: dns.resolver.Resolver, sink: SmtpSink) -> None:
    [result] = mx_send(resolver, sink.port, "a@alldead.test", max_addresses=1)
    assert result.temporary and "a.alldead.test[127.0.0.2]" in result.status.text


def test_a_deferral_at_the_primary_goes_to_the_backup(resolver: dns.resolver.Resolver) -> None:
    replies = {"bob@backup.test": "451 4.7.1 greylisted", "gone@backup.test": "550 5.1.1 no such user"}
    with SmtpSink(recipients=replies) as primary, SmtpSink(host="127.0.0.2", port=primary.port) as secondary:
        results = mx_send(resolver, primary.port, "bob@backup.test", "gone@backup.test", "carol@backup.test")
    assert codes(results) == [
        ("bob@backup.test", 250, "2.0.0"),
        ("gone@backup.test", 550, "5.1.1"),
        ("carol@backup.test", 250, "2.0.0"),
    ]
    assert [r.remote_mta for r in results] == [
        "secondary.backup.test",
        "primary.backup.test",
        "primary.backup.test",
    ]
    assert primary.transactions[0].rcpt_tos == ["carol@backup.test"]
    assert secondary.transactions[0].rcpt_tos == ["bob@backup.test"], "only what the primary deferred"


def test_after_an_unanswered_end_of_data_no_other_host_is_tried(resolver: dns.resolver.Resolver) -> None:
    with (
        SmtpSink(stages={"dot": DROP}) as primary,
        SmtpSink(host="127.0.0.2", port=primary.port) as secondary,
    ):
        [result] = mx_send(resolver, primary.port, "bob@backup.test")
    assert result.temporary and secondary.connections == 0


def test_implicit_mx_and_dns_failures(resolver: dns.resolver.Resolver, sink: SmtpSink) -> None:
    [result] = mx_send(resolver, sink.port, "bob@nomx.test")
    assert result.delivered and result.remote_mta == "nomx.test"
    [nxdomain] = mx_send(resolver, sink.port, "bob@nowhere.test")
    assert (nxdomain.status.code, nxdomain.status.enhanced, nxdomain.remote_mta) == (550, "5.1.2", None)
    [null] = mx_send(resolver, sink.port, "bob@nullmx.test")
    assert (null.status.code, null.status.enhanced) == (556, "5.1.10")


def test_smarthost_by_name_is_not_an_mx_lookup(resolver: dns.resolver.Resolver, sink: SmtpSink) -> None:
    results = deliver(
        MESSAGE,
        SENDER,
        [Recipient("bob@anywhere.example")],
        parse_route(f"smtp:[relay.test]:{sink.port}"),
        resolver=resolver,
        helo=HELO,
        options=options(),
    )
    assert results[0].delivered and results[0].remote_mta == "relay.test"
    [missing] = deliver(
        MESSAGE,
        SENDER,
        [Recipient("bob@anywhere.example")],
        parse_route("smtp:[no-such-relay.test]:25"),
        resolver=resolver,
        helo=HELO,
        options=options(),
    )
    assert missing.temporary, "our own relay host not resolving is ours to fix, not a bounce"


# --- TLS and AUTH


def trusting(sink: SmtpSink) -> ssl.SSLContext:
    """A client context that verifies the sink's self-signed certificate, and nothing else."""
    assert sink.cert_file is not None
    return ssl.create_default_context(cafile=str(sink.cert_file))


def test_opportunistic_tls_is_used_when_offered() -> None:
    with SmtpSink(starttls=True) as sink:
        [result] = send(sink)
    assert result.delivered and sink.transactions[0].tls
    assert sink.commands[:3] == [f"EHLO {HELO}", "STARTTLS", f"EHLO {HELO}"]


def test_opportunistic_tls_falls_back_to_plaintext_after_a_failed_handshake() -> None:
    with SmtpSink(starttls=True) as sink:
        [result] = send(sink, tls_context=ssl.create_default_context())  # does not trust the sink
    assert result.delivered
    assert sink.connections == 2 and not sink.transactions[0].tls
    assert sink.commands.count("STARTTLS") == 1


def test_opportunistic_tls_dropped_at_starttls_reconnects_in_plaintext() -> None:
    with SmtpSink(starttls=True, stages={"starttls": DROP}) as sink:
        [result] = send(sink)
    assert result.delivered and sink.connections == 2 and not sink.transactions[0].tls


def test_opportunistic_tls_refused_goes_on_in_plaintext() -> None:
    with SmtpSink(starttls=True, stages={"starttls": "454 4.7.0 TLS not available"}) as sink:
        [result] = send(sink)
    assert result.delivered and sink.connections == 1 and not sink.transactions[0].tls


def test_tls_none_never_starts_tls() -> None:
    with SmtpSink(starttls=True) as sink:
        send(sink, tls="none")
    assert "STARTTLS" not in sink.commands and not sink.transactions[0].tls


def test_required_tls_without_starttls_is_temporary(sink: SmtpSink) -> None:
    [result] = send(sink, tls="required")
    assert (result.status.code, result.status.enhanced) == (451, "4.7.4")
    assert "TLS is required, but was not offered" in result.status.text
    assert not any(command.startswith("MAIL") for command in sink.commands)


def test_required_tls_with_an_untrusted_certificate_is_temporary() -> None:
    with SmtpSink(starttls=True) as sink:
        [result] = send(sink, tls="required")  # the default context verifies: a self-signed cert fails
    assert (result.status.code, result.status.enhanced) == (451, "4.7.5")
    assert "handshake failure" in result.status.text and sink.connections == 1
    assert sink.transactions == []


def test_required_tls_with_a_trusted_certificate() -> None:
    with SmtpSink(starttls=True) as sink:
        [result] = send(sink, tls="required", tls_context=trusting(sink))
    assert result.delivered and sink.transactions[0].tls


@pytest.mark.parametrize("exclude", [(), ("PLAIN",)])
def test_smarthost_with_auth_over_starttls(exclude: tuple[str, ...]) -> None:
    with SmtpSink(starttls=True, auth=("relay-user", "s3cret p\u00e4ss"), auth_exclude=exclude) as sink:
        [result] = send(
            sink, tls="required", tls_context=trusting(sink), auth=("relay-user", "s3cret p\u00e4ss")
        )
    assert result.delivered
    transaction = sink.transactions[0]
    assert transaction.tls and transaction.auth_user == "relay-user"
    assert ("AUTH LOGIN" if exclude else "AUTH PLAIN") in sink.commands


def test_wrong_password_is_temporary() -> None:
    with SmtpSink(starttls=True, auth=("relay-user", "right")) as sink:
        [result] = send(sink, tls="required", tls_context=trusting(sink), auth=("relay-user", "wrong"))
    assert (result.status.code, result.status.enhanced) == (454, "4.7.0")
    assert "535 5.7.8" in result.status.text and "wrong" not in result.status.text
    assert not any(command.startswith("MAIL") for command in sink.commands)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_credentials_are_never_sent_without_tls() -> None:
    with SmtpSink(auth=("relay-user", "pw"), auth_in_plaintext=True) as sink:
        [result] = send(sink, auth=("relay-user", "pw"))
    assert (result.status.code, result.status.enhanced) == (454, "4.7.0")
    assert not any(command.startswith("AUTH") for command in sink.commands)


# --- DSN parameters and SMTPUTF8


def dsn_recipients() -> list[Recipient]:
    return [
        Recipient("bob@dest.test", notify=("success", "FAILURE"), orcpt="rfc822;Bob+Tag@Dest.test"),
        Recipient("carol@dest.test", notify=("NEVER",)),
        Recipient("dave@dest.test"),
    ]


def test_dsn_parameters_are_passed_on_when_advertised() -> None:
    with SmtpSink(dsn=True) as sink:
        results = deliver(
            MESSAGE,
            SENDER,
            dsn_recipients(),
            parse_route(sink.nexthop),
            resolver=None,
            helo=HELO,
            options=options(dsn=DsnParams(ret="hdrs", envid="queue id=42+x")),
        )
    assert all(r.delivered and r.remote_dsn for r in results)
    transaction = sink.transactions[0]
    assert transaction.mail_params["RET"] == "HDRS"
    assert transaction.mail_params["ENVID"] == "queue+20id+3D42+2Bx"
    assert transaction.rcpt_params == {
        "bob@dest.test": {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;Bob+2BTag@Dest.test"},
        "carol@dest.test": {"NOTIFY": "NEVER"},
        "dave@dest.test": {},
    }


def test_dsn_parameters_are_left_out_when_not_advertised(sink: SmtpSink) -> None:
    results = deliver(
        MESSAGE,
        SENDER,
        dsn_recipients(),
        parse_route(sink.nexthop),
        resolver=None,
        helo=HELO,
        options=options(dsn=DsnParams(ret="FULL", envid="q1")),
    )
    assert all(r.delivered and not r.remote_dsn for r in results)
    assert not any(("NOTIFY" in c or "ENVID" in c or "RET=" in c) for c in sink.commands)


def test_utf8_address_goes_with_smtputf8(sink: SmtpSink) -> None:
    [result] = send(sink, "j\u00fcrgen@dest.test", sender="ren\u00e9@sender.test")
    assert result.delivered
    transaction = sink.transactions[0]
    assert "SMTPUTF8" in transaction.mail_params
    assert (transaction.mail_from, transaction.rcpt_tos) == (
        "ren\u00e9@sender.test",
        ["j\u00fcrgen@dest.test"],
    )


def test_utf8_recipient_without_smtputf8_fails_alone() -> None:
    with SmtpSink(smtputf8=False) as sink:
        results = send(sink, "j\u00fcrgen@dest.test", "bob@dest.test")
    assert codes(results) == [("j\u00fcrgen@dest.test", 553, "5.6.7"), ("bob@dest.test", 250, "2.0.0")]
    assert "SMTPUTF8" not in sink.transactions[0].mail_params


def test_utf8_sender_without_smtputf8_fails_everyone() -> None:
    with SmtpSink(smtputf8=False) as sink:
        results = send(sink, "bob@dest.test", sender="ren\u00e9@sender.test")
    assert codes(results) == [("bob@dest.test", 553, "5.6.7")]


def test_idn_domain_goes_as_a_labels_without_smtputf8() -> None:
    with SmtpSink(smtputf8=False) as sink:
        [result] = send(sink, "bob@b\u00fccher.test")
    assert result.delivered and result.address == "bob@b\u00fccher.test"
    assert sink.transactions[0].rcpt_tos == ["bob@xn--bcher-kva.test"]


# --- misuse


def test_bad_addresses_fail_without_a_connection(sink: SmtpSink) -> None:
    results = send(sink, "bob@dest.test", "evil>@dest.test", "x\r\nRSET@dest.test")
    assert [r.status.enhanced for r in results] == ["2.0.0", "5.1.3", "5.1.3"]
    assert sink.transactions[0].rcpt_tos == ["bob@dest.test"]


def test_misuse_raises() -> None:
    with pytest.raises(ValueError, match="one domain"):
        deliver(
            MESSAGE,
            SENDER,
            [Recipient("a@x.test"), Recipient("b@y.test")],
            parse_route("mx"),
            resolver=None,
            helo=HELO,
        )
    with pytest.raises(ValueError, match="ses"):
        deliver(MESSAGE, SENDER, [Recipient("a@x.test")], parse_route("ses"), resolver=None, helo=HELO)
    with pytest.raises(ValueError):
        Recipient("a@x.test", notify=("NEVER", "SUCCESS"))
    with pytest.raises(ValueError):
        DsnParams(ret="ALL")
    assert deliver(MESSAGE, SENDER, [], parse_route("mx"), resolver=None, helo=HELO) == []


def test_results_become_dsn_blocks() -> None:
    with SmtpSink(recipients={"gone@dest.test": "550 5.1.1 no such user"}) as sink:
        [gone] = send(sink, "gone@dest.test")
    block = gone.dsn_status(original_recipient="rfc822;Gone@dest.test")
    assert (block.final_recipient, block.status, block.remote_mta) == ("gone@dest.test", "5.1.1", "127.0.0.1")
    assert (block.diagnostic_type, block.diagnostic) == ("smtp", "550 5.1.1 no such user")
    report = build_dsn(MESSAGE, SENDER, [block], "out.sender.test")
    assert b"Diagnostic-Code: smtp; 550 5.1.1 no such user" in report
