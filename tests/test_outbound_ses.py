"""The SES transport against moto's SESv2 (a moto server on loopback, in this process), and
botocore's Stubber for the errors moto never produces (throttling, outages)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.ses.models import ses_backends

from mailpipe.outbound.ses import SES_MAX_RECIPIENTS, deliver_ses
from mailpipe.outbound.transports import Recipient

# A region of its own: moto's backends are per process, and the dev stack of other tests uses us-east-1.
REGION = "eu-west-3"
SENDER = "alice@crepes.fr"
MESSAGE = b"From: Alice <alice@crepes.fr>\r\nSubject: hello\r\n\r\nHi!\r\n.dot line\r\n"
EIGHT_BIT = "From: alice@crepes.fr\r\nSubject: cr\u00eapes\r\n\r\nD\u00e9j\u00e0 vu\r\n".encode()
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def ses(moto_endpoint: str) -> Any:
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=moto_endpoint, **CREDENTIALS)
    client.create_email_identity(EmailIdentity="crepes.fr")
    return client


@pytest.fixture
def sent(ses: Any) -> Callable[[], list[Any]]:
    """The messages moto's SES took since the test began."""
    messages = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    before = len(messages)
    return lambda: messages[before:]


def recipients(*addresses: str) -> list[Recipient]:
    return [Recipient(a) for a in addresses]


def test_success_carries_the_ses_message_id(ses: Any, sent: Callable[[], list[Any]]) -> None:
    results = deliver_ses(MESSAGE, SENDER, recipients("bob@hamburger.edu", "carl@hamburger.edu"), client=ses)
    [message] = sent()
    assert [(r.address, r.status.code, r.status.enhanced) for r in results] == [
        ("bob@hamburger.edu", 250, "2.0.0"),
        ("carl@hamburger.edu", 250, "2.0.0"),
    ]
    assert message.id in results[0].status.text
    assert results[0].remote_mta == "127.0.0.1"
    assert message.source == SENDER
    assert message.destinations == ["bob@hamburger.edu", "carl@hamburger.edu"]
    assert message.raw_data.encode() == MESSAGE


def test_eight_bit_message_is_sent_as_is(ses: Any, sent: Callable[[], list[Any]]) -> None:
    [result] = deliver_ses(EIGHT_BIT, SENDER, recipients("bob@hamburger.edu"), client=ses)
    assert result.delivered
    assert sent()[0].raw_data.encode() == EIGHT_BIT


def test_unverified_sender_is_rejected_permanently(ses: Any, sent: Callable[[], list[Any]]) -> None:
    results = deliver_ses(MESSAGE, "mallory@elsewhere.test", recipients("a@x.test", "b@x.test"), client=ses)
    assert [(r.status.code, r.status.enhanced) for r in results] == [(554, "5.7.1")] * 2
    assert "MessageRejected" in results[0].status.text and results[0].permanent
    assert sent() == []


def test_more_than_fifty_recipients_go_in_several_calls(ses: Any, sent: Callable[[], list[Any]]) -> None:
    addresses = [f"user{n}@hamburger.edu" for n in range(SES_MAX_RECIPIENTS + 10)]
    results = deliver_ses(MESSAGE, SENDER, recipients(*addresses), client=ses)
    assert all(r.delivered for r in results) and [r.address for r in results] == addresses
    assert [len(m.destinations) for m in sent()] == [SES_MAX_RECIPIENTS, 10]
    assert results[0].status.text != results[-1].status.text, "one SES message id per call"


def test_null_sender_takes_the_from_header(ses: Any, sent: Callable[[], list[Any]]) -> None:
    bounce = b"From: Mail Delivery System <MAILER-DAEMON@crepes.fr>\r\nSubject: failure\r\n\r\nx\r\n"
    [result] = deliver_ses(bounce, "<>", recipients("alice@hamburger.edu"), client=ses)
    assert result.delivered
    assert sent()[0].source == "MAILER-DAEMON@crepes.fr"


