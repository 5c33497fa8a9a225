"""The dev stack's DynamoDB requests handed to moto's DynamoDB handler without Flask.

Every change to a mailbox is a TransactWriteItems, and the change feed reads the table's stream
several times a second. moto serves each JSON request through its Flask app: a request context,
URL routing, moto's domain dispatcher picking the backend by host and target, before- and
after-request hooks (flask-cors), and the answer built as a Flask Response. On the dev stack
that was ~10% of moto's CPU for an APPEND's transaction (py-spy --gil of the moto child,
2026-12-06), all of it while every other DynamoDB request waits (moto_server._AtomicDynamoDB).

A POST to "/" with a DynamoDB or DynamoDB Streams target and no Origin (botocore sends none; a
browser's CORS request is flask-cors's to answer) goes to the same handler moto's Flask route
calls (`DynamoHandler.dispatch`, `DynamoDBStreamsHandler.dispatch`) with the same normalized
request object, and its (status, headers, body) becomes the same Flask Response, with the header
flask-cors adds to every answer. Anything else goes to moto's app as before.
tests/test_moto_dynamodb_direct.py compares the answers of both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_HANDLERS = {"DynamoDB_20120810.": "dynamodb", "DynamoDBStreams_20120810.": "dynamodbstreams"}


class DirectDynamoDB:
    """WSGI middleware: answers DynamoDB's JSON requests through moto's handler, passes on the rest."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._handlers: dict[str, Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = self._handler(environ)
        if handler is None:
            return self._app(environ, start_response)
        from flask import Response
        from moto.moto_api import recorder
        from moto.moto_server.werkzeug_app import BackendRequest

        # What moto's convert_to_flask_response does with Flask's request, on the same class.
        request = BackendRequest(environ)
        recorder._record_request(request)
        try:
            status, headers, content = handler(request, request.raw_url, dict(request.headers))
        except _client_error() as exc:
            status, headers, content = 400, {}, exc.response["Error"]["Message"]
        response = Response(response=content, status=status, headers=headers)
        response.headers["Access-Control-Allow-Origin"] = "*"  # flask-cors's, on every answer
        return response(environ, start_response)

    def _handler(self, environ: dict[str, Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/":
            return None
        if "HTTP_ORIGIN" in environ:
            return None
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        service = next((name for prefix, name in _HANDLERS.items() if target.startswith(prefix)), None)
        if service is None:
            return None
        if self._handlers is None:
            from moto.dynamodb.responses import DynamoHandler
            from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

            self._handlers = {
                "dynamodb": DynamoHandler.dispatch,
                "dynamodbstreams": DynamoDBStreamsHandler.dispatch,
            }
        return self._handlers[service]


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError
