"""The dev stack's DynamoDB Streams GetRecords, serialised by json.dumps, not moto's model-driven one.

The change feed (stream_source.py) reads the mailbox table's stream several times a second, and
every write of the mail store is a record there holding both images of an item (a message's
summary and header blocks: up to ~10 KB). moto turns each answer into its wire format with a
serialiser driven by botocore's service model, which looks every value up under several aliases
(AttributePicker): under bench/imap.py (16 clients, 2026-12-05) that was **41% of the moto
process's CPU** (py-spy --gil, 1,442 of 3,543 samples), more than all the DynamoDB writes together,
spent while every other DynamoDB request waited (moto_server._AtomicDynamoDB serialises stream
reads with the table's writes).

moto's records are already DynamoDB's JSON (StreamRecord.record: `{"S": ...}` values, numbers as
strings, binary as bytes): what its serialiser does to them is put each structure's members in the
model's order, leave out the members that are None, base64 the binary values, turn the creation
time into epoch seconds (milliseconds truncated) and dump with json.dumps. Done here in that order,
so the answer is the same bytes (tests/test_moto_stream_reads.py compares them with moto's own).
A record holding anything else (a member the model does not have, a type this does not know) and
every error go to moto's serialiser, as does every other DynamoDB Streams operation.
"""

from __future__ import annotations

import base64
import calendar
import json
from datetime import datetime
from typing import Any

# Members of the GetRecords output, of a Record and of its StreamRecord, in the service model's
# order (botocore's dynamodbstreams service-2.json), which is the order moto's serialiser writes.
_OUTPUT_MEMBERS = ("Records", "NextShardIterator")
_RECORD_MEMBERS = (
    "eventID",
    "eventName",
    "eventVersion",
    "eventSource",
    "awsRegion",
    "dynamodb",
    "userIdentity",
)
_STREAM_RECORD_MEMBERS = (
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
)
_STRING_MEMBERS = frozenset(
    {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "SequenceNumber", "StreamViewType"}
)
_IMAGES = frozenset({"Keys", "NewImage", "OldImage"})


class _Unusual(Exception):
    """Something this serialiser does not know how moto's would write: moto's then answers."""


def install() -> None:
    """Wrap moto's DynamoDBStreamsHandler.serialized (once per process)."""
    from moto.core.responses import ActionResult
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    original = DynamoDBStreamsHandler.serialized
    if getattr(original, "mailpipe_plain", False):
        return

    def serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result if isinstance(action_result, ActionResult) else None
        if self._get_action() != "GetRecords" or not isinstance(result, dict):
            return original(self, action_result)
        try:
            body = json.dumps(get_records_output(result))
        except _Unusual:
            return original(self, action_result)
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers, "status": 200}
        return 200, headers, body

    serialized.mailpipe_plain = True  # type: ignore[attr-defined]
    serialized.moto_serialized = original  # type: ignore[attr-defined]  # for the test's comparison
    DynamoDBStreamsHandler.serialized = serialized  # type: ignore[method-assign]


def get_records_output(result: dict[str, Any]) -> dict[str, Any]:
    """GetRecords' answer as moto's serialiser writes it (before json.dumps); _Unusual if unsure."""
    out: dict[str, Any] = {}
    for name in _members(result, _OUTPUT_MEMBERS):
        value = result[name]
        out[name] = [_record(r) for r in _list(value)] if name == "Records" else _string(value)
    return out


def _members(value: Any, order: tuple[str, ...]) -> list[str]:
    """The keys of `value` to write, in the model's order; _Unusual if it has one the model lacks."""
    if not isinstance(value, dict) or not value.keys() <= set(order):
        raise _Unusual
    return [name for name in order if value.get(name) is not None]


def _record(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _members(record, _RECORD_MEMBERS):
        value = record[name]
        if name == "dynamodb":
            out[name] = _stream_record(value)
        elif name in _STRING_MEMBERS:
            out[name] = _string(value)
        else:
            raise _Unusual  # userIdentity: moto never sets it
    return out


def _stream_record(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _members(record, _STREAM_RECORD_MEMBERS):
        value = record[name]
        if name in _IMAGES:
            if not isinstance(value, dict):
                raise _Unusual
            out[name] = {str(attr): _attribute_value(v) for attr, v in value.items()}
        elif name == "ApproximateCreationDateTime":
            out[name] = _epoch_seconds(value)
        elif name == "SizeBytes" and isinstance(value, int):
            out[name] = value
        else:
            out[name] = _string(value)
    return out


def _attribute_value(value: Any) -> dict[str, Any]:
    """An AttributeValue ({"S": ...}, {"M": {...}}, ...) with its binary values in base64."""
    if not isinstance(value, dict):
        raise _Unusual
    out: dict[str, Any] = {}
    for kind, inner in value.items():
        if inner is None:
            continue
        if kind in ("S", "N"):
            out[kind] = _string(inner)
        elif kind in ("SS", "NS"):
            out[kind] = [_string(v) for v in _list(inner)]
        elif kind == "B":
            out[kind] = _base64(inner)
        elif kind == "BS":
            out[kind] = [_base64(v) for v in _list(inner)]
        elif kind == "M":
            if not isinstance(inner, dict):
                raise _Unusual
            out[kind] = {str(k): _attribute_value(v) for k, v in inner.items()}
        elif kind == "L":
            out[kind] = [_attribute_value(v) for v in _list(inner)]
        elif kind in ("NULL", "BOOL") and isinstance(inner, bool):
            out[kind] = inner
        else:
            raise _Unusual
    return out


def _string(value: Any) -> str:
    """A string as moto's serialiser writes it (str() of it); anything else is left to moto."""
    if not isinstance(value, str):
        raise _Unusual
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Unusual
    return value


def _base64(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray):
        raise _Unusual
    return base64.b64encode(value).strip().decode("utf-8")


def _epoch_seconds(value: Any) -> int | float:
    """moto's unixtimestamp: whole seconds, plus milliseconds (truncated) if there are any."""
    if not isinstance(value, datetime):
        raise _Unusual
    seconds = calendar.timegm(value.timetuple())
    if value.microsecond:
        return seconds + (value.microsecond // 1000) / 1000.0
    return seconds
