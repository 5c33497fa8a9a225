"""moto in server mode on loopback, the AWS stand-in for the dev stack and the tests."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from mailpipe import heap
from mailpipe_tools.local import (
    inline_gets,
    moto_expressions,
    moto_items,
    moto_memory,
    moto_stream_reads,
    moto_transactions,
    s3_files,
)
from mailpipe_tools.local.moto_dynamodb_direct import DirectDynamoDB
from mailpipe_tools.local.moto_queries import install_partition_queries, install_plain_read_answers
from mailpipe_tools.local.s3_reads import PlainObjectReads, plain_get_request
from mailpipe_tools.local.s3_writes import PlainObjectWrites

# Threads answering requests: the gateways' calls (DynamoDB ones queue in _AtomicDynamoDB anyway)
# and the SQS long polls of the local event sources, which hold one each for up to 20 s.
WORKER_THREADS = 64
# Connections kept open: every boto3 client keeps a pool of up to 64 (mailpipe.aws).
CONNECTION_LIMIT = 2000
CHANNEL_TIMEOUT_SECONDS = 300  # idle keep-alive connections closed after this


class _AtomicDynamoDB:
    """Runs one DynamoDB request at a time.

    DynamoDB applies each request atomically; moto's in-memory backend does not under
    concurrent threads (a failed TransactWriteItems restores a copy of the whole table
    taken before it started, undoing other requests' writes made meanwhile). Serialising
    DynamoDB calls gives the semantics the real service has; S3 and SQS (with its long
    polls) stay concurrent.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # Stream reads too ("DynamoDBStreams_..."): they read the shard's records as writes append
        # (and _install_bounded_streams trims) them.
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(("DynamoDB_", "DynamoDBStreams_")):
            with self.lock:
                return list(self._app(environ, start_response))
        if environ.get("PATH_INFO") == moto_memory.PATH and environ.get("REQUEST_METHOD") == "GET":
            with self.lock:  # the tables are read while no request changes them
                trim = parse_qs(environ.get("QUERY_STRING", "")).get("trim") == ["1"]
                body = json.dumps(moto_memory.report(trim)).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self._app(environ, start_response)


# Requests that change nothing the snapshot holds (reads, and SQS's receives, which the pollers
# make every second): they leave the state unsaved.
_READS = (
    "DynamoDB_20120810.GetItem",
    "DynamoDB_20120810.BatchGetItem",
    "DynamoDB_20120810.Query",
    "DynamoDB_20120810.Scan",
    "DynamoDB_20120810.DescribeTable",
    "AmazonSQS.ReceiveMessage",
    "AmazonSQS.GetQueueAttributes",
    "AmazonSQS.GetQueueUrl",
    "AmazonSQS.ListQueues",
    "AmazonSQS.ListQueueTags",
    # The dev stack's stream source reads the mailbox table's stream several times a second.
    "DynamoDBStreams_20120810.DescribeStream",
    "DynamoDBStreams_20120810.GetShardIterator",
    "DynamoDBStreams_20120810.GetRecords",
)


class _ChangeCounter:
    """Counts the requests that may have changed something (snapshot.Saver saves when it moved)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self.count = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        statuses: list[str] = []

        def recording(status: str, headers: Any, *exc_info: Any) -> Any:
            statuses.append(status)
            return start_response(status, headers, *exc_info)

        response = self._app(environ, recording)
        # Counted once answered: a save that sees the new count must also see the change.
        if _may_change(environ, statuses[-1] if statuses else ""):
            self.count += 1
        return response


# What the snapshot does not hold: SNS's and SES's state, and SQS queues' own settings (only their
# messages are kept). A restarted stack's gateway subscribes a queue of its own to the changes
# topic, and its start-up made the next save rewrite the whole state for nothing.
_UNSAVED_SERVICES = ("sns:", "ses:", "email:")
_UNSAVED_TARGETS = (
    "AmazonSQS.CreateQueue",
    "AmazonSQS.SetQueueAttributes",
    "AmazonSQS.TagQueue",
    "AmazonSQS.UntagQueue",
)


def _may_change(environ: dict[str, Any], status: str) -> bool:
    """Whether a request answered `status` may have changed what the snapshot holds. A client
    error (4xx: a failed condition, a cancelled transaction, a missing key) changed nothing:
    AWS applies a request whole or not at all, and so does this server (moto_transactions)."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD") or target in _READS or target in _UNSAVED_TARGETS:
        return False
    if status[:1] == "4":
        return False
    return not (target is None and _request_kind(environ).startswith(_UNSAVED_SERVICES))


