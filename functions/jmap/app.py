"""JMAP over HTTP (RFC 8620/8621): API Gateway HTTP API (payload v2) in, the core's answer out."""

import base64

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.jmap.http import HttpRequest
from mailpipe.services import jmap_http

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayProxyEventV2)
def lambda_handler(event: APIGatewayProxyEventV2, context: LambdaContext) -> dict:
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
