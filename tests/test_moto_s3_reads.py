"""The dev stack's moto answers plain GetObjects itself (s3_reads.py): the answers must be moto's."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import CORPUS

from mailpipe_tools.local.moto_process import RequestCounts

# Headers that differ between any two answers (request ids, dates of the answer itself).
CORPUS_FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
VARYING = {"date", "server", "x-amzn-requestid", "x-amz-request-id", "x-amz-id-2", "connection"}


@pytest.fixture
def bucket(scratch_bucket: tuple[object, str]) -> tuple[object, str]:
    return scratch_bucket


def both_answers(s3, bucket: str, key: str) -> tuple[dict, dict]:
    """The plain GET (answered by s3_reads) and the same GET with a condition that holds, which
    only moto's own path answers."""
    plain = s3.get_object(Bucket=bucket, Key=key)
    moto = s3.get_object(Bucket=bucket, Key=key, IfMatch=plain["ETag"])
    return plain, moto


def comparable(answer: dict) -> tuple[bytes, int, dict]:
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    return (
        answer["Body"].read(),
        answer["ResponseMetadata"]["HTTPStatusCode"],
        {k: v for k, v in headers.items() if k not in VARYING},
    )


@pytest.mark.parametrize(
    "key",
    ["messages/bob@example.test/plain", "messages/o+b/a b/ü€ key", "messages/x/%41~'!(*)"],
)
def test_a_plain_get_answers_what_moto_answers(bucket, key) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key=key, Body=b"Subject: x\r\n\r\nbody\r\n", Metadata={"kind": "message"})
    plain, moto = both_answers(s3, name, key)
    assert comparable(plain) == comparable(moto)


@pytest.mark.skipif(not CORPUS_FILES, reason=f"missing corpus: {CORPUS}")
def test_every_corpus_message_comes_back_byte_for_byte(bucket) -> None:
    s3, name = bucket
    messages = [path.read_bytes() for path in CORPUS_FILES]
    for index, raw in enumerate(messages):
        s3.put_object(Bucket=name, Key=f"messages/corpus/{index}", Body=raw)
    for index, raw in enumerate(messages):
        plain, moto = both_answers(s3, name, f"messages/corpus/{index}")
        assert comparable(plain) == comparable(moto)
        assert s3.get_object(Bucket=name, Key=f"messages/corpus/{index}")["Body"].read() == raw


def test_what_the_plain_path_does_not_answer_moto_does(bucket) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="k", Body=b"0123456789")
    assert s3.get_object(Bucket=name, Key="k", Range="bytes=2-4")["Body"].read() == b"234"
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=name, Key="not-there")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket=f"{name}-gone", Key="k")
    assert no_bucket.value.response["Error"]["Code"] == "NoSuchBucket"
    s3.delete_object(Bucket=name, Key="k")
    with pytest.raises(ClientError) as deleted:
        s3.get_object(Bucket=name, Key="k")
    assert deleted.value.response["Error"]["Code"] == "NoSuchKey"


def test_an_overwritten_object_reads_its_new_body(bucket) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="k", Body=b"old")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"old"
    s3.put_object(Bucket=name, Key="k", Body=b"newer")
    answer = s3.get_object(Bucket=name, Key="k")
    assert answer["Body"].read() == b"newer"
    assert answer["ContentLength"] == 5


def test_plain_gets_are_still_counted(stack, bucket) -> None:
    s3, name = bucket
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    counts = RequestCounts(stack.moto.endpoint)
    before = counts.counts()["s3:GET"]
    for _ in range(3):
        s3.get_object(Bucket=name, Key="k")["Body"].read()
    assert counts.counts()["s3:GET"] - before == 3
