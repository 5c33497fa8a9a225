"""JMAP in tests: the JMAP function served over real HTTP on loopback, and raw requests to it."""

from __future__ import annotations

import base64
import functools
import json
import urllib.error
import urllib.request
from typing import Any

import jmapc
import requests
from jmapc.session import Session

from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
JMAP_FUNCTION = "JmapFunction"


def serve(stack: DevStack) -> LocalHttpApi:
    function = stack.functions[JMAP_FUNCTION]
    api = LocalHttpApi(function.handler, function.name)
    api.start()
    return api


class LoopbackClient(jmapc.Client):
    """jmapc asks https://HOST/.well-known/jmap; the local server speaks plain HTTP on loopback,
    so the session is fetched over http (every other URL comes from the session itself)."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        super().__init__(base_url.split("://", 1)[1], auth=requests.auth.HTTPBasicAuth(user, password))
        self._base_url = base_url

    @functools.cached_property
    def jmap_session(self) -> Session:  # type: ignore[override]
        response = self.requests_session.get(f"{self._base_url}/.well-known/jmap", timeout=30)
        response.raise_for_status()
        return Session.from_dict(response.json())


class Raw:
    """Plain HTTP requests, for what a library would not send: errors, references, limits."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = f"Basic {token}"
        self._session: dict[str, Any] | None = None

    def http(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        for name, value in {"Authorization": self.auth, **(headers or {})}.items():
            if value is not None:
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def session(self) -> dict[str, Any]:
        if self._session is None:
            status, _, body = self.http("GET", "/.well-known/jmap")
            assert status == 200, body
            self._session = json.loads(body)
        return self._session

    @property
    def account(self) -> str:
        return self.session()["primaryAccounts"][MAIL]

    def post(self, request: Any, content_type: str = "application/json") -> tuple[int, Any]:
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        status, _, data = self.http("POST", "/jmap/api", body, {"Content-Type": content_type})
        return status, json.loads(data)

    def call(self, *calls: list[Any], using: tuple[str, ...] = (CORE, MAIL)) -> list[list[Any]]:
        status, response = self.post({"using": list(using), "methodCalls": list(calls)})
        assert status == 200, response
        return response["methodResponses"]

    def one(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        ((response_name, result, _),) = self.call([name, {"accountId": self.account, **arguments}, "c"])
        assert response_name == name, result
        return result