def test_non_ascii_local_part_fails_and_idn_domain_is_encoded(
    ses: Any, sent: Callable[[], list[Any]]
) -> None:
    results = deliver_ses(
        MESSAGE, SENDER, recipients("j\u00fcrgen@x.test", "bob@b\u00fccher.test"), client=ses
    )
    assert [(r.status.code, r.status.enhanced) for r in results] == [(553, "5.6.7"), (250, "2.0.0")]
    assert results[0].remote_mta is None
    assert sent()[0].destinations == ["bob@xn--bcher-kva.test"]


def test_an_address_ses_refuses_does_not_bounce_the_others(ses: Any, sent: Callable[[], list[Any]]) -> None:
    results = deliver_ses(MESSAGE, SENDER, recipients("bob@hamburger.edu", "broken@"), client=ses)
    assert [(r.status.code, r.status.enhanced) for r in results] == [(250, "2.0.0"), (553, "5.1.3")]
    assert [m.destinations for m in sent()] == [["bob@hamburger.edu"]]


@pytest.mark.parametrize(
    ("code", "http", "enhanced"),
    [
        ("TooManyRequestsException", 429, "4.4.5"),
        ("Throttling", 400, "4.4.5"),
        ("LimitExceededException", 400, "4.4.5"),
        ("ServiceUnavailable", 503, "4.3.0"),
        ("InternalFailure", 500, "4.3.0"),
        ("SendingPausedException", 400, "4.3.5"),
        ("AccountSuspendedException", 400, "4.3.5"),
        ("SomethingNewException", 400, "4.3.0"),
    ],
)
def test_throttling_outages_and_our_configuration_are_temporary(code: str, http: int, enhanced: str) -> None:
    client = boto3.client("sesv2", region_name=REGION, **CREDENTIALS)
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "send_email", service_error_code=code, service_message="slow down", http_status_code=http
        )
        [result] = deliver_ses(MESSAGE, SENDER, recipients("bob@hamburger.edu"), client=client)
        stubber.assert_no_pending_responses()
    assert (result.status.code, result.status.enhanced) == (451, enhanced) and result.temporary
    assert code in result.status.text


def test_message_too_long_is_552() -> None:
    client = boto3.client("sesv2", region_name=REGION, **CREDENTIALS)
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "send_email",
            service_error_code="MessageRejected",
            service_message="Message length is more than 40MB",
        )
        [result] = deliver_ses(MESSAGE, SENDER, recipients("bob@hamburger.edu"), client=client)
    assert (result.status.code, result.status.enhanced) == (552, "5.3.4")


def test_ses_unreachable_is_temporary() -> None:
    client = boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        **CREDENTIALS,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    [result] = deliver_ses(MESSAGE, SENDER, recipients("bob@hamburger.edu"), client=client)
    assert (result.status.code, result.status.enhanced) == (451, "4.4.1")
    assert result.remote_mta is None


def test_every_call_names_the_configuration_set_and_tags(ses: Any, sent: Callable[[], list[Any]]) -> None:
    """SES publishes events only for sends with its configuration set; the tags find the queue entry
    again. Recipients retried one by one (after a BadRequest) carry them too."""
    requests: list[dict[str, Any]] = []
    ses.meta.events.register(
        "provide-client-params.sesv2.SendEmail", lambda params, **_: requests.append(params)
    )
    results = deliver_ses(
        MESSAGE,
        SENDER,
        recipients("bob@hamburger.edu", "broken@"),
        client=ses,
        configuration_set="mailpipe-outbound",
        tags={"mailpipe-envelope": "01A21E05E9755A96E0B978CE7E63"},
    )
    assert [r.status.code for r in results] == [250, 553]
    assert len(requests) == 3  # both, then each alone
    for request in requests:
        assert request["ConfigurationSetName"] == "mailpipe-outbound"
        assert request["EmailTags"] == [
            {"Name": "mailpipe-envelope", "Value": "01A21E05E9755A96E0B978CE7E63"}
        ]
    without = []
    ses.meta.events.register(
        "provide-client-params.sesv2.SendEmail", lambda params, **_: without.append(params)
    )
    deliver_ses(MESSAGE, SENDER, recipients("bob@hamburger.edu"), client=ses)
    assert "ConfigurationSetName" not in without[0] and "EmailTags" not in without[0]
