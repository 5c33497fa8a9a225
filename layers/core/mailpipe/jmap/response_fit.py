"""A JMAP Response made to fit a transport's message limit.

API Gateway's WebSocket API sends at most 128 KB in one message (WEBSOCKET_MESSAGE_LIMIT): a
larger answer to a Request frame never reaches the client, and nothing tells it why. An Email/get
with body values (up to 256 KB each) easily goes over. Over HTTP the bound is Lambda's 6 MB
response, base64-encoded (HTTP_RESPONSE_LIMIT): over it, API Gateway answers a bare 500. So a
Response too large for its transport is sent with its largest method responses, one by one,
replaced by a method error until it fits (RFC 8620 3.6.2), the others kept:

- a /get's is `requestTooLarge` (RFC 8620 5.1: the client asks again for fewer objects or
  properties, or over HTTP, where the limit is larger);
- any other method's is `serverFail`, saying the call was made (a /set's changes stand) but its
  response could not be sent: a retry must not assume nothing happened.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)

# Lambda's 6 MB response holds the JSON base64-encoded (4/3 larger), with the headers.
HTTP_RESPONSE_LIMIT = 4 * 1024 * 1024


def _json(value: Any) -> str:
    # As sent: compact, and ASCII only (ensure_ascii), so its length is its size in bytes.
    return json.dumps(value, separators=(",", ":"))


def _error(name: str, transport: str, limit: int) -> dict[str, Any]:
    over = f"the response is over the {transport} limit of {limit} bytes"
    if name.endswith("/get"):
        return {"type": "requestTooLarge", "description": f"{over}: ask for fewer objects or properties"}
    return {"type": "serverFail", "description": f"the call was made, but {over}: ask for what it changed"}


def fitted_json(response: dict[str, Any], limit: int, transport: str, owner: str) -> str:
    """`response` as JSON of at most `limit` bytes: as it is if it fits, else with method
    responses replaced, largest first, until it does."""
    text = _json(response)
    if len(text) <= limit:
        return text
    calls: list[Any] = list(response.get("methodResponses") or [])
    sizes = [len(_json(call)) for call in calls]
    total, replaced = len(text), []
    for index in sorted(range(len(calls)), key=lambda i: sizes[i], reverse=True):
        name, _, call_id = calls[index]
        if name == "error":
            continue
        calls[index] = ["error", _error(name, transport, limit), call_id]
        replaced.append(name)
        total += len(_json(calls[index])) - sizes[index]
        if total <= limit:
            break
    log.info(
        "jmap response to %s over the %s limit (%d bytes > %d): %s answered with errors",
        owner,
        transport,
        len(text),
        limit,
        ", ".join(replaced),
    )
    return _json({**response, "methodResponses": calls})
