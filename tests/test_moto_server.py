"""The dev stack's moto server: transactions stay all-or-nothing, local index queries, projections,
kept-open connections and bounded streams."""

from __future__ import annotations

import http.client
import secrets

import pytest
from botocore.exceptions import ClientError

from mailpipe import aws


@pytest.fixture
def table(stack):
    client = aws.client("dynamodb")
    name = f"tx-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName=name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    yield client, name
    client.delete_table(TableName=name)


def items(client, name: str) -> dict[str, dict]:
    return {i["pk"]["S"]: i for i in client.scan(TableName=name, ConsistentRead=True)["Items"]}


def update_a(expected: str, expression: str = "SET n = :new") -> dict:
    return {
        "Update": {
            "TableName": "",
            "Key": {"pk": {"S": "a"}},
            "UpdateExpression": expression,
            "ConditionExpression": "n = :old",
            "ExpressionAttributeValues": {":old": {"N": expected}, ":new": {"N": "2"}},
        }
    }


def put_b() -> dict:
    return {
        "Put": {
            "TableName": "",
            "Item": {"pk": {"S": "b"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def named(name: str, *operations: dict) -> list[dict]:
    for operation in operations:
        next(iter(operation.values()))["TableName"] = name
    return list(operations)


def test_a_transaction_that_holds_applies_every_operation(table) -> None:
    client, name = table
    client.transact_write_items(TransactItems=named(name, update_a("1"), put_b()))
    assert items(client, name)["a"]["n"] == {"N": "2"} and "b" in items(client, name)


def test_a_failed_condition_changes_nothing_and_names_the_operation(table) -> None:
    client, name = table
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(TransactItems=named(name, put_b(), update_a("7")))
    reasons = [r["Code"] for r in failed.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert set(items(client, name)) == {"a"} and items(client, name)["a"]["n"] == {"N": "1"}


def test_an_operation_failing_after_the_checks_changes_nothing(table) -> None:
    client, name = table
    broken = update_a("1", expression="SET n = n + :missing")  # passes the condition, fails to apply
    with pytest.raises(ClientError):
        client.transact_write_items(TransactItems=named(name, put_b(), broken))
    assert set(items(client, name)) == {"a"} and items(client, name)["a"]["n"] == {"N": "1"}


def test_every_failed_condition_is_named_and_the_message_is_dynamodbs(table) -> None:
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "b"}})
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(TransactItems=named(name, update_a("7"), put_b()))
    error = failed.value.response
    assert [r["Code"] for r in error["CancellationReasons"]] == ["ConditionalCheckFailed"] * 2
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert "[ConditionalCheckFailed, ConditionalCheckFailed]" in error["Error"]["Message"]
    assert items(client, name)["a"]["n"] == {"N": "1"}


def test_a_failed_condition_asking_for_the_old_item_gets_it(table) -> None:
    client, name = table
    update = update_a("7")
    update["Update"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    with pytest.raises(ClientError) as failed:
        client.transact_write_items(TransactItems=named(name, update))
    assert failed.value.response["CancellationReasons"][0]["Item"]["n"] == {"N": "1"}


def test_a_local_index_query_reads_its_partition_in_index_order(stack) -> None:
    client = aws.client("dynamodb")
    name = f"lsi-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by_n",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "n", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        for pk, sk, n in [("a", "1", 30), ("a", "2", 10), ("a", "3", 20), ("b", "1", 25), ("a", "4", None)]:
            item = {"pk": {"S": pk}, "sk": {"S": sk}}
            if n is not None:
                item["n"] = {"N": str(n)}
            client.put_item(TableName=name, Item=item)
        found = client.query(
            TableName=name,
            IndexName="by_n",
            KeyConditionExpression="pk = :pk AND n > :low",
            ExpressionAttributeValues={":pk": {"S": "a"}, ":low": {"N": "15"}},
            ConsistentRead=True,
        )["Items"]
        assert [(i["sk"]["S"], i["n"]["N"]) for i in found] == [("3", "20"), ("1", "30")]
        everything = client.query(
            TableName=name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "a"}},
        )["Items"]
        assert [i["sk"]["S"] for i in everything] == ["1", "2", "3", "4"]  # the table itself, unchanged
    finally:
        client.delete_table(TableName=name)


LIST_TABLES = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/dynamodb/aws4_request",
}


def test_connections_are_kept_open_between_requests(stack) -> None:
    """Each AWS call of the dev stack must not pay for a new TCP connection and server thread."""
    host, port = stack.moto.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(3):
            connection.request("POST", "/", body=b"{}", headers=LIST_TABLES)
            response = connection.getresponse()
            assert b"TableNames" in response.read()
            assert response.status == 200
            assert response.getheader("Connection", "").lower() != "close"
            assert not response.will_close
        sockets = {id(connection.sock)}
        connection.request("POST", "/", body=b"{}", headers=LIST_TABLES)
        connection.getresponse().read()
        assert sockets == {id(connection.sock)}  # the same socket all along
    finally:
        connection.close()


