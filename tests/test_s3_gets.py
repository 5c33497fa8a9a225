"""mailpipe.s3_gets: whole-object GETs signed here, botocore for anything but a plain success.

The signature is checked against botocore's own SigV4 signer for the same request and moment
(moto does not check signatures); the bytes against the corpus through the dev stack's moto; the
fall-backs against small real HTTP servers that misbehave on purpose.
"""

from __future__ import annotations

import base64
import re
import socket
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, FlexibleChecksumError
from conftest import CORPUS
from scripted_server import ScriptedServer, s3_client_of

from mailpipe.s3_gets import ObjectGets
from mailpipe_tools.local.moto_process import RequestCounts

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
ODD_KEYS = ["messages/bob@example.test/plain.eml", "messages/o+b/a b/ü€ key", "messages/x/%41~'!(*)=&;"]


@pytest.fixture
def bucket(scratch_bucket: tuple[object, str]) -> tuple[object, str]:
    return scratch_bucket


class _Stop(Exception):
    pass


def _botocore_request(s3, bucket: str, key: str) -> tuple[str, dict[str, str]]:
    """The URL and headers of the GetObject botocore would send (stopped before it is sent)."""
    seen: dict[str, object] = {}

    def stop(request, **_) -> None:
        seen["url"] = request.url
        seen["headers"] = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        raise _Stop

    s3.meta.events.register("before-send.s3.GetObject", stop)
    try:
        with pytest.raises(_Stop):
            s3.get_object(Bucket=bucket, Key=key)
    finally:
        s3.meta.events.unregister("before-send.s3.GetObject", stop)
    return str(seen["url"]), seen["headers"]  # type: ignore[return-value]


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:4566"])
def test_the_request_is_the_one_botocore_signs(key, token, endpoint_url, monkeypatch) -> None:
    """The GetObject botocore would send for the same key at the same second: same URL, and the
    same signed headers and Authorization, on AWS's virtual-hosted addressing and on an endpoint
    URL's path style (nothing is sent: no server checks signatures here, moto does not)."""
    # An endpoint in the environment (left by a test that ran a handler in this process) would
    # take the place of AWS's.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    s3 = boto3.session.Session().client(
        "s3",
        region_name="eu-west-3",
        endpoint_url=endpoint_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
    )
    gets = ObjectGets(s3, "mail-bucket")
    endpoint = gets.endpoint
    assert endpoint is not None and endpoint.region == "eu-west-3"
    if endpoint_url is None:
        assert endpoint.host == "mail-bucket.s3.eu-west-3.amazonaws.com" and endpoint.prefix == "/"
    else:
        assert endpoint.host == "127.0.0.1:4566" and endpoint.prefix == "/mail-bucket/"
    url, theirs = _botocore_request(s3, "mail-bucket", key)
    path = endpoint.prefix + quote(key, safe="/~")
    assert url == f"{endpoint.scheme}://{endpoint.host}{path}"
    ours = dict(gets.signed_headers(path, stamp=theirs["x-amz-date"]))
    assert ours.pop("host") == endpoint.host
    assert ours == {name: theirs[name] for name in ours}
    signed = re.search(r"SignedHeaders=([^,]+)", theirs["authorization"])[1].split(";")
    assert sorted(signed) == sorted(["host", *(name for name in ours if name != "authorization")])


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_comes_back_byte_for_byte_one_request_each(stack, bucket) -> None:
    s3, name = bucket
    gets = ObjectGets(s3, name)
    assert gets.lean
    messages = {f"messages/corpus/{i}": path.read_bytes() for i, path in enumerate(CORPUS_FILES)}
    for index, key in enumerate(ODD_KEYS):
        messages[key] = b"Subject: odd key %d\r\n\r\nbody\r\n" % index
    for key, raw in messages.items():
        s3.put_object(Bucket=name, Key=key, Body=raw)
    counts = RequestCounts(stack.moto.endpoint)
    before = counts.counts()["s3:GET"]
    with ThreadPoolExecutor(8) as threads:  # several threads, each on its own kept connection
        read = dict(zip(messages, threads.map(gets.get, messages), strict=True))
    assert read == messages
    assert counts.counts()["s3:GET"] - before == len(messages)


