"""The dev stack's moto serves small plain S3 GETs on waitress's loop thread (inline_gets.py):
answered while every worker is held by an SQS long poll; anything else still waits for a worker."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mailpipe.s3_gets import ObjectGets
from mailpipe_tools.local.inline_gets import INLINE_BYTES
from mailpipe_tools.local.moto_server import WORKER_THREADS
from mailpipe_tools.local.provision import REGION

WORKERS = 2  # the server's worker threads during these tests, each held by a long poll


def client(server: Any, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=60, retries={"max_attempts": 1}),
    )


class Result:
    """A call made on a thread of its own: `thread.is_alive()` while the server has not answered."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except Exception as exc:  # NoSuchKey, say: the answer, as any other
            self.value = exc


class HeldWorkers:
    """hold(): shrinks a moto server to WORKERS worker threads and holds each with a 20 s SQS long
    poll on an empty queue; release(): gives the workers back and ends the polls."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._dispatcher = server._server.task_dispatcher
        self._sqs = client(server, "sqs")
        self._queue = self._sqs.create_queue(QueueName=f"inline-{secrets.token_hex(4)}")["QueueUrl"]
        self.polls: list[Result] = []

    def hold(self) -> None:
        self._dispatcher.set_thread_count(WORKERS)
        deadline = time.monotonic() + 30
        while len(self._dispatcher.threads) > WORKERS:  # the others end once idle
            assert time.monotonic() < deadline, "waitress's extra workers did not stop"
            time.sleep(0.05)
        sqs = client(self._server, "sqs")
        for _ in range(WORKERS):
            self.polls.append(Result(lambda: sqs.receive_message(QueueUrl=self._queue, WaitTimeSeconds=20)))
        while self._dispatcher.active_count < WORKERS or self._dispatcher.queue:  # each poll on a worker
            assert time.monotonic() < deadline, "the long polls did not reach the workers"
            time.sleep(0.05)

    def release(self) -> None:
        self._dispatcher.set_thread_count(WORKER_THREADS)  # first: the messages below need a worker
        for _ in self.polls:
            self._sqs.send_message(QueueUrl=self._queue, MessageBody="release")
        for poll in self.polls:
            poll.thread.join(timeout=30)
        self.polls = []


@pytest.fixture
def workers(moto_here: Any) -> Iterator[HeldWorkers]:
    held = HeldWorkers(moto_here)
    try:
        yield held
    finally:
        held.release()


def bucket_with(server: Any, objects: dict[str, bytes]) -> tuple[Any, str]:
    s3 = client(server, "s3")
    bucket = f"inline-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return s3, bucket


def test_small_plain_gets_are_answered_while_every_worker_is_busy(moto_here, workers) -> None:
    body = b"Subject: inline\r\n\r\n" + b"x" * 5000
    s3, bucket = bucket_with(moto_here, {"messages/u/small": body, "messages/ü €/b": b"2"})
    workers.hold()
    gets = ObjectGets(s3, bucket)
    assert gets.get("messages/u/small") == body
    assert gets.get("messages/ü €/b") == b"2"
    assert s3.get_object(Bucket=bucket, Key="messages/u/small")["Body"].read() == body  # botocore's
    assert all(poll.thread.is_alive() for poll in workers.polls)  # the workers were held throughout


def test_other_requests_still_wait_for_a_worker(moto_here, workers) -> None:
    big, small = b"y" * (INLINE_BYTES + 1), b"Subject: small\r\n\r\nz\r\n"
    s3, bucket = bucket_with(moto_here, {"big": big, "small": small})
    etag = s3.head_object(Bucket=bucket, Key="small")["ETag"]
    workers.hold()
    dispatcher = moto_here._server.task_dispatcher
    waiting = [
        Result(lambda: client(moto_here, "s3").get_object(Bucket=bucket, Key="big")["Body"].read()),
        Result(
            lambda: (
                client(moto_here, "s3").get_object(Bucket=bucket, Key="small", IfMatch=etag)["Body"].read()
            )
        ),
        Result(lambda: client(moto_here, "s3").get_object(Bucket=bucket, Key="missing")),
    ]
    deadline = time.monotonic() + 30
    while len(dispatcher.queue) < len(waiting):  # parsed, and queued for a worker
        assert time.monotonic() < deadline, "the requests did not reach waitress's queue"
        time.sleep(0.05)
    assert ObjectGets(s3, bucket).get("small") == small  # meanwhile, on the loop thread
    assert all(result.thread.is_alive() for result in waiting)
    workers.release()
    for result in waiting:
        result.thread.join(timeout=30)
    too_big, conditional, missing = (result.value for result in waiting)
    assert too_big == big
    assert conditional == small
    assert isinstance(missing, ClientError) and missing.response["Error"]["Code"] == "NoSuchKey"