def test_projections_pick_top_level_attributes_and_leave_the_item_alone(table) -> None:
    # The dev stack's moto is a process of its own (moto_process.py): judged by its answers.
    client, name = table
    item = {
        "pk": {"S": "p"},
        "header": {"B": b"\x00\x01bytes"},
        "uid": {"N": "7"},
        "map": {"M": {"inner": {"S": "x"}, "other": {"S": "y"}}},
        "list": {"L": [{"S": "first"}, {"S": "second"}]},
    }
    client.put_item(TableName=name, Item=item)
    names = {"#u": "uid", "#h": "header", "#missing": "expunged"}
    projected = client.batch_get_item(
        RequestItems={
            name: {
                "Keys": [{"pk": {"S": "p"}}],
                "ProjectionExpression": "#u, #h, #missing",
                "ExpressionAttributeNames": names,
            }
        }
    )["Responses"][name]
    assert projected == [{"uid": {"N": "7"}, "header": {"B": b"\x00\x01bytes"}}]
    nested = client.get_item(
        TableName=name, Key={"pk": {"S": "p"}}, ProjectionExpression="map.inner, list[1], uid"
    )
    assert nested["Item"] == {
        "map": {"M": {"inner": {"S": "x"}}},
        "list": {"L": [{"S": "second"}]},
        "uid": {"N": "7"},
    }
    assert client.get_item(TableName=name, Key={"pk": {"S": "p"}})["Item"] == item


def test_a_stream_keeps_its_newest_records_and_iterators_only(moto_here, monkeypatch) -> None:
    """moto would keep every stream record and shard iterator forever (_install_bounded_streams)."""
    import boto3
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    from mailpipe_tools.local import moto_server

    monkeypatch.setattr(moto_server, "STREAM_RECORDS_KEPT", 20)
    monkeypatch.setattr(moto_server, "SHARD_ITERATORS_KEPT", 5)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = session.client("dynamodb", endpoint_url=moto_here.endpoint)
    streams = session.client("dynamodbstreams", endpoint_url=moto_here.endpoint)
    name = f"stream-{secrets.token_hex(4)}"
    arn = client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    try:
        (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        oldest = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for n in range(50):
            client.put_item(TableName=name, Item={"pk": {"S": str(n)}})
        # An iterator from before the trim reads on from the oldest record kept, in order.
        page = streams.get_records(ShardIterator=oldest, Limit=1000)
        assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"]] == [str(n) for n in range(30, 50)]
        sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
        assert sequence == sorted(sequence) and len(set(sequence)) == 20
        # Reading on from the last one: only what is written after it.
        client.put_item(TableName=name, Item={"pk": {"S": "last"}})
        iterator, after = page["NextShardIterator"], []
        for _ in range(10):
            page = streams.get_records(ShardIterator=iterator)
            iterator = page["NextShardIterator"]
            after += [r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"]]
        assert after == ["last"]
        backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
        assert len(backend.shard_iterators) <= 5
    finally:
        client.delete_table(TableName=name)


def test_a_queue_remembers_only_its_newest_deleted_receipt_handles(moto_here, monkeypatch) -> None:
    """moto would keep every receipt handle of every deleted message (_install_bounded_sqs_deletions)."""
    import boto3
    from moto.sqs.models import sqs_backends

    from mailpipe_tools.local import moto_server

    monkeypatch.setattr(moto_server, "DELETED_RECEIPTS_KEPT", 10)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    sqs = session.client("sqs", endpoint_url=moto_here.endpoint)
    name = f"deleted-{secrets.token_hex(4)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        handles = []
        for n in range(30):
            sqs.send_message(QueueUrl=url, MessageBody=str(n))
            (received,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"])
            handles.append(received["ReceiptHandle"])
        queue = sqs_backends["123456789012"]["us-east-1"].queues[name]
        # The newest ten (a message's every handle is remembered: the one from sending too).
        assert len(queue.deleted_messages) == 10 and list(queue.deleted_messages)[-1] == handles[-1]
        assert not set(handles[:20]) & set(queue.deleted_messages)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handles[-1])  # deleting twice still succeeds
        sqs.send_message(QueueUrl=url, MessageBody="kept")
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["kept"]
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_a_topic_remembers_only_its_newest_published_messages(moto_here, monkeypatch) -> None:
    """moto would keep every message published to a topic (_install_bounded_sns_notifications)."""
    import boto3
    from moto.sns.models import sns_backends

    from mailpipe_tools.local import moto_server

    monkeypatch.setattr(moto_server, "SENT_NOTIFICATIONS_KEPT", 5)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    sns, sqs = (session.client(s, endpoint_url=moto_here.endpoint) for s in ("sns", "sqs"))
    name = f"topic-{secrets.token_hex(4)}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    try:
        for n in range(20):
            sns.publish(TopicArn=arn, Message=str(n))
        topic = sns_backends["123456789012"]["us-east-1"].topics[arn]
        assert [sent[1] for sent in topic.sent_notifications] == ["15", "16", "17", "18", "19"]
        delivered = set()
        for _ in range(10):  # every message still reaches the subscribers
            delivered |= {
                m["Body"]
                for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            }
        assert delivered == {str(n) for n in range(20)}
    finally:
        sns.delete_topic(TopicArn=arn)
        sqs.delete_queue(QueueUrl=url)


def test_the_memory_report_counts_what_moto_holds(moto_here) -> None:
    """GET /_mailpipe/memory (moto_memory.py): how bench/memory_per_message.py sees into moto's child."""
    import json
    from urllib.request import urlopen

    import boto3

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = session.client("dynamodb", endpoint_url=moto_here.endpoint)
    name = f"memory-{secrets.token_hex(4)}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    try:
        for n in range(3):
            client.put_item(TableName=name, Item={"pk": {"S": str(n)}})
        with urlopen(f"{moto_here.endpoint}/_mailpipe/memory?trim=1", timeout=60) as response:
            report = json.loads(response.read())
        assert report["tables"][name] == {"items": 3, "partitions": 3, "stream_records": 3}
        assert report["rss"] > 0 and isinstance(report["trimmed"], int)
        assert len(report["objects"]) == 20 and report["objects"][0][1] >= report["objects"][-1][1]
    finally:
        client.delete_table(TableName=name)
