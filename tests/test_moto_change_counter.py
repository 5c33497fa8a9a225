"""The dev stack's moto counts the requests that may change what its snapshot holds (DynamoDB items,
SQS messages, S3 objects): snapshot.Saver rewrites the whole state when the count moved, so a
request that changed none of that must not move it (a restarted stack's start-up did, for nothing)."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mailpipe_tools.local.provision import REGION


def client(server: Any, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def moved(server: Any, call: Any) -> int:
    before = server.changes.count
    with contextlib.suppress(ClientError):
        call()
    return server.changes.count - before


@pytest.fixture
def table(moto_here: Any) -> Any:
    dynamodb = client(moto_here, "dynamodb")
    name = f"changes-{secrets.token_hex(4)}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield dynamodb, name
    dynamodb.delete_table(TableName=name)


def test_what_the_snapshot_holds_moves_the_count(moto_here, table) -> None:
    dynamodb, name = table
    sqs, s3 = client(moto_here, "sqs"), client(moto_here, "s3")
    queue = sqs.create_queue(QueueName=f"changes-{secrets.token_hex(4)}")["QueueUrl"]
    bucket = f"changes-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    assert moved(moto_here, lambda: dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}})) == 1
    assert moved(moto_here, lambda: sqs.send_message(QueueUrl=queue, MessageBody="m")) == 1
    assert moved(moto_here, lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x")) == 1
    assert moved(moto_here, lambda: s3.delete_object(Bucket=bucket, Key="k")) == 1


def test_failures_reads_and_what_the_snapshot_does_not_hold_leave_it(moto_here, table) -> None:
    dynamodb, name = table
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}})
    sqs, sns = client(moto_here, "sqs"), client(moto_here, "sns")
    failed_put = lambda: dynamodb.put_item(  # noqa: E731
        TableName=name, Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)"
    )
    with pytest.raises(ClientError):
        failed_put()
    assert moved(moto_here, failed_put) == 0
    assert moved(moto_here, lambda: dynamodb.get_item(TableName=name, Key={"pk": {"S": "a"}})) == 0
    queue_name = f"changes-{secrets.token_hex(4)}"
    assert moved(moto_here, lambda: sqs.create_queue(QueueName=queue_name)) == 0
    queue = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    assert moved(moto_here, lambda: sqs.tag_queue(QueueUrl=queue, Tags={"beat": "1"})) == 0
    assert (
        moved(moto_here, lambda: sqs.set_queue_attributes(QueueUrl=queue, Attributes={"DelaySeconds": "0"}))
        == 0
    )
    topic = sns.create_topic(Name=f"changes-{secrets.token_hex(4)}")["TopicArn"]
    assert moved(moto_here, lambda: sns.publish(TopicArn=topic, Message="notice")) == 0
    assert moved(moto_here, lambda: sqs.delete_message(QueueUrl=queue, ReceiptHandle="not-a-handle")) == 0
