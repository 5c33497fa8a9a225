"""DKIM signing of outgoing mail: keys in Secrets Manager (moto), signatures checked by dkimpy
against the keys' records served by a DNS server on loopback, messages received by an SMTP sink."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from dkim_dns import verified_signatures, zone_of
from dns_zone import serving
from smtp_sink import SmtpSink
from test_outbound_delivery import dsns, queued

from mailpipe import aws
from mailpipe.dkim_signing.keys import ACTIVE, ED25519, RETIRING, RSA, DkimKeyError, generate
from mailpipe.dkim_signing.signer import MessageSigner, author_domain
from mailpipe.dkim_signing.store import KeyStore, secret_name
from mailpipe.outbound.delivery import OutboundConfig, OutboundDelivery
from mailpipe.outbound.queue import OutboundMessage, OutboundQueue, OutboundRecipient
from mailpipe.outbound.smtp_client import DeliveryOptions
from mailpipe.outbound.state import QueueState
from mailpipe.outbound.transport_map import TransportMap
from mailpipe.spool import Envelope, new_queue_id, spool_key


def message_from(domain: str, subject: str = "signed") -> bytes:
    return (
        f"From: Alice <alice@{domain}>\r\nTo: friend@remote.test\r\nSubject: {subject}\r\n"
        f"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(6)}@{domain}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour.\r\n"
    ).encode()


@pytest.fixture
def keystore(stack) -> KeyStore:
    return KeyStore(aws.client("secretsmanager"))


@pytest.fixture
def domain() -> str:
    return f"sign-{secrets.token_hex(4)}.test"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_keygen_stores_one_secret_per_selector_in_the_shared_format(keystore, domain) -> None:
    made = keystore.create(domain)
    assert sorted(key.algorithm for key in made) == [ED25519, RSA]
    for key in made:
        raw = aws.client("secretsmanager").get_secret_value(SecretId=f"mailpipe/dkim/{domain}/{key.selector}")
        stored = json.loads(raw["SecretString"])
        assert set(stored) - {"private_key_base64"} == {
            "domain",
            "selector",
            "algorithm",
            "private_key",
            "public_key",
            "created",
            "state",
        }
        if key.algorithm == RSA:
            # SES Bring-Your-Own-DKIM (template.yaml) reads this: the same key, as base64 DER.
            der = base64.b64decode(stored["private_key_base64"], validate=True)
            from_der = serialization.load_der_private_key(der, password=None)
            from_pem = serialization.load_pem_private_key(stored["private_key"].encode(), password=None)
            assert from_der.private_numbers() == from_pem.private_numbers()  # type: ignore[union-attr]
        else:
            assert "private_key_base64" not in stored  # SES takes no Ed25519 key
        assert stored["domain"] == domain and stored["state"] == ACTIVE
        assert stored["private_key"].startswith("-----BEGIN ")
        assert "PRIVATE KEY" not in repr(key) and stored["private_key"] not in str(key)
        datetime.fromisoformat(stored["created"])
    assert keystore.keys(domain) == sorted(made, key=lambda k: k.selector)


def test_bad_names_and_duplicates_get_a_clear_answer(keystore, domain) -> None:
    for bad_domain in ("", "no_underscores.test", "a..b", "x" * 300):
        with pytest.raises(DkimKeyError):
            keystore.create(bad_domain)
    with pytest.raises(DkimKeyError):
        keystore.create(domain, selector="bad/selector")
    with pytest.raises(DkimKeyError):
        keystore.create(domain, algorithm="dsa")
    keystore.create(domain, selector="one", algorithm="rsa")
    with pytest.raises(DkimKeyError, match="already has"):
        keystore.create(domain, selector="one", algorithm="rsa")
    with pytest.raises(DkimKeyError, match="active"):
        keystore.delete(domain, "one")
    assert keystore.delete(domain, "one", force=True).selector == "one"
    assert keystore.get(domain, "one") is None
    with pytest.raises(DkimKeyError, match="no DKIM key"):
        keystore.delete(domain, "one")


def test_two_signatures_rsa_and_ed25519_that_verify(keystore, domain) -> None:
    keys = keystore.create(domain)
    signed = MessageSigner(keystore).sign(message_from(domain))
    with serving(zone_of(keys)) as (port, _zone):
        results = verified_signatures(signed, port)
    assert len(results) == 2 and all(ok for _d, _s, ok in results)
    assert {d for d, _s, _ok in results} == {domain.encode()}
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    assert "a=ed25519-sha256" in header and "a=rsa-sha256" in header
    assert "c=relaxed/relaxed" in header


def test_from_is_oversigned_so_a_second_from_breaks_the_signature(keystore, domain) -> None:
    keys = keystore.create(domain, algorithm="ed25519")
    signed = MessageSigner(keystore).sign(message_from(domain))
    forged = b"From: ceo@" + domain.encode() + b"\r\n" + signed
    # Prepended above the signature: the forged From is the one a reader sees.
    with serving(zone_of(keys)) as (port, _zone):
        assert verified_signatures(signed, port)[0][2] is True
        assert verified_signatures(forged, port)[0][2] is False
    fields = signed.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n ", " ")
    signed_names = [name.strip() for name in fields.split("h=", 1)[1].split(";", 1)[0].split(":")]
    assert signed_names.count("from") == 2 and "subject" in signed_names and "cc" in signed_names


def test_rotation_signs_with_the_new_keys_and_old_mail_still_verifies(keystore, domain) -> None:
    old = keystore.create(domain)
    clock = Clock()
    signer = MessageSigner(keystore, ttl=60, clock=clock)
    before = signer.sign(message_from(domain, "before"))
    new, retired = keystore.rotate(domain)
    assert {k.selector for k in retired} == {k.selector for k in old}
    assert all(k.state == RETIRING for k in retired)
    assert {k.state for k in keystore.keys(domain)} == {ACTIVE, RETIRING}
    cached = signer.sign(message_from(domain, "cached"))
    clock.now = 61  # past the cache's time: the signer reads the keys again
    after = signer.sign(message_from(domain, "after"))
    with serving(zone_of(old + new)) as (port, _zone):  # retiring keys stay published
        assert {s for _d, s, ok in verified_signatures(before, port) if ok} == {
            k.selector.encode() for k in old
        }
        assert {s for _d, s, _ok in verified_signatures(cached, port)} == {k.selector.encode() for k in old}
        checked = verified_signatures(after, port)
    assert {s for _d, s, ok in checked if ok} == {k.selector.encode() for k in new}
    assert len(checked) == 2


def test_a_domain_without_keys_goes_unsigned_and_is_logged_once(keystore, domain, caplog) -> None:
    signer = MessageSigner(keystore)
    message = message_from(domain)
    with caplog.at_level(logging.WARNING, logger="mailpipe.dkim_signing.signer"):
        assert signer.sign(message) == message
        again = message_from(domain, "again")
        assert signer.sign(again) == again
    assert [r.getMessage() for r in caplog.records].count(
        f"no DKIM key for {domain}: its mail goes out unsigned (mailpipe dkim keygen {domain})"
    ) == 1


def test_messages_without_a_usable_from_go_unsigned(keystore) -> None:
    signer = MessageSigner(keystore)
    for message in (b"Subject: no from\r\n\r\nbody\r\n", b"From: nobody\r\n\r\n", b"\xff\xfe garbage", b""):
        assert signer.sign(message) == message
    assert author_domain(b'From: "A, B" <a@Example.TEST>, c@other.test\r\n\r\n') == "example.test"


def test_a_parent_domain_signs_for_its_subdomain(keystore, domain) -> None:
    keys = keystore.create(domain)
    signed = MessageSigner(keystore).sign(b"From: MAILER-DAEMON@mail." + domain.encode() + b"\r\n\r\nx\r\n")
    with serving(zone_of(keys)) as (port, _zone):
        assert {(d, ok) for d, _s, ok in verified_signatures(signed, port)} == {(domain.encode(), True)}


def test_dkim_key_ed25519_signing_key_round_trip() -> None:
    key = generate("example.test", "s", ED25519, datetime(2026, 12, 5, tzinfo=UTC))
    assert len(key.public_key) == 44 and key.record_value.startswith("v=DKIM1; k=ed25519; p=")
    assert secret_name("Example.TEST.", "s") == "mailpipe/dkim/example.test/s"


# --- through the outbound engine: what leaves is signed, bounces too ---------------------------


@pytest.fixture
def engine(stack, keystore, domain):
    """An outbound engine signing with the stack's Secrets Manager, delivering to a sink."""
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    suffix = secrets.token_hex(4)
    queue_url = sqs.create_queue(QueueName=f"outbound-dkim-{suffix}")["QueueUrl"]
    table_name = f"outbound-dkim-{suffix}"
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with SmtpSink() as sink:
        config = OutboundConfig(
            hostname=f"mail.{domain}",
            transports=TransportMap.from_text(f"remote.test=smtp:[127.0.0.1]:{sink.port}"),
            options=DeliveryOptions(timeout=5, connect_timeout=5),
            sign=MessageSigner(keystore).sign,
        )
        yield (
            OutboundDelivery(
                stack.spool(), QueueState(aws.table(table_name)), OutboundQueue(sqs, queue_url), config
            ),
            sink,
        )
    sqs.delete_queue(QueueUrl=queue_url)
    dynamodb.delete_table(TableName=table_name)