class RequestCounter:
    """Counts every request by what it asked of which service ("dynamodb:GetItem", "s3:GET",
    "sqs:ReceiveMessage"), so tests and benches can tell how many AWS requests a command cost.

    Read `counts()` in this process, or GET /_mailpipe/requests (JSON) from another one."""

    PATH = "/_mailpipe/requests"

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HIDDEN_PATH and environ.get("REQUEST_METHOD") == "GET":
            queue = parse_qs(environ.get("QUERY_STRING", "")).get("queue", [""])[0]
            body = json.dumps(_seconds_hidden(queue)).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if environ.get("PATH_INFO") == self.PATH and environ.get("REQUEST_METHOD") == "GET":
            body = json.dumps(self.counts()).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        with self._lock:
            self._counts[_request_kind(environ)] += 1
        return self._app(environ, start_response)


# GET ?queue=NAME: how long each message of the queue is still hidden, in seconds, the one thing
# the SQS API does not tell (tests of the handlers' back-off read it; moto runs in a child).
HIDDEN_PATH = "/_mailpipe/sqs-hidden"


def _seconds_hidden(queue_name: str) -> dict[str, float]:
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import sqs_backends

    now = unix_time_millis()
    for regions in sqs_backends.values():
        for backend in regions.values():
            queue = backend.queues.get(queue_name)
            if queue is not None:
                return {m.id: (m.visible_at - now) / 1000 for m in list(queue._messages)}
    return {}


