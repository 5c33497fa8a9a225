"""Pruning (store/pruning.py): tombstones below a floor MODSEQ and old delivery markers go;
QRESYNC and CONDSTORE clients below the floor get a full resync, those above it the usual
answer; a redelivered envelope still finds its marker within the marker age."""

from __future__ import annotations

import re
import smtplib

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from conftest import PASSWORD, wait_for_inbox
from raw_imap import login
from test_cli import mailpipe

from mailpipe import aws
from mailpipe.services import prune
from mailpipe.store.model import DELIVERY_PREFIX, UID_PREFIX, messages_pk
from mailpipe_tools.local.functions import LocalLambdaContext


def filler(n: int) -> bytes:
    return b"From: a@example.org\r\nSubject: message %d\r\n\r\nbody\r\n" % n


def items(store, mailbox, prefix: str) -> list[dict]:
    found = store.table.query(
        KeyConditionExpression=Key("pk").eq(messages_pk(mailbox.mailbox_id)) & Key("sk").begins_with(prefix),
        ConsistentRead=True,
    )["Items"]
    return found


def tombstones(store, mailbox) -> list[int]:
    return sorted(int(item["uid"]) for item in items(store, mailbox, UID_PREFIX) if item.get("expunged"))


def prune_now(owner: str, **options):
    """A run that treats every mark as old enough: the first takes the mark, the second raises
    the floor to it (on AWS a run raises it only once the mark is TOMBSTONE_AGE old)."""
    return prune(owner, tombstone_age=0, **options)


def vanished(lines: list[bytes]) -> str | None:
    for line in lines:
        found = re.match(rb"\* VANISHED \(EARLIER\) (\S+)\r\n", line)
        if found:
            return found.group(1).decode()
    return None


def fetched_uids(lines: list[bytes]) -> list[int]:
    return sorted(int(m.group(1)) for line in lines if (m := re.search(rb"FETCH \(.*UID (\d+)", line)))


