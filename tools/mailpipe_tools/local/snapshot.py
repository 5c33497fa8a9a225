"""The dev stack's state on disk: DynamoDB items, SQS messages and the list of S3 objects.

moto keeps everything in memory and has no persistence of its own. The bodies of S3 objects are
files already (s3_files.py); what else the stack holds (tables' items, queues' messages, which
object is which file) is written as JSON to `STATE_FILE`, atomically (a new file, fsync'd, renamed
over the old), every `interval` seconds when something changed and once more at stop. A kill -9
thus loses at most the last interval's changes (SQS redelivers what it had not yet deleted; a
message stored in that window may be stored again). At start the file is read back into moto's
backends before any gateway or poller runs: the resources themselves come from the template
(provision.py), so only their contents are saved. JSON in the services' own wire formats, not a
pickle of moto's objects, so that a new moto still reads an old state.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mailpipe.changes.feed import NAME_PREFIX as CHANGE_QUEUE_PREFIX
from mailpipe_tools.local import s3_files
from mailpipe_tools.local.provision import ACCOUNT, REGION

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
FORMAT = 1


def _backends() -> tuple[Any, Any, Any]:
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends

    return dynamodb_backends[ACCOUNT][REGION], sqs_backends[ACCOUNT][REGION], s3_backends[ACCOUNT]["aws"]


def capture(dynamodb_lock: threading.Lock) -> dict[str, Any]:
    """Everything the stack holds, as plain data. DynamoDB is read under the lock its requests
    take (moto_server._AtomicDynamoDB), so that no transaction is seen half-applied."""
    dynamodb, sqs, s3 = _backends()
    with dynamodb_lock:
        tables = {
            name: [item.to_json()["Attributes"] for item in table.all_items()]
            for name, table in list(dynamodb.tables.items())
        }
    # The change feed's queues belong to a gateway process, made at its start and gone with it:
    # what they hold means nothing to the next run (mailpipe.changes.feed).
    queues = {
        name: [_message(message) for message in list(queue._messages)]
        for name, queue in list(sqs.queues.items())
        if not name.startswith(CHANGE_QUEUE_PREFIX)
    }
    buckets = {
        name: [
            entry
            for versions in list(dict.values(bucket.keys))
            if versions and (entry := _object(versions[-1])) is not None
        ]
        for name, bucket in list(s3.buckets.items())
    }
    return {"format": FORMAT, "dynamodb": tables, "sqs": queues, "s3": buckets}


def _message(message: Any) -> dict[str, Any]:
    return {
        "body": message.body,
        "attributes": message.message_attributes,
        "receive_count": message.approximate_receive_count,
        "sent": message.sent_timestamp,
        # Held back (a handler's back-off, a delay): still held back after a restart.
        "hidden_until": max(message.visible_at, message.delayed_until),
    }


def _object(key: Any) -> dict[str, Any] | None:
    path = s3_files.body_path(key)
    if path is None or getattr(key, "disposed", False):
        return None
    return {
        "key": key.name,
        "file": path.name,
        "etag": key.etag.strip('"'),
        "metadata": dict(key.metadata),
        "last_modified": key.last_modified.isoformat(),
    }


def _base64(value: Any) -> str:
    """moto holds DynamoDB's binary values (B) as bytes; its put_item takes them in base64, as
    the wire format has them."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} in the dev stack's state")


def write(state: dict[str, Any], path: Path) -> None:
    temporary = path.with_name(path.name + ".new")
    with open(temporary, "w") as file:
        for piece in _encoded(state):
            file.write(piece)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _encoded(state: dict[str, Any]) -> Iterator[str]:
    """`state` as json.dumps(state, separators=(",", ":")) writes it, in pieces of one entry each
    (an item, a message, an object). json.dump streams the same text through the pure-Python
    encoder, several times slower (~70 ms a save of 2,000 messages, in the moto child that
    answers the gateways); one json.dumps of it all holds the whole text at once, which raised
    the child's memory per stored message by a quarter (tests/test_dev_memory.py)."""
    encode = json.JSONEncoder(separators=(",", ":"), default=_base64).encode
    yield "{"
    for index, (name, value) in enumerate(state.items()):
        yield ("," if index else "") + encode(name) + ":"
        if not (isinstance(value, dict) and all(isinstance(v, list) for v in value.values())):
            yield encode(value)
            continue
        yield "{"  # the tables', queues' or buckets' entries, by name
        for position, (inner, entries) in enumerate(value.items()):
            yield ("," if position else "") + encode(inner) + ":["
            for number, entry in enumerate(entries):
                yield ("," if number else "") + encode(entry)
            yield "]"
        yield "}"
    yield "}"


