"""Signing in to JMAP over real HTTP: Basic through the verified-credentials cache, session tokens
(POST /jmap/login, Bearer, POST /jmap/logout, revoked by passwd/disable/del), and the failed-login
throttle counted in the JMAP table (lifted by `mailpipe user unlock`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from conftest import PASSWORD
from jmap_support import Raw

from mailpipe import aws
from mailpipe.auth.cache import shared_cache
from mailpipe.auth.throttle import MAX_FAILURES_PER_USER
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack


def login(base_url: str, user: str, password: str) -> tuple[int, dict]:
    raw = Raw(base_url, user, password)
    raw.auth = None  # type: ignore[assignment]
    body = json.dumps({"username": user, "password": password}).encode()
    status, _, answer = raw.http("POST", "/jmap/login", body, {"Content-Type": "application/json"})
    return status, json.loads(answer) if answer else {}


def bearer(base_url: str, token: str) -> Raw:
    raw = Raw(base_url, "unused", "unused")
    raw.auth = f"Bearer {token}"
    return raw


def test_basic_sign_in_is_verified_once_then_cached(
    jmap_server: LocalHttpApi, new_user: Callable[..., str]
) -> None:
    raw = Raw(jmap_server.url, new_user(), PASSWORD)
    cache = shared_cache()
    assert raw.http("GET", "/jmap/session")[0] == 200
    hits = cache.hits
    assert raw.http("GET", "/jmap/session")[0] == 200
    assert cache.hits == hits + 1


def test_token_signs_in_until_logout(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> None:
    user = new_user()
    status, answer = login(jmap_server.url, user, PASSWORD)
    assert status == 200 and answer["tokenType"] == "Bearer"
    raw = bearer(jmap_server.url, answer["accessToken"])
    assert raw.session()["username"] == user
    assert raw.call(["Core/echo", {"x": 1}, "e"])[0][1] == {"x": 1}
    status, _, _ = raw.http("POST", "/jmap/logout")
    assert status == 204
    assert raw.http("GET", "/jmap/session")[0] == 401
    assert bearer(jmap_server.url, "A" * 43).http("GET", "/jmap/session")[0] == 401


@pytest.mark.parametrize("change", ["passwd", "disable", "del"])
def test_directory_changes_revoke_tokens(
    stack: DevStack, jmap_server: LocalHttpApi, new_user: Callable[..., str], change: str
) -> None:
    user = new_user()
    token = login(jmap_server.url, user, PASSWORD)[1]["accessToken"]
    raw = bearer(jmap_server.url, token)
    assert raw.http("GET", "/jmap/session")[0] == 200
    directory = stack.directory()
    if change == "passwd":
        directory.set_password(user, PASSWORD)  # the same password: a new salt, a new hash
    elif change == "disable":
        directory.set_disabled(user, True)
    else:
        directory.delete_user(user)
    assert raw.http("GET", "/jmap/session")[0] == 401


def test_bad_logins(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> None:
    user = new_user()
    raw = Raw(jmap_server.url, user, PASSWORD)
    for body in (b"not json", b"[]", b'{"username": 1, "password": "x"}', b"{" * 5000):
        assert raw.http("POST", "/jmap/login", body, {"Content-Type": "application/json"})[0] == 400
    assert raw.http("GET", "/jmap/login")[0] == 405
    assert login(jmap_server.url, user, "wrong")[0] == 401


def test_failed_logins_are_throttled_until_unlock(
    stack: DevStack, jmap_server: LocalHttpApi, new_user: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    user = new_user()
    table = aws.table(stack.resources.jmap_table)
    try:
        with caplog.at_level(logging.WARNING, logger="mailpipe"):
            for _ in range(MAX_FAILURES_PER_USER):
                assert Raw(jmap_server.url, user, "wrong").http("GET", "/jmap/session")[0] == 401
            # Held: the right password is not even checked, over Basic or at /jmap/login.
            assert Raw(jmap_server.url, user, PASSWORD).http("GET", "/jmap/session")[0] == 429
            assert login(jmap_server.url, user, PASSWORD)[0] == 429
        assert f"auth throttled: client=127.0.0.1 protocol=jmap user={user}" in caplog.text
        stack.directory().unlock(user)
        assert Raw(jmap_server.url, user, PASSWORD).http("GET", "/jmap/session")[0] == 200
    finally:
        # This address's budget across users is shared with every other test from 127.0.0.1.
        table.delete_item(Key={"pk": "failures#client#127.0.0.1", "sk": "all"})
