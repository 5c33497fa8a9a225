"""mailpipe.s3_puts: whole-object PUTs signed here, botocore for anything but a plain success.

The request is checked against the one botocore would send for the same key, body and moment
(moto does not check signatures); what is stored against the corpus through the dev stack's
moto, and against a PutObject of botocore's; the fall-backs against a small real HTTP server
that misbehaves on purpose.
"""

from __future__ import annotations

import datetime
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, EndpointConnectionError
from conftest import CORPUS
from scripted_server import ScriptedServer, s3_client_of

from mailpipe import aws
from mailpipe.s3_puts import ObjectPuts
from mailpipe_tools.local.moto_process import RequestCounts

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
ODD_KEYS = ["messages/bob@example.test/plain.eml", "messages/o+b/a b/ü€ key", "messages/x/%41~'!(*)=&;"]
RFC822 = "message/rfc822"


class _Stop(Exception):
    pass


def _botocore_request(s3, bucket: str, key: str, body: bytes) -> tuple[str, dict[str, str]]:
    """The URL and headers of the PutObject botocore would send (stopped before it is sent)."""
    seen: dict[str, object] = {}

    def stop(request, **_) -> None:
        seen["url"] = request.url
        seen["headers"] = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        raise _Stop

    s3.meta.events.register("before-send.s3.PutObject", stop)
    try:
        with pytest.raises(_Stop):
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=RFC822)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", stop)
    return str(seen["url"]), seen["headers"]  # type: ignore[return-value]


def _client(endpoint_url: str | None, token: str | None) -> object:
    return boto3.session.Session().client(
        "s3",
        region_name="eu-west-3",
        endpoint_url=endpoint_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=aws._CONFIG,
    )


BODY = b"Subject: signed\r\n\r\n" + bytes(range(256)) * 40


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:4566"])
def test_the_signature_is_botocores(key, token, endpoint_url, monkeypatch) -> None:
    """botocore's S3 SigV4 signer, given the same request at the same second, signs it the same,
    on AWS's addressing (virtual-hosted, https) and on an endpoint URL's (path style)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    s3 = _client(endpoint_url, token)
    puts = ObjectPuts(s3, "mail-bucket")
    endpoint = puts.endpoint
    assert endpoint is not None and endpoint.region == "eu-west-3"
    if endpoint_url is None:
        assert endpoint.scheme == "https" and endpoint.host == "mail-bucket.s3.eu-west-3.amazonaws.com"
    path = endpoint.prefix + quote(key, safe="/~")
    moment = datetime.datetime(2026, 12, 6, 1, 2, 3, tzinfo=datetime.UTC)
    ours = dict(puts.signed_headers(path, BODY, RFC822, stamp="20261206T010203Z"))
    unsigned = {"content-type", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm"}
    request = AWSRequest(
        method="PUT",
        url=f"{endpoint.scheme}://{endpoint.host}{path}",
        headers={name: ours[name] for name in unsigned},
        data=BODY,
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)
    S3SigV4Auth(s3._request_signer._credentials, "s3", "eu-west-3").add_auth(request)
    theirs = {name.lower(): value for name, value in request.headers.items()}
    assert ours.pop("host") == endpoint.host
    assert ours == theirs


@pytest.mark.parametrize("key", ODD_KEYS)
def test_on_an_endpoint_url_the_request_is_the_one_botocore_sends(key, monkeypatch) -> None:
    """Where botocore sends the checksum as a header (not https's aws-chunked trailer), as on the
    dev stack: the same URL, and the same signed headers and Authorization at the same second."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    s3 = _client("http://127.0.0.1:4566", None)
    puts = ObjectPuts(s3, "mail-bucket")
    assert puts.endpoint is not None
    url, theirs = _botocore_request(s3, "mail-bucket", key, BODY)
    path = puts.endpoint.prefix + quote(key, safe="/~")
    assert url == f"http://127.0.0.1:4566{path}"
    ours = dict(puts.signed_headers(path, BODY, RFC822, stamp=theirs["x-amz-date"]))
    assert ours.pop("host") == "127.0.0.1:4566"
    assert ours == {name: theirs[name] for name in ours}
    signed = re.search(r"SignedHeaders=([^,]+)", theirs["authorization"])[1].split(";")
    assert sorted(signed) == sorted(["host", *(name for name in ours if name != "authorization")])
    assert int(theirs["content-length"]) == len(BODY)


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_is_stored_byte_for_byte_one_request_each(stack, scratch_bucket) -> None:
    s3, name = scratch_bucket
    puts = ObjectPuts(s3, name)
    assert puts.endpoint is not None
    messages = {f"messages/corpus/{i}": path.read_bytes() for i, path in enumerate(CORPUS_FILES)}
    for index, key in enumerate(ODD_KEYS):
        messages[key] = b"Subject: odd key %d\r\n\r\nbody\r\n" % index
    counts = RequestCounts(stack.moto.endpoint)
    before = counts.counts()["s3:PUT"]
    with ThreadPoolExecutor(8) as threads:  # several threads, each on its own kept connection
        list(threads.map(lambda key: puts.put(key, messages[key], RFC822), messages))
    assert counts.counts()["s3:PUT"] - before == len(messages)
    for key, raw in messages.items():
        assert s3.get_object(Bucket=name, Key=key)["Body"].read() == raw


def test_what_is_stored_is_what_botocore_stores(scratch_bucket) -> None:
    """Type, length, ETag and the CRC32 S3 keeps: the same as after botocore's PutObject."""
    s3, name = scratch_bucket
    body = b"Subject: same\r\n\r\n" + b"line\r\n" * 500
    ObjectPuts(s3, name).put("lean", body, RFC822)
    s3.put_object(Bucket=name, Key="botocore", Body=body, ContentType=RFC822)
    fields = ("ContentType", "ContentLength", "ETag", "ChecksumCRC32")
    lean, theirs = (
        s3.head_object(Bucket=name, Key=key, ChecksumMode="ENABLED") for key in ("lean", "botocore")
    )
    assert {f: lean.get(f) for f in fields} == {f: theirs.get(f) for f in fields}
    assert lean["ChecksumCRC32"]


def test_a_missing_bucket_raises_what_put_object_raises(stack) -> None:
    s3 = aws.client("s3")
    with pytest.raises(ClientError) as missing:
        ObjectPuts(s3, "no-such-bucket-here").put("k", b"body", RFC822)
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_one_connection_serves_every_put_and_one_the_server_closed_is_made_anew() -> None:
    for close in (False, True):
        server = ScriptedServer(lambda n: OK, close_after=lambda n, close=close: close)
        try:
            puts = ObjectPuts(s3_client_of(server.port), "mail-bucket")
            for n in range(3):
                puts.put(f"k{n}", b"body %d" % n, RFC822)
            assert [body for _, body in server.requests] == [b"body 0", b"body 1", b"body 2"]
            assert len(server.lean()) == 3  # none went through botocore
        finally:
            server.stop()


def test_an_error_answer_is_sent_again_through_botocore_which_raises() -> None:
    error = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    denied = (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(error)
        + error
    )
    server = ScriptedServer(lambda n: denied, close_after=lambda n: False)
    try:
        with pytest.raises(ClientError) as failed:
            ObjectPuts(s3_client_of(server.port), "mail-bucket").put("k", b"body", RFC822)
        assert failed.value.response["Error"]["Code"] == "AccessDenied"
        assert len(server.lean()) == 1 and len(server.requests) == 2
    finally:
        server.stop()


def test_a_server_error_is_retried_by_botocore() -> None:
    """The lean PUT gets a 503 and leaves it to botocore, whose retry stores it."""
    busy = b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n"
    server = ScriptedServer(lambda n: busy if n <= 2 else OK, close_after=lambda n: False)
    try:
        ObjectPuts(s3_client_of(server.port), "mail-bucket").put("k", b"body", RFC822)
        assert [body for _, body in server.requests] == [b"body"] * 3
        assert len(server.lean()) == 1
    finally:
        server.stop()


def test_a_large_body_goes_through_botocore_asking_first() -> None:
    server = ScriptedServer(lambda n: OK, close_after=lambda n: False)
    try:
        big = b"x" * aws.CONTINUE_FROM_BYTES
        ObjectPuts(s3_client_of(server.port), "mail-bucket").put("k", big, RFC822)
        [(head, body)] = server.requests
        assert b"User-Agent: Boto3" in head and b"100-continue" in head.lower() and body == big
    finally:
        server.stop()


def test_an_endpoint_that_refuses_connections_fails_as_botocore_does() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(EndpointConnectionError):
        ObjectPuts(s3_client_of(port), "mail-bucket").put("k", b"body", RFC822)
