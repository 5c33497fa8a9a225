"""The limits a client is told in the session object (RFC 8620 2), and that the server enforces."""

from __future__ import annotations

from dataclasses import dataclass, field

# API Gateway's WebSocket API takes messages of at most 128 KB (a hard quota; read here as 128,000
# bytes, the smaller meaning) and closes the connection on a larger one: the function never sees
# it. The local server (tools/mailpipe_tools/local/websocket_api.py) does the same.
WEBSOCKET_MESSAGE_LIMIT = 128_000


@dataclass(frozen=True)
class Limits:
    # An upload is the body of one Lambda invocation: at most 6 MB, and API Gateway sends binary
    # bodies base64-encoded (4/3 larger), so 4 MB of bytes is what reliably fits (docs/jmap.md).
    max_size_upload: int = 4 * 1024 * 1024
    max_concurrent_upload: int = 4
    # One limit for both ways in (RFC 8887 applies maxSizeRequest to WebSocket requests too): below
    # the WebSocket API's message limit, so a request a little too large still reaches the function
    # and is answered with the `limit` problem rather than a closed socket. A request of method
    # calls needs far less; message bodies go as uploaded blobs.
    max_size_request: int = 100_000
    max_concurrent_requests: int = 4
    max_calls_in_request: int = 32
    max_objects_in_get: int = 500
    max_objects_in_set: int = 500
    # Email/query and Mailbox/query: a larger `limit` is lowered to this (RFC 8620 5.5 lets the
    # server cap it, and the response says the limit used), so no query lists a mailbox whole.
    max_query_limit: int = 256
    # /changes: a larger maxChanges (or none) is lowered to this.
    max_changes: int = 1000
    # Email/get bodyValues: a larger maxBodyValueBytes (or none) is lowered to this.
    max_body_value_bytes: int = 256 * 1024
    # Email/query filters that need bodies (text, body) read at most this many messages.
    max_body_search: int = 2000
    collation_algorithms: tuple[str, ...] = field(default=("i;ascii-numeric", "i;ascii-casemap"))

    def core_capability(self) -> dict[str, object]:
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
            "collationAlgorithms": list(self.collation_algorithms),
        }