def spooled_message(stack, sender: str, raw: bytes, recipient: str) -> OutboundMessage:
    queue_id = new_queue_id()
    now = datetime.now(UTC)
    envelope = Envelope(queue_id, sender, [], spool_key(queue_id, now), len(raw), now.isoformat())
    aws.client("s3").put_object(Bucket=stack.resources.mail_bucket, Key=envelope.s3_key, Body=raw)
    return OutboundMessage(
        envelope_id=queue_id,
        s3_key=envelope.s3_key,
        mail_from=sender,
        auth_user=sender or None,
        received_at=now.isoformat(),
        size=len(raw),
        recipients=[OutboundRecipient(recipient)],
    )


def test_outbound_delivery_signs_what_leaves_not_what_is_spooled(stack, engine, keystore, domain) -> None:
    delivery, sink = engine
    keys = keystore.create(domain)
    raw = message_from(domain)
    delivery.process(spooled_message(stack, f"alice@{domain}", raw, "friend@remote.test"))
    [transaction] = sink.transactions
    assert transaction.data.endswith(raw) and transaction.data.count(b"DKIM-Signature:") == 2
    with serving(zone_of(keys)) as (port, _zone):
        assert [ok for _d, _s, ok in verified_signatures(transaction.data, port)] == [True, True]


