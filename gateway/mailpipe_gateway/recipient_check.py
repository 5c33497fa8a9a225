"""Asking the recipient validation function about an address, with a short-lived cache of refusals.

One interface, two transports: on AWS a synchronous Lambda invoke of the validation
function; without a function to invoke, the same check (mailpipe.recipients) against the
directory in-process. The dev stack calls the function's handler itself (mailpipe_tools).

Only refusals are cached. A cached "deliverable" would outlive `mailpipe user disable` or
`del` (each gateway task has its own cache, and the CLI cannot reach them), so the next RCPT
would still get 250. Invalidating instead (a directory "generation" item) would cost one read
per RCPT to be current, about what the lookup itself costs: one consistent BatchGetItem. So
deliverable answers are asked afresh each time, and the cache keeps what it is for: repeated
RCPTs for addresses that do not exist (dictionary attacks), for a few seconds, which delays a
newly added user by at most NEGATIVE_TTL.
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

NEGATIVE_TTL = 15.0  # short, so a user added (or enabled) a moment ago starts receiving soon
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
        negative_ttl: float = NEGATIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._executor = executor
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
        if verdict is Verdict.DELIVERABLE:
            return verdict  # never cached: see the module's docstring
        self._cache[key] = (self._clock() + self._negative_ttl, verdict)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return verdict
