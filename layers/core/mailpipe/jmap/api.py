"""A JMAP API request (RFC 8620 3): checked, its method calls run in order with result references
resolved, each failure answered with the RFC's error and a log line, never a trace."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mailpipe.jmap import (  # noqa: F401  (they register methods)
    core_methods,
    emails,
    identities,
    mailboxes,
    snippets,
    submissions,
    threads,
)
from mailpipe.jmap.context import CAPABILITIES, CORE, Context
from mailpipe.jmap.errors import MethodError, RequestError
from mailpipe.jmap.methods import METHODS
from mailpipe.jmap.references import resolve_arguments
from mailpipe.jmap.session import session_state
from mailpipe.store import StoreError

log = logging.getLogger(__name__)

# How deep a request's JSON may nest: a request is a few levels, a filter of a webmail's search
# a few more; the parser and the methods (filters are compiled recursively) stay far from
# Python's recursion limit.
MAX_DEPTH = 64


class Concurrency:
    """maxConcurrentRequests, per owner, within this process (one Lambda environment runs one
    request at a time, so there this only counts the local server's threads; across environments
    API Gateway's throttling is what bounds a user)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()

    @contextmanager
    def slot(self, owner: str, limit: int) -> Iterator[None]:
        with self._lock:
            if self._running[owner] >= limit:
                raise RequestError(
                    "limit", f"at most {limit} concurrent requests", status=429, limit="maxConcurrentRequests"
                )
            self._running[owner] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running[owner] -= 1
                if not self._running[owner]:
                    del self._running[owner]


CONCURRENCY = Concurrency()


def parse_request(body: bytes, context: Context) -> dict[str, Any]:
    limits = context.limits
    if len(body) > limits.max_size_request:
        raise RequestError(
            "limit", f"the request is larger than {limits.max_size_request} bytes", limit="maxSizeRequest"
        )
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("notJSON", f"the request is not JSON: {exc}") from None
    except RecursionError:  # deeper than the parser goes: no request needs that
        raise RequestError("notJSON", f"nested more than {MAX_DEPTH} levels") from None
    if _too_deep(request):
        # Methods walk filters and patches recursively: a request is refused before they could.
        raise RequestError("notRequest", f"nested more than {MAX_DEPTH} levels")
    if not (
        isinstance(request, dict)
        and isinstance(request.get("using"), list)
        and all(isinstance(u, str) for u in request["using"])
        and isinstance(request.get("methodCalls"), list)
        and all(_is_invocation(call) for call in request["methodCalls"])
        and isinstance(request.get("createdIds", {}), dict)
    ):
        raise RequestError("notRequest", "the request is not a JMAP Request object")
    unknown = sorted(set(request["using"]) - set(CAPABILITIES))
    if unknown:
        raise RequestError("unknownCapability", f"unknown capabilities: {', '.join(unknown)}")
    if len(request["methodCalls"]) > limits.max_calls_in_request:
        raise RequestError(
            "limit",
            f"at most {limits.max_calls_in_request} method calls in a request",
            limit="maxCallsInRequest",
        )
    return request


def _too_deep(value: Any) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            pending.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            pending.extend((v, depth + 1) for v in item)
    return False


def _is_invocation(call: Any) -> bool:
    return (
        isinstance(call, list)
        and len(call) == 3
        and isinstance(call[0], str)
        and isinstance(call[1], dict)
        and isinstance(call[2], str)
    )


def process(body: bytes, context: Context) -> dict[str, Any]:
    """The Response object for a request body; RequestError for a request refused whole."""
    request = parse_request(body, context)
    with CONCURRENCY.slot(context.owner, context.limits.max_concurrent_requests):
        context.using = frozenset(request["using"]) | {CORE}
        context.created_ids = {str(k): str(v) for k, v in request.get("createdIds", {}).items()}
        responses: list[list[Any]] = []
        for name, arguments, call_id in request["methodCalls"]:
            for response_name, result in _call(name, arguments, call_id, responses, context):
                responses.append([response_name, result, call_id])
    response: dict[str, Any] = {
        "methodResponses": responses,
        "sessionState": session_state(context.owner, context.limits),
    }
    if "createdIds" in request:
        response["createdIds"] = context.created_ids
    return response


def _call(
    name: str, arguments: dict[str, Any], call_id: str, responses: list[list[Any]], context: Context
) -> list[tuple[str, dict[str, Any]]]:
    try:
        method = METHODS.get(name)
        if method is None or method.capability not in context.using:
            raise MethodError("unknownMethod", f"no method {name!r} in the capabilities used")
        arguments = resolve_arguments(arguments, responses)
        if method.needs_account:
            account = arguments.get("accountId")
            if not isinstance(account, str):
                raise MethodError("invalidArguments", "accountId is required")
            if account != context.account_id:
                raise MethodError("accountNotFound", "no such account")
        result = method.function(context, arguments)
    except MethodError as error:
        log.info("jmap %s (%s) for %s: %s", name, call_id, context.owner, error.kind)
        return [("error", error.response())]
    except StoreError as exc:
        log.warning("jmap %s (%s) for %s: store: %s", name, call_id, context.owner, exc)
        return [("error", MethodError("serverFail", "the mail store refused the change").response())]
    except Exception:
        # A bug or an outage: the client gets serverFail for this call, the log gets the trace.
        log.exception("jmap %s (%s) for %s failed", name, call_id, context.owner)
        return [("error", MethodError("serverFail").response())]
    if isinstance(result, dict):
        return [(name, result)]
    return result
