"""How long a mailbox change takes to reach a change feed listener on the dev stack, against polling.

Run by hand from the repository root:

    PYTHONPATH=layers/core:gateway:tools .venv/bin/python bench/change_feed.py            # 100 writes
    PYTHONPATH=layers/core:gateway:tools .venv/bin/python bench/change_feed.py --writes 300

It starts the dev stack in this process (moto included, every port chosen by the system) and a
second ChangeFeed, as a second gateway task would have. Then it APPENDs to a mailbox one message
at a time (each at a random point of the poller's cycle) and times, from the moment each write
returned (committed), until

- feed: a listener of that ChangeFeed is called with the notice of the new UIDNEXT (the stack's
  stream source reading moto's stream every 150 ms, the relay function, SNS, the feed's SQS
  long poll), and
- baseline: a poller doing what an IDLE-ing session does today, a strongly consistent GetItem of the
  mailbox item every 0.5 s (imap/state.py IDLE_POLL_SECONDS), sees it,

and prints p50/p99/max of both and their ratio, and what each costs in requests when idle: the
feed one ReceiveMessage per 20 s per process, the poller two GetItems per second per session.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from mailpipe import aws
from mailpipe.changes.feed import ChangeFeed
from mailpipe.changes.notice import MailboxNotice
from mailpipe.store.model import mailbox_sk, owner_pk
from mailpipe_tools.local.stack import DevOptions, DevStack

OWNER = "bench@example.test"
MESSAGE = b"From: a@remote.test\r\nSubject: bench\r\n\r\nbody\r\n"
POLL_SECONDS = 0.5  # the IDLE poll the feed replaces


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Seen:
    """When each UIDNEXT of the bench mailbox was first seen, by the feed or the poller."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.changed = threading.Condition()

    def saw(self, uidnext: int) -> None:
        with self.changed:
            for value in range(1, uidnext + 1):
                self.at.setdefault(value, time.monotonic())
            self.changed.notify_all()

    def wait(self, uidnext: int, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: uidnext in self.at, timeout)
            return self.at.get(uidnext)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as state:
        options = DevOptions(
            smtp_port=0,
            submission_port=0,
            pop3_port=0,
            imap_port=0,
            aws_port=0,
            users=[(OWNER, "bench-password")],
            state_dir=Path(state),
        )
        started = time.monotonic()
        stack = DevStack(options)
        stack.start()
        print(f"dev stack started in {time.monotonic() - started:.2f} s")
        try:
            run(stack, args.writes)
        finally:
            stack.stop()


def run(stack: DevStack, writes: int) -> None:
    assert stack.deployment is not None and stack.resources is not None
    store = stack.mail_store()
    mailbox = store.create_mailbox(OWNER, "Bench")
    by_feed, by_poll = Seen(), Seen()

    def heard(notices: list[MailboxNotice]) -> None:
        for notice in notices:
            if notice.owner == OWNER and notice.name == "Bench":
                by_feed.saw(notice.uidnext)

    feed = ChangeFeed(
        aws.long_poll_client("sqs"), aws.client("sns"), stack.deployment.refs["MailboxChangesTopic"]
    )
    feed.add_listener(heard)
    feed.start()
    stop = threading.Event()
    table = aws.table(stack.resources.mailbox_table)

    def poll() -> None:
        while not stop.wait(POLL_SECONDS):
            item = table.get_item(Key={"pk": owner_pk(OWNER), "sk": mailbox_sk("Bench")}, ConsistentRead=True)
            by_poll.saw(int(item["Item"]["uidnext"]))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    feed_latency: list[float] = []
    poll_latency: list[float] = []
    lost = 0
    try:
        for _ in range(writes):
            # At a random point of the poller's cycle, or every write would land just after a poll.
            time.sleep(random.uniform(0, POLL_SECONDS))
            _, uid = store.append(OWNER, mailbox.name, MESSAGE)
            committed = time.monotonic()
            feed_at = by_feed.wait(uid + 1, timeout=10)
            poll_at = by_poll.wait(uid + 1, timeout=10)
            if feed_at is None or poll_at is None:
                lost += 1
                continue
            feed_latency.append(max(feed_at - committed, 0.0))
            poll_latency.append(max(poll_at - committed, 0.0))
    finally:
        stop.set()
        feed.close()
    print(f"{writes} APPENDs, one at a time; latency from the write's commit to the change being seen")
    print(f"{'':10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in (("feed", feed_latency), ("poll 0.5 s", poll_latency)):
        print(
            f"{name:10} {1000 * statistics.median(values):8.0f} {1000 * percentile(values, 0.99):8.0f} "
            f"{1000 * max(values):8.0f}"
        )
    print(
        f"feed/poll p50 ratio {statistics.median(feed_latency) / statistics.median(poll_latency):.2f}, "
        f"p99 ratio {percentile(feed_latency, 0.99) / percentile(poll_latency, 0.99):.2f}"
        + (f"; {lost} writes not seen within 10 s" if lost else "")
    )
    print(
        "idle requests per hour: feed 180 per gateway process (one 20 s long poll at a time); "
        f"poll {3600 / POLL_SECONDS:.0f} per IDLE session"
    )


if __name__ == "__main__":
    main()
