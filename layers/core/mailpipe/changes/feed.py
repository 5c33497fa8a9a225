"""The change feed as one process receives it: its own SQS queue subscribed to the changes topic.

Each access gateway process (an ECS task) makes a queue of its own at start, lets the topic send to
it, subscribes it with raw delivery (the SQS body is the relay's message as published) and
long-polls it on one thread: idle, that is one request per `wait_seconds` per process, whatever the
number of sessions. It deletes queue and subscription when it closes; a process that died without
closing leaves them behind, so every process also deletes the queues whose heartbeat tag (refreshed
every `heartbeat_seconds`) is older than `stale_seconds`, with their subscriptions.

Delivery is at most once and may be late: a notice is lost while the queue is not subscribed
(before start, during a rebuild) and SNS may deliver one twice. A notice only says "this mailbox
changed, up to these counters", so a consumer treats it as a hint, applies it idempotently, and
whenever `healthy` is False (or turns True again) checks the store itself.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailpipe.changes.notice import MailboxNotice, decode_batch

log = logging.getLogger(__name__)

NAME_PREFIX = "mailpipe-changes-"
HEARTBEAT_TAG = "mailpipe:heartbeat"
SUBSCRIPTION_TAG = "mailpipe:subscription"
# A notice older than this is of no use to anyone (a consumer revalidates after any gap), and a
# queue nobody reads must not hold a backlog: SQS's minimum retention.
RETENTION_SECONDS = 60
_QUEUE_GONE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_MAX_BACKOFF = 30.0

NoticeListener = Callable[[list[MailboxNotice]], None]
HealthListener = Callable[[bool], None]


class ChangeFeed:
    """The mailbox notices published to `topic_arn`, received through a queue of this process's own.

    `sqs` must allow reads longer than `wait_seconds` (`mailpipe.aws.long_poll_client`).
    Listeners are called on the feed's own thread: they must be quick and thread-safe (hand the
    notices to an event loop with `call_soon_threadsafe`, say).
    """

    def __init__(
        self,
        sqs: Any,
        sns: Any,
        topic_arn: str,
        *,
        name_prefix: str = NAME_PREFIX,
        wait_seconds: int = 20,
        heartbeat_seconds: float = 60.0,
        stale_seconds: float = 600.0,
        sweep_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sqs = sqs
        self._sns = sns
        self._topic_arn = topic_arn
        self._prefix = name_prefix
        self._wait_seconds = wait_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_seconds = stale_seconds
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._listeners: list[NoticeListener] = []
        self._health_listeners: list[HealthListener] = []
        self._healthy = False
        self._health_lock = threading.Lock()
        self._queue_url: str | None = None
        self._subscription_arn: str | None = None
        self._last_heartbeat = 0.0
        self._last_sweep: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_listener(self, callback: NoticeListener) -> None:
        """`callback(notices)` for every batch received, called from the feed's thread."""
        self._listeners.append(callback)

    def add_health_listener(self, callback: HealthListener) -> None:
        """`callback(healthy)` whenever `healthy` changes, from the feed's thread or the one calling
        start()/close(). When it turns True again, notices may have been lost meanwhile: a consumer
        revalidates everything it holds from the store."""
        self._health_listeners.append(callback)

    # Removing is for consumers that end before the feed does (a server stopped in a process that
    # goes on, the dev stack's tests): each listener holds its consumer, memory and all, alive.
    # The feed's thread calls a copy of the lists, so a listener removed meanwhile may be called
    # once more.

    def remove_listener(self, callback: NoticeListener) -> None:
        """Stop calling `callback` (one added with add_listener; a bound method compares equal)."""
        self._listeners.remove(callback)

    def remove_health_listener(self, callback: HealthListener) -> None:
        self._health_listeners.remove(callback)

    @property
    def listener_count(self) -> int:
        """Notice and health listeners added and not removed (what consumers hold on the feed)."""
        return len(self._listeners) + len(self._health_listeners)

    @property
    def healthy(self) -> bool:
        """True only while the queue is subscribed and the last receive succeeded; while False,
        listeners must fall back to reading the store (polling) themselves."""
        return self._healthy

    @property
    def queue_url(self) -> str | None:
        """This process's queue, while it has one."""
        return self._queue_url

    def start(self) -> None:
        """Makes and subscribes this process's queue, then receives on a daemon thread. A change
        committed after start() returned with `healthy` True reaches the listeners (once SNS
        delivers to the new subscription, at once in practice). AWS errors do not raise: the feed
        stays unhealthy and its thread keeps trying."""
        try:
            self._subscribe()
        except (BotoCoreError, ClientError) as exc:
            log.warning("change feed: cannot subscribe yet (%s); retrying", exc)
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops receiving and deletes this process's queue and its subscription."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wake()
            thread.join(timeout=5.0)
        self._drop()
        self._set_health(False)

    def sweep_stale_queues(self) -> int:
        """Deletes the queues (and their subscriptions) of processes that stopped without closing:
        those under this feed's prefix whose heartbeat is older than `stale_seconds`. Returns how
        many it deleted."""
        now = self._clock()
        swept = 0
        for url in self._queue_urls():
            if url == self._queue_url:
                continue
            try:
                tags = self._sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
            except ClientError as exc:
                if _queue_gone(exc):
                    continue
                raise
            try:
                beat = float(tags.get(HEARTBEAT_TAG, "0"))
            except ValueError:
                beat = 0.0
            if now - beat < self._stale_seconds:
                continue
            log.info("change feed: deleting stale queue %s (heartbeat %.0f s ago)", url, now - beat)
            if tags.get(SUBSCRIPTION_TAG):
                _quietly(self._sns.unsubscribe, SubscriptionArn=tags[SUBSCRIPTION_TAG])
            _quietly(self._sqs.delete_queue, QueueUrl=url)
            swept += 1
        return swept

    # The feed's thread.

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            if self._subscription_arn is None:
                try:
                    self._subscribe()
                except (BotoCoreError, ClientError) as exc:
                    log.warning("change feed: cannot subscribe (%s); retrying in %.0f s", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
            self._maintain()
            try:
                response = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self._wait_seconds,
                )
            except (BotoCoreError, ClientError) as exc:
                if self._stop.is_set():
                    break
                self._set_health(False)
                if isinstance(exc, ClientError) and _queue_gone(exc):
                    # Deleted under us (by a sweeper that thought us dead, or by hand): make another.
                    log.warning("change feed: queue %s is gone; making another", self._queue_url)
                    self._drop()
                    continue
                log.warning("change feed: receive failed (%s); retrying in %.0f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if self._stop.is_set():
                break
            backoff = 1.0
            self._set_health(True)
            self._deliver(response.get("Messages", []))

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        # Deleted before the listeners run: a notice is a hint, and one that made a listener fail
        # would fail again; a consumer that missed one revalidates anyway.
        _quietly(
            self._sqs.delete_message_batch,
            QueueUrl=self._queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        notices: list[MailboxNotice] = []
        for message in messages:
            try:
                notices.extend(decode_batch(message.get("Body", "")))
            except ValueError as exc:
                log.warning("change feed: unreadable message dropped (%s): %.200r", exc, message.get("Body"))
        if not notices:
            return
        for listener in list(self._listeners):
            try:
                listener(notices)
            except Exception:
                log.exception("change feed: listener failed")

    def _maintain(self) -> None:
        """The heartbeat, and now and then the sweep; failures are logged and tried again later."""
        now = self._clock()
        if now - self._last_heartbeat >= self._heartbeat_seconds:
            try:
                self._sqs.tag_queue(QueueUrl=self._queue_url, Tags={HEARTBEAT_TAG: str(int(now))})
                self._last_heartbeat = now
            except (BotoCoreError, ClientError) as exc:
                log.warning("change feed: heartbeat failed (%s)", exc)
        if self._last_sweep is None or now - self._last_sweep >= self._sweep_seconds:
            self._last_sweep = now
            try:
                self.sweep_stale_queues()
            except (BotoCoreError, ClientError) as exc:
                log.warning("change feed: sweep failed (%s)", exc)

    # Queue and subscription.

    def _subscribe(self) -> None:
        """A new queue, subscribed; on failure, nothing is left behind and the error is raised."""
        self._drop()
        try:
            self._make_queue_and_subscribe()
        except BaseException:
            self._drop()
            raise
        log.info("change feed: receiving on %s", self._queue_url)
        self._set_health(True)

    def _make_queue_and_subscribe(self) -> None:
        name = self._prefix + secrets.token_hex(8)
        queue_arn = _queue_arn(self._topic_arn, name)
        now = self._clock()
        self._queue_url = self._sqs.create_queue(
            QueueName=name,
            Attributes={
                "MessageRetentionPeriod": str(RETENTION_SECONDS),
                "SqsManagedSseEnabled": "true",  # as the stack's own queues (template.yaml)
                "Policy": json.dumps(_queue_policy(queue_arn, self._topic_arn)),
            },
            tags={HEARTBEAT_TAG: str(int(now))},
        )["QueueUrl"]
        self._last_heartbeat = now
        self._subscription_arn = self._sns.subscribe(
            TopicArn=self._topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        # So that whoever sweeps this queue after we died can unsubscribe it too.
        self._sqs.tag_queue(QueueUrl=self._queue_url, Tags={SUBSCRIPTION_TAG: self._subscription_arn})

    def _drop(self) -> None:
        if self._subscription_arn:
            _quietly(self._sns.unsubscribe, SubscriptionArn=self._subscription_arn)
        if self._queue_url:
            _quietly(self._sqs.delete_queue, QueueUrl=self._queue_url)
        self._subscription_arn = None
        self._queue_url = None

    def _wake(self) -> None:
        """Ends the thread's long poll now rather than in up to `wait_seconds`."""
        if self._queue_url:
            _quietly(self._sqs.send_message, QueueUrl=self._queue_url, MessageBody="{}")

    def _queue_urls(self) -> list[str]:
        urls: list[str] = []
        kwargs: dict[str, Any] = {"QueueNamePrefix": self._prefix, "MaxResults": 1000}
        while True:
            page = self._sqs.list_queues(**kwargs)
            urls.extend(page.get("QueueUrls", []))
            if not page.get("NextToken"):
                return urls
            kwargs["NextToken"] = page["NextToken"]

    def _set_health(self, healthy: bool) -> None:
        with self._health_lock:
            if healthy == self._healthy:
                return
            self._healthy = healthy
        for listener in list(self._health_listeners):
            try:
                listener(healthy)
            except Exception:
                log.exception("change feed: health listener failed")


def _queue_arn(topic_arn: str, queue_name: str) -> str:
    """The queue's ARN: same partition, region and account as the topic."""
    _, partition, _, region, account, _ = topic_arn.split(":", 5)
    return f"arn:{partition}:sqs:{region}:{account}:{queue_name}"


def _queue_policy(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def _queue_gone(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _QUEUE_GONE


def _quietly(call: Callable[..., Any], **kwargs: Any) -> None:
    """A clean-up call whose failure changes nothing we can act on: logged, not raised."""
    try:
        call(**kwargs)
    except (BotoCoreError, ClientError) as exc:
        log.info("change feed: %s failed (%s)", getattr(call, "__name__", call), exc)
