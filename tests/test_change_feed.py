"""The change feed (mailpipe.changes, docs/change-feed.md) on the dev stack: the mailbox table's
stream read by the relay, published to the changes topic, received by per-process queues.

The relay tests read real stream records from moto after real store writes; the feed tests run
ChangeFeeds as extra gateway processes would, against the stack's topic, whose notices come from
the stack's own stream source and relay function.
"""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from conftest import wait_for

from mailpipe import aws
from mailpipe.changes.feed import HEARTBEAT_TAG, NAME_PREFIX, SUBSCRIPTION_TAG, ChangeFeed
from mailpipe.changes.notice import MailboxNotice, decode_batch, encode_batch
from mailpipe.changes.relay import MAX_MESSAGE_BYTES, batches, notices_of
from mailpipe_tools.local import event_pattern

MESSAGE = b"From: a@remote.test\r\nSubject: feed\r\n\r\nbody\r\n"


# --------------------------------------------------------------------------- the relay


class StreamReader:
    """Reads the mailbox table's stream from where it was made (LATEST), as a second reader."""

    def __init__(self, stack: Any) -> None:
        self.streams = aws.client("dynamodbstreams")
        self.arn = stack.deployment.stream_arns["MailboxTable"]
        (shard,) = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
        )["ShardIterator"]

    def read(self) -> list[dict[str, Any]]:
        """Every record written since the last read."""
        records: list[dict[str, Any]] = []
        while True:
            page = self.streams.get_records(ShardIterator=self.iterator)
            self.iterator = page["NextShardIterator"]
            if not page["Records"]:
                return records
            records += page["Records"]


@pytest.fixture
def reader(stack) -> StreamReader:
    return StreamReader(stack)


def _only(records: list[dict[str, Any]]) -> MailboxNotice:
    # (CREATE also subscribes: that subscription item's notice, without a mailbox id, is left out.)
    (notice,) = [n for n in notices_of(records) if n.mailbox_id]
    return notice


def test_each_mailbox_change_becomes_one_notice(stack, store, owner, reader) -> None:
    created = store.create_mailbox(owner, "Projects")
    notice = _only(reader.read())
    assert notice == MailboxNotice(
        owner,
        "Projects",
        created.mailbox_id,
        1,
        created.highestmodseq,
        False,
        1,
        size_total=0,
        message_total=0,
        prunedmodseq=0,
    )

    _, uid = store.append(owner, "Projects", MESSAGE)
    records = reader.read()
    assert len(records) > 1  # the message item too, which the relay leaves out
    notice = _only(records)
    assert (notice.name, notice.uidnext, notice.removed) == ("Projects", uid + 1, False)
    assert notice.highestmodseq == store.get_mailbox(owner, "Projects").highestmodseq

    store.update_flags(owner, "Projects", [uid], "add", ["\\Seen"])
    flagged = _only(reader.read())
    assert flagged.highestmodseq == notice.highestmodseq + 1 and flagged.uidnext == notice.uidnext

    store.expunge(owner, "Projects", [uid])
    expunged = _only(reader.read())
    assert expunged.highestmodseq == flagged.highestmodseq + 1

    # RENAME: the old name is gone, the new one has the same mailbox and counters.
    store.rename_mailbox(owner, "Projects", "Done")
    by_name = {n.name: n for n in [n for n in notices_of(reader.read()) if n.mailbox_id]}
    assert set(by_name) == {"Projects", "Done"}
    assert by_name["Projects"].removed and not by_name["Done"].removed
    assert by_name["Projects"].mailbox_id == by_name["Done"].mailbox_id == created.mailbox_id
    assert by_name["Done"].highestmodseq == expunged.highestmodseq

    store.delete_mailbox(owner, "Done")
    deleted = _only(reader.read())
    assert (deleted.name, deleted.mailbox_id, deleted.removed) == ("Done", created.mailbox_id, True)


def test_delivered_mail_becomes_a_notice_of_the_inbox(stack, store, owner, reader) -> None:
    message = EmailMessage()
    message["From"] = "sender@remote.test"
    message["To"] = owner
    message["Subject"] = "through the inbound function"
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        client.send_message(message)
    records: list[dict[str, Any]] = []

    def delivered() -> bool:
        records.extend(reader.read())
        return any(n.name == "INBOX" and n.uidnext > 1 for n in notices_of(records))

    wait_for(delivered, timeout=30)
    (inbox,) = [n for n in notices_of(records) if n.name == "INBOX"]
    assert inbox.owner == owner and inbox.uidnext == 2
    assert inbox.mailbox_id == store.get_mailbox(owner, "INBOX").mailbox_id


def test_the_templates_filter_passes_mailbox_items_only(stack, store, owner, reader) -> None:
    (source,) = stack.template.stream_event_sources()
    store.append(owner, "INBOX", MESSAGE)
    records = reader.read()
    passed = [r for r in records if any(event_pattern.matches(p, r) for p in source.filters)]
    assert len(passed) == 1 < len(records)
    assert passed[0]["dynamodb"]["Keys"]["sk"]["S"] == "mailbox#INBOX"
    # What it filters out the relay would ignore anyway.
    assert notices_of(records) == notices_of(passed)


def test_a_batch_keeps_the_latest_notice_of_each_mailbox_in_stream_order(stack, store, owner, reader) -> None:
    for name in ("INBOX", "Sent", "INBOX"):
        store.append(owner, name, MESSAGE)
    notices = [n for n in notices_of(reader.read()) if n.mailbox_id]
    assert [(n.name, n.uidnext) for n in notices] == [("Sent", 2), ("INBOX", 3)]


def test_records_of_other_items_and_unreadable_ones_are_ignored() -> None:
    message_item = {
        "eventName": "INSERT",
        "dynamodb": {"Keys": {"pk": {"S": "mailbox#abc"}, "sk": {"S": "uid#0000000001"}}, "NewImage": {}},
    }
    broken = {
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"pk": {"S": "user#a@b.test"}, "sk": {"S": "mailbox#INBOX"}},
            "NewImage": {"pk": {"S": "user#a@b.test"}, "uidnext": {"S": "not a number"}},
        },
    }
    lease = {
        "eventName": "INSERT",
        "dynamodb": {"Keys": {"pk": {"S": "user#a@b.test"}, "sk": {"S": "lease#pop3"}}},
    }
    assert notices_of([message_item, broken, lease, {}]) == []


def test_batches_stay_under_the_sns_limit_and_keep_every_notice_in_order() -> None:
    notices = [
        MailboxNotice(
            f"user{i}@example.test", "Folder/" + "é" * 40 + str(i), f"id-{i:08d}", i, 10 * i, i % 7 == 0
        )
        for i in range(5000)
    ]
    bodies = batches(notices)
    assert len(bodies) > 1
    assert all(len(body.encode()) <= MAX_MESSAGE_BYTES for body in bodies)
    assert [n for body in bodies for n in decode_batch(body)] == notices
    # A limit that fits a few notices each.
    small = batches(notices[:50], max_bytes=1000)
    assert all(len(body.encode()) <= 1000 for body in small)
    assert [n for body in small for n in decode_batch(body)] == notices[:50]
    assert batches([]) == []


def test_unreadable_batches_are_refused() -> None:
    for body in ("", "{}", "[1]", '{"v": 2, "notices": []}', '{"v": 1, "notices": [{"owner": 1}]}', "\xff"):
        with pytest.raises(ValueError):
            decode_batch(body)
    notice = MailboxNotice("a@b.test", "INBOX", "id", 5, 9, False)
    assert decode_batch(encode_batch([notice])) == [notice]
    assert json.loads(encode_batch([notice]))["notices"][0] == notice.to_json()


# --------------------------------------------------------------------------- the feed


class Received:
    """What a feed's listeners were told."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.notices: list[MailboxNotice] = []
        self.health: list[bool] = []
        feed.add_listener(self.notices.extend)
        feed.add_health_listener(self.health.append)

    def of(self, owner: str, name: str) -> list[MailboxNotice]:
        return [n for n in list(self.notices) if n.owner == owner and n.name == name]


@pytest.fixture
def feeds(stack) -> Iterator[list[ChangeFeed]]:
    """Makes ChangeFeeds on the stack's topic, as gateway processes would; closes them after."""
    made: list[ChangeFeed] = []
    yield made
    for feed in made:
        feed.close()


def _feed(stack, feeds: list[ChangeFeed], **options: Any) -> tuple[ChangeFeed, Received]:
    feed = ChangeFeed(
        aws.long_poll_client("sqs"),
        aws.client("sns"),
        stack.deployment.refs["MailboxChangesTopic"],
        **options,
    )
    received = Received(feed)
    feeds.append(feed)
    feed.start()
    assert feed.healthy and received.health == [True]
    return feed, received


