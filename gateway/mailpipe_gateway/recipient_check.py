"""Asking the recipient validation function about an address, with a short-lived cache.

One interface, two transports: on AWS a synchronous Lambda invoke of the validation
function; without a function to invoke, the same check (mailpipe.recipients) against the
directory in-process. The dev stack calls the function's handler itself (mailpipe_tools).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from mailpipe.directory import Directory, Verdict
from mailpipe.quota import Quotas
from mailpipe.recipients import RecipientQuery, answer

Lookup = Callable[[str], dict[str, Any]]

POSITIVE_TTL = 60.0
NEGATIVE_TTL = 15.0  # short, so a user added a moment ago starts receiving soon
CACHE_ENTRIES = 10_000


class DirectoryUnavailable(RuntimeError):
    """The validation function could not answer; the client should retry later (451)."""


def directory_lookup(directory: Directory, quotas: Quotas | None = None) -> Lookup:
    def lookup(address: str) -> dict[str, Any]:
        return answer(directory, RecipientQuery(address), quotas)

    return lookup


def lambda_lookup(lambda_client: Any, function_name: str) -> Lookup:
    def lookup(address: str) -> dict[str, Any]:
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps({"address": address}).encode(),
        )
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise DirectoryUnavailable(f"validation function failed: {payload[:200]!r}")
        return json.loads(payload)

    return lookup


class RecipientChecker:
    def __init__(
        self,
        lookup: Lookup,
        executor: Executor | None = None,
        *,
        positive_ttl: float = POSITIVE_TTL,
        negative_ttl: float = NEGATIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._executor = executor
        self._positive_ttl = positive_ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Verdict]] = OrderedDict()

    async def check(self, address: str) -> Verdict:
        key = address.lower()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._lookup, address)
            verdict = Verdict(answer["verdict"])
        except DirectoryUnavailable:
            raise
        except Exception as exc:
            raise DirectoryUnavailable(f"{type(exc).__name__}: {exc}") from exc
        ttl = self._positive_ttl if verdict is Verdict.DELIVERABLE else self._negative_ttl
        self._cache[key] = (self._clock() + ttl, verdict)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return verdict