def restore(path: Path, bodies: Path) -> dict[str, int]:
    """Put a saved state back into moto (whose resources provision() has just created); how many
    items, messages and objects came back."""
    if not path.exists():
        _remove_orphans(bodies, _backends()[2])  # bodies written before a first save that never came
        return {"items": 0, "messages": 0, "objects": 0}
    state = json.loads(path.read_text())
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format {state.get('format')!r}")
    dynamodb, sqs, s3 = _backends()
    counts = {"items": 0, "messages": 0, "objects": 0}
    for name, items in state["dynamodb"].items():
        if name not in dynamodb.tables:
            log.warning("state: no table %s in the template; %d items dropped", name, len(items))
            continue
        for attributes in items:
            dynamodb.put_item(name, attributes)
        counts["items"] += len(items)
    for name, messages in state["sqs"].items():
        if name not in sqs.queues:
            log.warning("state: no queue %s in the template; %d messages dropped", name, len(messages))
            continue
        for saved in messages:
            _restore_message(sqs, name, saved)
        counts["messages"] += len(messages)
    for name, objects in state["s3"].items():
        if name not in s3.buckets:
            log.warning("state: no bucket %s in the template; %d objects dropped", name, len(objects))
            continue
        for saved in objects:
            counts["objects"] += _restore_object(s3, name, bodies / saved["file"], saved)
    _remove_orphans(bodies, s3)
    return counts


def _restore_message(sqs: Any, queue_name: str, saved: dict[str, Any]) -> None:
    message = sqs.send_message(queue_name, saved["body"], message_attributes=saved["attributes"])
    message.approximate_receive_count = saved["receive_count"]
    message.sent_timestamp = saved["sent"] or message.sent_timestamp
    message.visible_at = saved["hidden_until"]


def _restore_object(s3: Any, bucket_name: str, body: Path, saved: dict[str, Any]) -> int:
    from moto.s3.models import FakeKey

    if not body.exists():
        log.warning("state: the body of s3://%s/%s is missing (%s)", bucket_name, saved["key"], body)
        return 0
    s3_files.adopt(body)
    key = FakeKey(saved["key"], b"", ACCOUNT, REGION, etag=saved["etag"], bucket_name=bucket_name)
    key.set_metadata(saved["metadata"])
    key.last_modified = datetime.datetime.fromisoformat(saved["last_modified"])
    s3.get_bucket(bucket_name).keys[saved["key"]] = key
    return 1


def _remove_orphans(bodies: Path, s3: Any) -> None:
    """Bodies no object points to: written after the last save before a kill -9, or of objects
    deleted since. Their objects are gone with that save, so are the files."""
    used = {
        path.name
        for bucket in s3.buckets.values()
        for versions in dict.values(bucket.keys)
        for key in versions
        if (path := s3_files.body_path(key)) is not None
    }
    for path in bodies.iterdir():
        if path.name not in used:
            path.unlink()


class Saver:
    """Saves the state every `interval` seconds if `changes()` moved since the last save, and at stop."""

    def __init__(
        self, path: Path, dynamodb_lock: threading.Lock, changes: Callable[[], int], interval: float = 2.0
    ) -> None:
        self._path = path
        self._lock = dynamodb_lock
        self._changes = changes
        self._interval = interval
        self._saved = changes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.save_if_changed()
            except Exception:
                log.exception("saving the dev stack's state to %s failed", self._path)

    def save_if_changed(self) -> None:
        changes = self._changes()
        if changes != self._saved:
            write(capture(self._lock), self._path)
            self._saved = changes

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.save_if_changed()