def test_tombstones_below_the_floor_go_and_old_clients_get_a_full_resync(stack, owner: str) -> None:
    store = stack.mail_store()
    for n in range(1, 7):
        store.append(owner, "INBOX", filler(n))
    store.update_flags(owner, "INBOX", [5], "add", ["\\Flagged"])
    old_client = store.require_mailbox(owner, "INBOX")  # a client that synced here, knowing 1..6
    store.expunge(owner, "INBOX", [1, 2])
    assert tombstones(store, old_client) == [1, 2]

    first = prune_now(owner)  # takes the mark: nothing is pruned yet
    assert (first.tombstones, first.floors_raised) == (0, 0)
    assert tombstones(store, old_client) == [1, 2]
    second = prune_now(owner)
    assert (second.tombstones, second.floors_raised, second.mailboxes) == (2, 6, 6) and second.complete
    assert tombstones(store, old_client) == []
    mailbox = store.require_mailbox(owner, "INBOX")
    assert mailbox.prunedmodseq > old_client.highestmodseq

    # Below the floor: every UID under UIDNEXT that is not live is reported as expunged.
    below = store.changes_since(mailbox, old_client.highestmodseq)
    assert [s.uid for s in below if s.expunged] == [1, 2]
    # Above it, as ever: only what changed.
    store.expunge(owner, "INBOX", [3])
    mailbox = store.require_mailbox(owner, "INBOX")
    above = store.changes_since(mailbox, mailbox.prunedmodseq)
    assert [(s.uid, s.expunged) for s in above] == [(3, True)]

    client = login(stack.imap_port, owner, PASSWORD)
    try:
        client.ok("e", b"ENABLE QRESYNC")
        # A QRESYNC client older than the floor: VANISHED of everything not live, every flag.
        lines = client.ok(
            "s", b"SELECT INBOX (QRESYNC (%d %d 1:6))" % (mailbox.uidvalidity, old_client.highestmodseq)
        )
        assert vanished(lines) == "1:3"
        assert fetched_uids(lines) == [4, 5, 6]
        assert any(b"UID 5 " in line and b"\\Flagged" in line for line in lines)
        lines = client.ok("f", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % old_client.highestmodseq)
        assert vanished(lines) == "1:3"
        client.ok("c", b"CLOSE")
        # One at the floor: only the expunge after it, and no flags (nothing changed since).
        lines = client.ok(
            "s2", b"SELECT INBOX (QRESYNC (%d %d 1:6))" % (mailbox.uidvalidity, mailbox.prunedmodseq)
        )
        assert vanished(lines) == "3"
        assert fetched_uids(lines) == []
        client.ok("c2", b"CLOSE")
        # A CONDSTORE client below the floor still learns every flag changed since its MODSEQ.
        lines = client.ok("s3", b"SELECT INBOX (CONDSTORE)")
        lines = client.ok("f3", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % old_client.highestmodseq)
        assert fetched_uids(lines) == []  # no flag changed after that MODSEQ
        lines = client.ok("f4", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
        assert fetched_uids(lines) == [4, 5, 6]
    finally:
        client.close()


def test_a_session_behind_the_floor_learns_the_expunges(stack, owner: str) -> None:
    store = stack.mail_store()
    for n in range(1, 5):
        store.append(owner, "INBOX", filler(n))
    watcher = login(stack.imap_port, owner, PASSWORD)
    try:
        watcher.ok("s", b"SELECT INBOX")
        store.expunge(owner, "INBOX", [2, 3])
        prune_now(owner)
        prune_now(owner)
        assert tombstones(store, store.require_mailbox(owner, "INBOX")) == []
        lines = watcher.ok("n", b"NOOP")
        assert b"* 3 EXPUNGE\r\n" in lines and b"* 2 EXPUNGE\r\n" in lines, lines
        lines = watcher.ok("f", b"FETCH 1:* (UID)")
        assert fetched_uids(lines) == [1, 4]
    finally:
        watcher.close()


def test_rename_keeps_the_floor(stack, owner: str) -> None:
    store = stack.mail_store()
    store.create_mailbox(owner, "Old")
    store.append(owner, "Old", filler(1))
    store.expunge(owner, "Old", [1])
    prune_now(owner)
    prune_now(owner)
    floor = store.require_mailbox(owner, "Old").prunedmodseq
    assert floor > 0
    store.rename_mailbox(owner, "Old", "New")
    assert store.require_mailbox(owner, "New").prunedmodseq == floor


def test_redelivery_within_the_marker_age_still_deduplicates(stack, owner: str) -> None:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.sendmail("someone@sender.test", [owner], filler(1).decode())
    (message,) = wait_for_inbox(stack, owner, 1)
    store = stack.mail_store()
    inbox = store.require_mailbox(owner, "INBOX")
    (marker,) = items(store, inbox, DELIVERY_PREFIX)
    assert marker["at"] > 0

    report = prune_now(owner)  # markers are young: they stay
    assert report.markers == 0
    # The queue brings the envelope back: the marker says it is stored, nothing new is.
    again = store.deliver(
        owner,
        "INBOX",
        delivery_id=message.delivery_id,
        source_bucket="gone",
        source_key="spool/already-discarded",
        size=1,
        summary={},
    )
    assert again == message.uid
    assert len(store.list_messages(owner, "INBOX")[1]) == 1

    # A marker written before markers were dated is dated by a run, and kept for the age from then.
    store.table.update_item(Key={"pk": marker["pk"], "sk": marker["sk"]}, UpdateExpression="REMOVE #at",
                            ExpressionAttributeNames={"#at": "at"})  # fmt: skip
    assert prune_now(owner).markers_dated == 1
    assert "at" in items(store, inbox, DELIVERY_PREFIX)[0]
    # Past the age (no queue keeps a message that long) the marker goes.
    assert prune_now(owner, marker_age=-1).markers == 1
    assert items(store, inbox, DELIVERY_PREFIX) == []


def test_work_per_run_is_bounded_and_the_cli_runs_it(stack, owner: str) -> None:
    store = stack.mail_store()
    for n in range(1, 6):
        store.append(owner, "INBOX", filler(n))
    store.expunge(owner, "INBOX", [1, 2, 3, 4])
    prune_now(owner)
    # Mailboxes go in name order: the floors of Archive and Drafts, INBOX's, two of its tombstones.
    cut_short = prune_now(owner, budget=5)
    assert (cut_short.tombstones, cut_short.complete) == (2, False)
    said = mailpipe(stack, "store", "prune", "--owner", owner, "--tombstone-age", "0")
    assert said.returncode == 0, said.stderr
    assert said.stdout.startswith("pruned 2 tombstones and 0 delivery markers in "), said.stdout
    assert tombstones(store, store.require_mailbox(owner, "INBOX")) == []


def test_a_run_stops_before_its_lambda_time_is_up(stack, owner: str) -> None:
    store = stack.mail_store()
    for n in range(1, 4):
        store.append(owner, "INBOX", filler(n))
    store.expunge(owner, "INBOX", [1, 2])
    prune_now(owner)  # takes the mark
    # The prune function's own handler with a Lambda context of 20 s left: less than the margin
    # it keeps (pruning.STOP_SECONDS_BEFORE_TIMEOUT), so it stops before its first mailbox.
    function = stack.functions["PruneFunction"]
    with function.invocation:
        said = function.handler({"source": "aws.events"}, LocalLambdaContext(function.name, 20))
    assert (said["mailboxes"], said["tombstones"], said["complete"]) == (0, 0, False)
    assert tombstones(store, store.require_mailbox(owner, "INBOX")) == [1, 2]
    # Time running out between mailboxes: the two it had time for are done, the rest wait.
    left = iter([300.0, 300.0] + [10.0] * 20)
    cut_short = prune_now(owner, time_left=lambda: next(left))
    assert (cut_short.mailboxes, cut_short.complete) == (2, False)
    assert prune_now(owner).complete
    assert tombstones(store, store.require_mailbox(owner, "INBOX")) == []


def body_exists(stack, key: str) -> bool:
    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=stack.resources.mail_bucket, Key=key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey"), exc.response
        return False
    return True


def test_pruning_a_tombstone_deletes_a_body_its_expunge_left_behind(stack, owner: str) -> None:
    """An IMAP EXPUNGE deletes bodies after its answer (store/body_deletes.py); a process that
    stopped before that, or an S3 that kept failing, leaves a body no index item points at but
    the tombstone. Pruning the tombstone deletes it: nothing leaks for good."""
    store = stack.mail_store()
    for n in range(1, 4):
        store.append(owner, "INBOX", filler(n))
    _, messages = store.list_messages(owner, "INBOX")
    keys = {m.uid: m.blob_key for m in messages}
    left_behind: list[str] = []  # the caller that was to delete these never did
    store.expunge(owner, "INBOX", [1], bodies=left_behind)
    store.expunge(owner, "INBOX", [2])  # deleted its body itself
    assert left_behind == [keys[1]]
    assert [body_exists(stack, keys[uid]) for uid in (1, 2, 3)] == [True, False, True]

    prune_now(owner)
    report = prune_now(owner)
    assert report.tombstones == 2 and report.bodies == 2  # the one gone already counts as deleted
    assert [body_exists(stack, keys[uid]) for uid in (1, 2, 3)] == [False, False, True]
    _, now = store.list_messages(owner, "INBOX")
    assert [m.uid for m in now] == [3] and store.read_body(now[0]) == filler(3)