def test_a_write_reaches_every_process_listening(stack, store, owner, feeds) -> None:
    _, first = _feed(stack, feeds)
    _, second = _feed(stack, feeds)
    mailbox, uid = store.append(owner, "INBOX", MESSAGE)
    for received in (first, second):
        wait_for(lambda received=received: any(n.uidnext == uid + 1 for n in received.of(owner, "INBOX")))
        (notice,) = [n for n in received.of(owner, "INBOX") if n.uidnext == uid + 1]
        assert notice.mailbox_id == mailbox.mailbox_id and not notice.removed


def test_close_removes_the_queue_and_its_subscription(stack, feeds) -> None:
    sqs, sns = aws.client("sqs"), aws.client("sns")
    topic = stack.deployment.refs["MailboxChangesTopic"]
    feed, _ = _feed(stack, feeds)
    url = feed.queue_url
    tags = sqs.list_queue_tags(QueueUrl=url)["Tags"]
    subscription = tags[SUBSCRIPTION_TAG]
    assert subscription in _subscriptions(sns, topic)
    feed.close()
    assert not feed.healthy and feed.queue_url is None
    assert url not in sqs.list_queues(QueueNamePrefix=NAME_PREFIX).get("QueueUrls", [])
    assert subscription not in _subscriptions(sns, topic)


def test_queues_of_dead_processes_are_swept(stack, feeds) -> None:
    sqs, sns = aws.client("sqs"), aws.client("sns")
    topic = stack.deployment.refs["MailboxChangesTopic"]
    # A process that died an hour ago, and one that beat a minute ago.
    dead = sqs.create_queue(
        QueueName=NAME_PREFIX + "dead-process", tags={HEARTBEAT_TAG: str(int(time.time()) - 3600)}
    )["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dead_subscription = sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=dead_arn, ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    sqs.tag_queue(QueueUrl=dead, Tags={SUBSCRIPTION_TAG: dead_subscription})
    alive = sqs.create_queue(
        QueueName=NAME_PREFIX + "live-process", tags={HEARTBEAT_TAG: str(int(time.time()) - 60)}
    )["QueueUrl"]
    try:
        _feed(stack, feeds)  # sweeps as it starts
        wait_for(lambda: dead not in sqs.list_queues(QueueNamePrefix=NAME_PREFIX).get("QueueUrls", []))
        assert dead_subscription not in _subscriptions(sns, topic)
        assert alive in sqs.list_queues(QueueNamePrefix=NAME_PREFIX)["QueueUrls"]
    finally:
        sqs.delete_queue(QueueUrl=alive)


def test_a_queue_deleted_under_the_feed_is_made_again(stack, store, owner, feeds) -> None:
    feed, received = _feed(stack, feeds, wait_seconds=1)
    lost = feed.queue_url
    aws.client("sqs").delete_queue(QueueUrl=lost)
    # Unhealthy (listeners must poll meanwhile), then healthy on a new queue.
    wait_for(lambda: received.health[-1:] == [True] and len(received.health) == 3)
    assert received.health == [True, False, True]
    assert feed.healthy and feed.queue_url not in (None, lost)
    _, uid = store.append(owner, "INBOX", MESSAGE)
    wait_for(lambda: any(n.uidnext == uid + 1 for n in received.of(owner, "INBOX")))


def test_a_feed_that_cannot_subscribe_is_unhealthy_and_keeps_trying(stack, feeds) -> None:
    topic = stack.deployment.refs["MailboxChangesTopic"]
    missing = topic + "-missing"
    feed = ChangeFeed(aws.long_poll_client("sqs"), aws.client("sns"), missing, wait_seconds=1)
    received = Received(feed)
    feeds.append(feed)
    feed.start()
    assert not feed.healthy and received.health == []
    # The queue it made for the failed subscription is not left behind.
    wait_for(lambda: feed.queue_url is None)


def _subscriptions(sns: Any, topic: str) -> set[str]:
    return {s["SubscriptionArn"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}


def test_the_stacks_imap_server_has_the_stacks_feed_subscribed(stack) -> None:
    feed = stack.imap.context.changes
    assert feed is stack.changes and feed.healthy
    topic = stack.deployment.refs["MailboxChangesTopic"]
    tags = aws.client("sqs").list_queue_tags(QueueUrl=feed.queue_url)["Tags"]
    assert tags[SUBSCRIPTION_TAG] in _subscriptions(aws.client("sns"), topic)
