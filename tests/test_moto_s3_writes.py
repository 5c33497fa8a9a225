"""The dev stack's moto stores plain PutObjects itself (s3_writes.py): what it stores and answers
must be what moto's own path would."""

from __future__ import annotations

import base64
import zlib

import pytest
from botocore.exceptions import ClientError
from conftest import CORPUS

CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
# Headers that differ between any two answers (request ids, dates, the object's own time).
VARYING = {
    "date",
    "server",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-amz-id-2",
    "connection",
    "last-modified",
}


@pytest.fixture
def bucket(scratch_bucket: tuple[object, str]) -> tuple[object, str]:
    return scratch_bucket


def headers(answer: dict) -> dict:
    return {k: v for k, v in answer["ResponseMetadata"]["HTTPHeaders"].items() if k not in VARYING}


def both_puts(s3, bucket: str, key: str, body: bytes, **kwargs) -> tuple[dict, dict]:
    """The plain PUT (stored by s3_writes) and the same PUT with a header that changes nothing,
    x-amz-storage-class STANDARD, which only moto's own path takes."""
    plain = s3.put_object(Bucket=bucket, Key=key, Body=body, **kwargs)
    moto = s3.put_object(Bucket=bucket, Key=key + ".moto", Body=body, StorageClass="STANDARD", **kwargs)
    return plain, moto


def stored(s3, bucket: str, key: str) -> tuple[bytes, dict, dict]:
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return got["Body"].read(), headers(got), headers(head)


def answered_by_moto(answer: dict) -> bool:
    """Only moto's own path gives a request id: this tells which path stored an object (else the
    comparisons below could pass with s3_writes never used)."""
    return "x-amzn-requestid" in answer["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize(
    ("key", "plain_path"),
    [
        ("messages/bob@example.test/plain.eml", True),
        ("messages/o+b/a b/ü€ key", True),
        # moto unquotes a key's "%41" once more than S3 does, in its PUT, HEAD and DELETE alike: a
        # key with "%" stays moto's, so that they find it.
        ("messages/x/%41~'!(*)", False),
    ],
)
def test_a_plain_put_stores_and_answers_what_moto_does(bucket, key, plain_path) -> None:
    s3, name = bucket
    body = b"Subject: x\r\n\r\nbody\r\n"
    plain, moto = both_puts(s3, name, key, body, ContentType="message/rfc822")
    assert headers(plain) == headers(moto)
    assert answered_by_moto(plain) is not plain_path
    assert answered_by_moto(moto)
    assert stored(s3, name, key) == stored(s3, name, key + ".moto")
    assert stored(s3, name, key)[0] == body
    assert len(s3.list_objects_v2(Bucket=name)["Contents"]) == 2


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_is_stored_byte_for_byte(bucket) -> None:
    s3, name = bucket
    for index, path in enumerate(CORPUS_FILES):
        raw = path.read_bytes()
        plain, moto = both_puts(s3, name, f"messages/corpus/{index}", raw, ContentType="message/rfc822")
        assert headers(plain) == headers(moto)
        assert not answered_by_moto(plain)
        key = f"messages/corpus/{index}"
        assert stored(s3, name, key) == stored(s3, name, key + ".moto")
        assert stored(s3, name, key)[0] == raw


def test_an_overwrite_replaces_the_object(bucket) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="k", Body=b"first version, longer")
    assert not answered_by_moto(s3.put_object(Bucket=name, Key="k", Body=b"second"))
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"second"
    assert len(s3.list_objects_v2(Bucket=name)["Contents"]) == 1


def test_a_checksum_that_does_not_match_is_not_stored_as_plain(bucket) -> None:
    """A wrong CRC32 goes to moto's path (which stores it regardless, as it always has): the
    plain path never stores a body whose checksum it did not verify."""
    s3, name = bucket
    body = b"Subject: x\r\n\r\nbody\r\n"
    wrong = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
    answer = s3.put_object(Bucket=name, Key="bad", Body=body, ChecksumCRC32=wrong)
    assert answered_by_moto(answer)


def test_what_the_plain_path_does_not_take_moto_does(bucket) -> None:
    s3, name = bucket
    answer = s3.put_object(Bucket=name, Key="meta", Body=b"x", Metadata={"kind": "message"})
    assert answered_by_moto(answer)
    metadata = s3.head_object(Bucket=name, Key="meta")["Metadata"]
    assert {k.lower(): v for k, v in metadata.items()} == {"kind": "message"}  # moto's case: "Kind"
    s3.put_object(Bucket=name, Key="tagged", Body=b"x", Tagging="a=b")
    assert s3.get_object_tagging(Bucket=name, Key="tagged")["TagSet"] == [{"Key": "a", "Value": "b"}]
    with pytest.raises(ClientError) as no_bucket:
        s3.put_object(Bucket=f"{name}-gone", Key="k", Body=b"x")
    assert no_bucket.value.response["Error"]["Code"] == "NoSuchBucket"
