"""JMAP (RFC 8620/8621): API Gateway's HTTP API (payload v2) and WebSocket API (RFC 8887) in, the
core's answer out."""

import base64
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.jmap.http import HttpRequest
from mailpipe.services import jmap_http

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict:
    if "connectionId" in (event.get("requestContext") or {}):
        return _websocket(event)
    return _http(APIGatewayProxyEventV2(event))


def _http(event: APIGatewayProxyEventV2) -> dict:
    body = event.body or ""
    http = event.request_context.http
    request = HttpRequest(
        method=http.method,
        path=event.raw_path,
        headers={name.lower(): value for name, value in (event.headers or {}).items()},
        body=base64.b64decode(body) if event.is_base64_encoded else body.encode(),
        query=dict(event.query_string_parameters or {}),
        # API Gateway says how the client came (https); the local server says http.
        base_url=f"{event.headers.get('x-forwarded-proto', 'https')}://{event.request_context.domain_name}",
        source_ip=http.source_ip,
    )
    response = jmap_http().handle(request)
    logger.info("jmap", extra={"method": http.method, "path": event.raw_path, "status": response.status})
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": base64.b64encode(response.body).decode(),
        "isBase64Encoded": True,
    }


def _websocket(event: dict[str, Any]) -> dict:
    """$connect, $default and $disconnect of the WebSocket API (mailpipe/jmap/websocket.py)."""
    websocket = jmap_http().websocket
    context = event["requestContext"]
    route, connection_id = context.get("routeKey", ""), context["connectionId"]
    if websocket is None:  # no JMAP table: nowhere to keep connections
        return {"statusCode": 503}
    if route == "$connect":
        headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
        query = event.get("queryStringParameters") or {}
        client = (context.get("identity") or {}).get("sourceIp", "")
        reply = websocket.connect(connection_id, headers, query, client)
    elif route == "$disconnect":
        reply = websocket.disconnect(connection_id)
    else:
        body = event.get("body") or ""
        data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        reply = websocket.message(connection_id, data)
    logger.info("jmap websocket", extra={"route": route, "status": reply.status})
    result: dict[str, Any] = {"statusCode": reply.status, "headers": reply.headers}
    if reply.body is not None:
        result["body"] = reply.body  # sent back to the client by the $default route's response
    return result