def test_a_missing_key_raises_what_get_object_raises(bucket) -> None:
    s3, name = bucket
    gets = ObjectGets(s3, name)
    with pytest.raises(ClientError) as missing:
        gets.get("messages/nobody/not-there.eml")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    s3.put_object(Bucket=name, Key="k", Body=b"after a 404 the connection still serves")
    assert gets.get("k") == b"after a 404 the connection still serves"


def _ok(body: bytes, crc: bytes | None = None) -> bytes:
    checksum = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")) if crc is None else crc
    return (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nx-amz-checksum-crc32: %s\r\n\r\n" % (len(body), checksum)
        + body
    )


def test_a_kept_connection_the_server_closed_is_made_anew() -> None:
    server = ScriptedServer(lambda n: _ok(b"body %d" % n), close_after=lambda n: True)
    try:
        gets = ObjectGets(s3_client_of(server.port), "mail-bucket")
        assert [gets.get("k") for _ in range(3)] == [b"body 1", b"body 2", b"body 3"]
        assert len(server.requests) == 3  # no request went through botocore
        assert all(b"x-amz-checksum-mode: ENABLED" in head for head, _ in server.requests)
    finally:
        server.stop()


def test_a_body_whose_checksum_is_wrong_is_never_served() -> None:
    """The lean GET sees the wrong CRC32 and asks botocore, which checks it too and raises."""
    server = ScriptedServer(lambda n: _ok(b"corrupted", crc=b"AAAAAA=="), close_after=lambda n: False)
    try:
        gets = ObjectGets(s3_client_of(server.port), "mail-bucket")
        with pytest.raises(FlexibleChecksumError):
            gets.get("k")
        assert b"User-Agent: Boto3" in server.requests[-1][0]  # botocore was asked
    finally:
        server.stop()


def test_a_short_body_is_never_served() -> None:
    """The connection ends before Content-Length's bytes: asked anew; botocore then fails too."""
    server = ScriptedServer(
        lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", close_after=lambda n: True
    )
    try:
        gets = ObjectGets(s3_client_of(server.port), "mail-bucket")
        with pytest.raises(Exception) as failed:
            gets.get("k")
        assert not isinstance(failed.value, AssertionError)
        assert any(b"User-Agent: Boto3" in head for head, _ in server.requests)
    finally:
        server.stop()


def test_an_answer_without_a_length_is_read_by_botocore() -> None:
    """A chunked 200 (S3 gives a length; a proxy might not): the lean GET leaves it to botocore,
    which reads it whole; the kept connection is not reused after an answer left unread."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    server = ScriptedServer(lambda n: chunked, close_after=lambda n: False)
    try:
        gets = ObjectGets(s3_client_of(server.port), "mail-bucket")
        assert gets.get("k") == b"hello world"
        assert gets.get("k") == b"hello world"
        assert len(server.lean()) == 2 and len(server.requests) == 4
    finally:
        server.stop()


def test_an_http_1_0_answer_closes_the_connection_after_it() -> None:
    server = ScriptedServer(
        lambda n: b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nbody %d" % (n % 10),
        close_after=lambda n: True,
    )
    try:
        gets = ObjectGets(s3_client_of(server.port), "mail-bucket")
        assert [gets.get("k") for _ in range(3)] == [b"body 1", b"body 2", b"body 3"]
        assert len(server.requests) == 3
    finally:
        server.stop()


def test_an_endpoint_that_refuses_connections_fails_as_botocore_does() -> None:
    """Nothing listens: the lean GET gives up at once and botocore's error is what the caller sees."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    gets = ObjectGets(s3_client_of(port), "mail-bucket")
    with pytest.raises(EndpointConnectionError):
        gets.get("k")
