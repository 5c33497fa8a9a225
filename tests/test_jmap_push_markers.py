"""The relay's read of who may listen when DynamoDB leaves keys unprocessed (throttling): moto never
does, so a scripted server answers BatchGetItem as DynamoDB does under throttling."""

from __future__ import annotations

import json
import time

import boto3
from scripted_server import ScriptedServer

from mailpipe import aws
from mailpipe.jmap.push import PushConnections


def _answer(listening: str, throttled: str) -> bytes:
    """One owner's marker read, another's key left unprocessed, every time."""
    body = json.dumps(
        {
            "Responses": {
                "jmap": [
                    {
                        "pk": {"S": f"pushing#{listening}"},
                        "sk": {"S": "pushing"},
                        "expires": {"N": str(int(time.time()) + 3600)},
                    }
                ]
            },
            "UnprocessedKeys": {
                "jmap": {"Keys": [{"pk": {"S": f"pushing#{throttled}"}, "sk": {"S": "pushing"}}]}
            },
        }
    ).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n\r\n"
        % len(body)
        + body
    )


def test_owners_whose_markers_stay_unread_may_listen() -> None:
    answer = _answer("a@example.test", "b@example.test")
    server = ScriptedServer(lambda n: answer, close_after=lambda n: False)
    try:
        table = (
            boto3.session.Session()
            .resource(
                "dynamodb",
                region_name="us-east-1",
                endpoint_url=f"http://127.0.0.1:{server.port}",
                aws_access_key_id="a",
                aws_secret_access_key="b",
                config=aws._CONFIG,
            )
            .Table("jmap")
        )
        owners = {"a@example.test", "b@example.test", "c@example.test"}
        # a: marker read; b: never read (a Query finds out, rather than b going untold); c: no marker.
        assert PushConnections(table).may_listen(owners) == {"a@example.test", "b@example.test"}
        assert len(server.requests) == 5  # the first read and four more for what stayed unread
    finally:
        server.stop()
