"""Password checks queue behind one bound per process: a login flood cannot take every core,
executor thread and 64 MiB argon2id buffer at once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from conftest import PASSWORD

from mailpipe.auth.throttle import AuthThrottle
from mailpipe_gateway.auth.login import CONCURRENT_CHECKS, Logins
from mailpipe_gateway.auth.sasl import Credentials
from mailpipe_gateway.listeners import executor_runner


def test_concurrent_logins_check_passwords_within_the_bound(stack, new_user) -> None:
    users = [new_user() for _ in range(6)]
    executor = ThreadPoolExecutor(max_workers=8)
    run = executor_runner(executor)
    in_flight, most = 0, 0

    async def observed(function, *args):  # the real runner, watched: how many checks at once
        nonlocal in_flight, most
        if function.__name__ != "check_password":  # the directory read before it is not bounded
            return await run(function, *args)
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await run(function, *args)
        finally:
            in_flight -= 1

    async def flood() -> list:
        logins = Logins(stack.directory(), AuthThrottle(), observed)
        attempts = [Credentials(user, PASSWORD) for user in users] + [
            Credentials(user, "wrong password") for user in users
        ]
        return await asyncio.gather(*(logins.check(c, "192.0.2.1", "imap") for c in attempts))

    try:
        results = asyncio.run(flood())
    finally:
        executor.shutdown()
    assert [r is not None for r in results] == [True] * 6 + [False] * 6
    assert most == CONCURRENT_CHECKS, f"{most} password checks ran at once"