def _request_kind(environ: dict[str, Any]) -> str:
    """ "service:Operation" for the JSON services (X-Amz-Target), "service:METHOD" for the others
    (the service from the signature's credential scope)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, _, operation = target.partition(".")
        service = {"DynamoDB_20120810": "dynamodb", "DynamoDBStreams_20120810": "dynamodbstreams"}.get(
            prefix, prefix.lower().removeprefix("amazon")
        )
        return f"{service}:{operation}"
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else "unsigned"
    return f"{service}:{environ.get('REQUEST_METHOD', '?')}"


_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def _install_partitioned_local_index_queries() -> None:
    """Let a Query of a local secondary index read only its partition, as DynamoDB does.

    moto answers a Query of any index by sorting and filtering every item of the table, so the
    cost of a session's refresh (MailStore.changes_since) would grow with every mailbox in the
    dev stack. A local index holds only items of the partition key it is asked for, so the
    table's other partitions are hidden from moto for the length of that Query. Safe only
    because this server runs DynamoDB requests one at a time (_AtomicDynamoDB).
    """
    from moto.dynamodb.models.table import Table

    original = Table.query
    if getattr(original, "mailpipe_partitioned", False):
        return

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        index = next((i for i in self.indexes or [] if i.name == index_name), None)
        if hash_key is None or index is None:
            return original(self, hash_key, *args, **kwargs)
        partition = list(self.items.get(hash_key, {}).values())
        comparison, bounds = (args[0], args[1]) if len(args) > 1 else (None, None)
        sort_keys = [key["AttributeName"] for key in index.schema if key["KeyType"] == "RANGE"]
        if comparison and bounds and len(sort_keys) == 1:
            # The same test moto applies to each item, done first: moto then sorts only the matches.
            partition = [
                item
                for item in partition
                if (value := item.attrs.get(sort_keys[0])) is not None and value.compare(comparison, bounds)
            ]
        self.all_items = lambda: sorted(partition, key=lambda item: item.range_key)
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    query.mailpipe_partitioned = True  # type: ignore[attr-defined]
    Table.query = query


def _install_fast_projection() -> None:
    """Project an item onto top-level attributes by picking them, as DynamoDB does.

    moto projects by turning the whole item into plain JSON (deep-copying it, summary and all)
    once per attribute named, and serialising the result back: ~1 ms per item, so a header
    fetch of a 10,000-message mailbox (MailStore.read_headers, projecting uid, header, expunged)
    spent seconds in moto alone. Names of top-level attributes are picked directly; nested paths
    and list elements go to moto's own code. The projected item shares the attribute values,
    which moto only serialises.
    """
    from moto.dynamodb.models.dynamo_type import Item

    original = Item.project
    if getattr(original, "mailpipe_fast", False):
        return

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        if not all(len(path) == 1 and "[" not in path[0] for path in projection_expressions):
            return original(self, projection_expressions)
        projected = Item(hash_key=self.hash_key, range_key=self.range_key, attrs={})
        for (name,) in projection_expressions:
            if name in self.attrs:
                # Past moto's size check (LimitedSizeDict sums every attribute's size at each
                # assignment: most of a projected Query's CPU): a projection only makes it smaller.
                dict.__setitem__(projected.attrs, name, self.attrs[name])
        return projected

    project.mailpipe_fast = True  # type: ignore[attr-defined]
    Item.project = project


# Stream records kept per shard (DynamoDB keeps 24 hours'): the dev stack's reader is never more
# than a poll behind, and each record holds both images of an item (up to ~10 KB with a header).
STREAM_RECORDS_KEPT = int(os.environ.get("MAILPIPE_DEV_STREAM_RECORDS", "4096"))
# Shard iterators remembered (DynamoDB's expire after 15 minutes): one is made per GetRecords, and
# the stack's reader (stream_source.py) only ever uses the newest; ~1.5 kB each.
SHARD_ITERATORS_KEPT = 64


def _install_bounded_streams() -> None:
    """Keep a table stream's records and its shard iterators bounded, as DynamoDB's expire.

    moto keeps every stream record since the table was made, and every shard iterator it ever
    handed out (one per GetRecords, a poll several times a second): a dev stack running for days
    would grow without end. The oldest records are trimmed (the shard's starting sequence number
    moves on, so sequence numbers stay what they were), an iterator from before the trim horizon
    reads from the oldest record kept (DynamoDB would answer TrimmedDataAccessException), and only
    the newest iterators are remembered. Safe because stream requests are serialised with the
    table's writes (_AtomicDynamoDB).
    """
    from moto.dynamodb.models.table import StreamShard
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    if getattr(StreamShard.add, "mailpipe_bounded", False):
        return
    original_add = StreamShard.add
    original_get_records = DynamoDBStreamsBackend.get_records

    def add(self: Any, old: Any, new: Any) -> None:
        original_add(self, old, new)
        excess = len(self.items) - STREAM_RECORDS_KEPT
        if excess > 0:
            del self.items[:excess]
            self.starting_sequence_number += excess

    def get(self: Any, start: int, quantity: int) -> list[dict[str, Any]]:
        start = max(start - self.starting_sequence_number, 0)
        return [i.to_json() for i in self.items[start : start + quantity]]

    def get_records(self: Any, iterator_arn: str, limit: int) -> dict[str, Any]:
        result = original_get_records(self, iterator_arn, limit)
        while len(self.shard_iterators) > SHARD_ITERATORS_KEPT:
            del self.shard_iterators[next(iter(self.shard_iterators))]
        return result

    add.mailpipe_bounded = True  # type: ignore[attr-defined]
    StreamShard.add = add
    StreamShard.get = get
    DynamoDBStreamsBackend.get_records = get_records


# Receipt handles of deleted SQS messages remembered per queue: a second DeleteMessage of one
# must succeed, as SQS's does, but a handle is only ever used again within its message's
# visibility timeout (the dev stack's are seconds to minutes), so the newest thousand do.
DELETED_RECEIPTS_KEPT = 1024


class _RecentReceipts(dict[str, None]):
    """The set moto keeps a queue's deleted receipt handles in (`in`, `update`), keeping only
    the newest DELETED_RECEIPTS_KEPT."""

    def update(self, handles: Any = (), /, **_: Any) -> None:  # type: ignore[override]
        for handle in handles:
            self[handle] = None
        while len(self) > DELETED_RECEIPTS_KEPT:
            del self[next(iter(self))]


def _install_bounded_sqs_deletions() -> None:
    """Keep the receipt handles moto remembers of deleted SQS messages bounded.

    moto adds every receipt handle a deleted message ever had (185 characters each, one per
    receive) to a set on its queue and never drops one: every delivery, every change-feed notice
    and every spool message the dev stack handles left ~0.3 kB per receive behind, for good.
    """
    from moto.sqs.models import Queue

    original = Queue.delete_message
    if getattr(original, "mailpipe_bounded", False):
        return

    def delete_message(self: Any, receipt_handle: str) -> None:
        if not isinstance(self.deleted_messages, _RecentReceipts):
            self.deleted_messages = _RecentReceipts.fromkeys(self.deleted_messages)
        original(self, receipt_handle)

    delete_message.mailpipe_bounded = True  # type: ignore[attr-defined]
    Queue.delete_message = delete_message  # type: ignore[method-assign]


# Published SNS messages a topic remembers (moto keeps them all, for tests that read them back).
SENT_NOTIFICATIONS_KEPT = 64


def _install_bounded_sns_notifications() -> None:
    """Keep only a topic's newest published messages.

    moto appends every message published to a topic to a list on it, and nothing reads or drops
    them: the change feed publishes a notice per batch of the mailbox table's stream, so every
    write the dev stack made stayed in moto's memory as JSON, for good.
    """
    from moto.sns.models import Topic

    original = Topic.publish
    if getattr(original, "mailpipe_bounded", False):
        return

    def publish(self: Any, *args: Any, **kwargs: Any) -> str:
        message_id = original(self, *args, **kwargs)
        del self.sent_notifications[:-SENT_NOTIFICATIONS_KEPT]
        return message_id

    publish.mailpipe_bounded = True  # type: ignore[attr-defined]
    Topic.publish = publish  # type: ignore[method-assign]


def _remember_moto_modules() -> None:
    """moto looks for its service packages on disk at every request (to route it); they do not
    change while the server runs, so the list is read once."""
    from moto import backends

    if getattr(backends.list_of_moto_modules, "mailpipe_cached", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    list_of_moto_modules.mailpipe_cached = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


def _stop_tracking_model_instances() -> None:
    """Stop moto from keeping every model object it ever made.

    moto's BaseModel appends each instance to a list on its class, for the dashboard's
    `/moto-api/data.json`, and nothing takes them off: every DynamoDB item a Query, projection or
    transaction copies, every deleted SQS message and S3 key stays for the life of the process
    (~21 items of ~12 attributes per stored message: most of the dev stack's growth per message,
    bench/memory_per_message.py). The dev stack has no use for that dashboard.
    """
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import reset_model_data

    if getattr(BaseModel, "mailpipe_untracked", False):
        return

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        return super(BaseModel, cls).__new__(cls)  # type: ignore[misc]

    BaseModel.__new__ = staticmethod(__new__)  # type: ignore[method-assign,assignment]
    BaseModel.mailpipe_untracked = True  # type: ignore[attr-defined]
    reset_model_data()  # what was tracked before


class MotoServer:
    """moto's WSGI app served by waitress, with HTTP keep-alive.

    moto's own server (werkzeug's development server) closes the connection after every
    response and starts a thread per connection, so each AWS call of the dev stack paid for a
    TCP connection and a thread on both sides: with the IMAP gateway's many small DynamoDB
    calls that was a fifth of the dev stack's CPU. waitress keeps connections open and serves
    them from a fixed pool of threads, as the real endpoints would be used.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, bodies: Path | None = None) -> None:
        """`bodies`: the folder S3 objects' bodies are written to (s3_files.py); None keeps
        moto's own storage, in memory below 5 MB."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from waitress.server import create_server

        # waitress warns at every queue build-up; the dev stack's logs are for the mail system.
        logging.getLogger("waitress").setLevel(logging.ERROR)
        moto_transactions.install()
        _install_partitioned_local_index_queries()
        install_partition_queries()
        install_plain_read_answers()
        moto_stream_reads.install()
        moto_expressions.install()
        _install_fast_projection()
        moto_items.install()
        _install_bounded_streams()
        _install_bounded_sqs_deletions()
        _install_bounded_sns_notifications()
        _remember_moto_modules()
        _stop_tracking_model_instances()
        if bodies is not None:
            s3_files.install(bodies)
        # DynamoDB's JSON requests skip Flask (moto_dynamodb_direct.py), one at a time as before.
        self.dynamodb = _AtomicDynamoDB(DirectDynamoDB(DomainDispatcherApplication(create_backend_app)))
        # Plain PutObjects skip moto's request path (s3_writes.py); still counted as changes.
        self.changes = _ChangeCounter(PlainObjectWrites(self.dynamodb))
        # Plain GetObjects skip moto's request path (s3_reads.py); still counted.
        self.requests = RequestCounter(PlainObjectReads(self.changes))
        app = self.requests
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=WORKER_THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT_SECONDS,
            ident="moto",
        )
        self._thread = threading.Thread(target=self._server.run, name="moto", daemon=True)
        # Small plain GETs answered on waitress's loop thread, without a worker (inline_gets.py).
        inline_gets.install(
            self._server,
            self._thread,
            lambda request: plain_get_request(request, inline_gets.INLINE_BYTES),
        )

    @property
    def endpoint(self) -> str:
        return f"http://{self._server.effective_host}:{self.port}"

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        from waitress import wasyncore

        # Close every connection and the listener from the server's own loop, which then ends.
        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
        self._thread.join(timeout=10)
        self._server.task_dispatcher.shutdown(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """`python -m mailpipe_tools.local.moto_server [PORT] [--host H] [--state-dir DIR [--persistent]]`:
    the dev stack's moto in a process of its own (the child moto_process.MotoProcess starts).

    Prints the endpoint, then serves until stdin closes, `stop` or SIGTERM. Without --state-dir
    bodies stay in moto's memory and nothing is saved (the benches). With it, bodies are files under
    DIR/s3 (emptied at start unless --persistent); with --persistent the kept state is put back when
    the parent says `restore` (after it provisioned the resources), saved every 2 s and at stop.
    """
    from mailpipe_tools.local import snapshot
    from mailpipe_tools.local.moto_process import PORT_IN_USE

    parser = argparse.ArgumentParser(prog="python -m mailpipe_tools.local.moto_server")
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--persistent", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group: the dev stack stops its gateways first, then says stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)

    bodies = args.state_dir / BODIES if args.state_dir is not None else None
    if bodies is not None and not args.persistent:
        shutil.rmtree(bodies, ignore_errors=True)
    try:
        server = MotoServer(args.host, args.port, bodies=bodies)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(PORT_IN_USE, flush=True)
            sys.exit(2)
        raise
    server.start()
    print(server.endpoint, flush=True)
    saver: snapshot.Saver | None = None
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                break
            if command == "restore":
                restored = {"items": 0, "messages": 0, "objects": 0}
                if bodies is not None and args.persistent and saver is None:
                    state = args.state_dir / snapshot.STATE_FILE
                    restored = snapshot.restore(state, bodies)
                    saver = snapshot.Saver(state, server.dynamodb.lock, lambda: server.changes.count)
                    saver.start()
                # The stack is provisioned and its state back: what it holds now lives as long as the
                # server (the restored state's items and keys, moto's modules), so the collector
                # need not walk it again, least of all during the first client's requests.
                heap.settle()
                print(json.dumps(restored), flush=True)
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the save short
        if saver is not None:
            saver.stop()  # the final save
        if bodies is not None:
            s3_files.keep_files()
        server.stop()


BODIES = "s3"  # under --state-dir: the S3 objects' bodies, one file each


class _Stop(Exception):
    pass


def _raise_stop(*_: object) -> None:
    raise _Stop


if __name__ == "__main__":
    main()
