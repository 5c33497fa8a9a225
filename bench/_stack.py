"""What the benchmarks on the dev stack share: starting it, the JMAP function over HTTP, a JMAP sign-in.

    with contextlib.ExitStack() as resources:
        stack = dev_stack(resources, [(USER, PASSWORD)])
        api = jmap_api(resources, stack)
        jmap = Jmap(api.url, USER, PASSWORD)

Everything started here is stopped when `resources` closes, the last started first.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from processes import moto_in_own_process

from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import JMAP_FUNCTION, DevOptions, DevStack

DOMAIN = "example.test"  # the benches' users' domain
MAIL_USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
# Every DNS lookup goes here, where nothing answers: a bench asks no DNS server of the internet.
NO_DNS = "127.0.0.1:9"


def dev_stack(
    resources: contextlib.ExitStack,
    users: list[tuple[str, str]],
    *,
    http: bool = False,
    moto_in_process: bool = False,
) -> DevStack:
    """The dev stack started, every listener on a free port, without its pollers, serving the
    domains of `users` (address, password).

    moto runs in a process of its own (processes.moto_in_own_process: the gateway does not wait
    for moto's threads to release the GIL), or with `moto_in_process` in this one, as
    `mailpipe dev` runs it. `http`: the webmail and the JMAP function on `stack.http`, as
    `mailpipe dev --http-port` serves them."""
    # A bench prints figures: the functions' INFO lines (one per JMAP request...) would bury them.
    # Warnings and errors still show; POWERTOOLS_LOG_LEVEL set by the caller wins.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    endpoint = None if moto_in_process else resources.enter_context(moto_in_own_process())
    state_dir = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="bench-stack-")))
    options = DevOptions(
        smtp_port=0,
        submission_port=0,
        pop3_port=0,
        imap_port=0,
        aws_port=0,
        http_port=0 if http else None,
        domains=sorted({address.rpartition("@")[2] for address, _ in users}),
        users=users,
        state_dir=state_dir,
        aws_endpoint=endpoint,
        run_pollers=False,
        resolver=NO_DNS,
    )
    stack = DevStack(options)
    stack.start()
    resources.callback(stack.stop)
    return stack


def jmap_api(resources: contextlib.ExitStack, stack: DevStack) -> LocalHttpApi:
    """The stack's JMAP function behind a local HTTP API of its own (tools/.../jmap_http.py)."""
    function = stack.functions[JMAP_FUNCTION]
    api = LocalHttpApi(function.handler, function.name)
    api.start()
    resources.callback(api.stop)
    return api


def access_token(url: str, user: str, password: str) -> str:
    """A JMAP session token (POST /jmap/login), for Bearer or the WebSocket's access_token."""
    login = urllib.request.Request(
        url + "/jmap/login",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=60) as response:
        return str(json.load(response)["accessToken"])


def push_socket(url: str, token: str, using: list[str]) -> Any:  # a websocket-client WebSocket
    """A JMAP WebSocket (RFC 8887) with push of Email changes on, once the server has answered a
    first request (so push is on before the caller changes anything)."""
    import websocket  # the test extra's client (websocket-client)

    ws_url = url.replace("http://", "ws://") + "/jmap/ws?access_token=" + token
    ws = websocket.create_connection(ws_url, subprotocols=["jmap"], timeout=60)
    ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
    ws.send(json.dumps({"@type": "Request", "id": "sync", "using": using, "methodCalls": []}))
    json.loads(ws.recv())
    return ws


class Jmap:
    """JMAP API requests as one user, with HTTP Basic (the verified-credentials cache answers
    after the first)."""

    def __init__(self, url: str, user: str, password: str, using: list[str] = MAIL_USING) -> None:
        self.url = url
        self.using = using
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def post(self, calls: list[list[object]]) -> list[list[object]]:
        request = urllib.request.Request(
            self.url + "/jmap/api",
            data=json.dumps({"using": self.using, "methodCalls": calls}).encode(),
            headers={"Authorization": self.auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())["methodResponses"]  # type: ignore[no-any-return]