def test_a_bounce_that_leaves_is_signed(stack, engine, keystore, domain, new_user) -> None:
    delivery, sink = engine
    keys = keystore.create(domain)
    alice = new_user()
    sink.recipients["gone@remote.test"] = "550 5.1.1 no such user"
    delivery.process(queued(stack, alice, [OutboundRecipient("gone@remote.test")]))
    [bounce] = dsns(stack, alice, 0)  # the DSN the engine made, as the pipeline stored it
    raw = bounce.as_bytes().replace(b"\n", b"\r\n")
    assert f"MAILER-DAEMON@mail.{domain}".encode() in raw
    # A bounce to a remote sender leaves through the same engine (the inbound function hands it on).
    delivery.process(spooled_message(stack, "", raw, "friend@remote.test"))
    sent = sink.transactions[-1].data
    with serving(zone_of(keys)) as (port, _zone):
        results = verified_signatures(sent, port)
    assert len(results) == 2 and all(ok and d == domain.encode() for d, _s, ok in results)


def test_unsigned_when_the_from_domain_has_no_key(stack, engine, domain) -> None:
    delivery, sink = engine
    raw = message_from(domain)
    delivery.process(spooled_message(stack, f"alice@{domain}", raw, "friend@remote.test"))
    assert sink.transactions[0].data == raw


def test_keys_are_read_once_per_ttl_and_never_for_a_domain_without_keys(stack, domain) -> None:
    client = aws.client("secretsmanager")
    calls: list[str] = []

    def count(model, **kwargs) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.secrets-manager", count)
    try:
        KeyStore(client).create(domain)
        calls.clear()
        clock = Clock()
        signer = MessageSigner(KeyStore(client), ttl=60, clock=clock)
        for _ in range(3):
            signer.sign(message_from(domain))
            signer.sign(message_from(f"elsewhere-{domain}"))  # relayed mail from a domain without keys
        assert calls.count("ListSecrets") == 2  # the domains with keys, then this domain's selectors
        assert calls.count("GetSecretValue") == 2  # its two keys, once
        clock.now = 61
        signer.sign(message_from(domain))
        assert calls.count("GetSecretValue") == 4
    finally:
        client.meta.events.unregister("before-call.secrets-manager", count)


def test_an_unreachable_secrets_manager_raises_rather_than_sending_unsigned(stack, domain) -> None:
    from botocore.exceptions import BotoCoreError

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    signer = MessageSigner(KeyStore(aws.client("secretsmanager", dead)))
    with pytest.raises(BotoCoreError):
        signer.sign(message_from(domain))
