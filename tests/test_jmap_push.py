"""JMAP over WebSocket (RFC 8887) and push, through the local WebSocket API (the function's handler
fed as API Gateway's WebSocket API feeds it) and the real relay: mail delivered over SMTP, or a
change by IMAP, reaches the owner's socket as a StateChange through the mailbox table's stream,
the relay function and the @connections management API; nobody else's."""

from __future__ import annotations

import imaplib
import json
import logging
import smtplib
import time
import urllib.parse
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
import websocket
from boto3.dynamodb.conditions import Key
from conftest import PASSWORD
from jmap_support import CORE, MAIL, Raw

from mailpipe import aws
from mailpipe.config import ENV_PUSH_ENDPOINT
from mailpipe.jmap.ids import account_id
from mailpipe.jmap.push import CONNECTION_LIFETIME, PushConnections
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack

WEBSOCKET = "urn:ietf:params:jmap:websocket"
DEADLINE = 30.0  # seconds a StateChange may take at most before the test gives up


@pytest.fixture
def push_endpoint(jmap_server: LocalHttpApi, monkeypatch: pytest.MonkeyPatch) -> str:
    # The relay (run in this process by the dev stack's stream source) posts here, as on AWS to
    # the WebSocket API's @connections endpoint.
    monkeypatch.setenv(ENV_PUSH_ENDPOINT, jmap_server.url)
    return jmap_server.url


def token_for(base_url: str, user: str) -> str:
    raw = Raw(base_url, user, PASSWORD)
    body = json.dumps({"username": user, "password": PASSWORD}).encode()
    status, _, answer = raw.http("POST", "/jmap/login", body, {"Content-Type": "application/json"})
    assert status == 200, answer
    return json.loads(answer)["accessToken"]


def connect(base_url: str, user: str) -> websocket.WebSocket:
    session = Raw(base_url, user, PASSWORD).session()
    url = session["capabilities"][WEBSOCKET]["url"]
    query = urllib.parse.urlencode({"access_token": token_for(base_url, user)})
    return websocket.create_connection(f"{url}?{query}", subprotocols=["jmap"], timeout=DEADLINE)


def receive(ws: websocket.WebSocket) -> dict[str, Any]:
    return json.loads(ws.recv())


def state_change_for(ws: websocket.WebSocket, account: str) -> dict[str, Any]:
    """The first StateChange naming `account`, within the deadline (the socket's timeout)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        message = receive(ws)
        if message.get("@type") == "StateChange" and account in message["changed"]:
            return message
    raise AssertionError(f"no StateChange for {account} within {DEADLINE} s")


def test_session_names_the_websocket(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> None:
    session = Raw(jmap_server.url, new_user(), PASSWORD).session()
    capability = session["capabilities"][WEBSOCKET]
    assert capability == {
        "url": jmap_server.url.replace("http://", "ws://") + "/jmap/ws",
        "supportsPush": True,
    }


def test_requests_over_websocket(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> None:
    user = new_user()
    ws = connect(jmap_server.url, user)
    try:
        assert ws.subprotocol == "jmap"
        request = {
            "@type": "Request",
            "id": "r1",
            "using": [CORE, MAIL],
            "methodCalls": [
                ["Core/echo", {"hello": True}, "c1"],
                ["Mailbox/get", {"accountId": account_id(user), "properties": ["role"]}, "c2"],
            ],
        }
        ws.send(json.dumps(request))
        response = receive(ws)
        assert response["@type"] == "Response" and response["requestId"] == "r1"
        assert response["methodResponses"][0] == ["Core/echo", {"hello": True}, "c1"]
        assert "inbox" in {mailbox["role"] for mailbox in response["methodResponses"][1][1]["list"]}
        # Bad input: a RequestError frame, and the socket stays open.
        for bad, kind in (("not json", "notJSON"), ('{"@type": "Nope", "id": "x"}', "notRequest")):
            ws.send(bad)
            error = receive(ws)
            assert error["@type"] == "RequestError" and error["type"].endswith(kind), error
        ws.send(json.dumps({**request, "id": "r2", "using": ["urn:example:nope"]}))
        error = receive(ws)
        assert error["type"].endswith("unknownCapability") and error["requestId"] == "r2"
        ws.send(json.dumps({**request, "id": "r3"}))
        assert receive(ws)["requestId"] == "r3"
    finally:
        ws.close()


def test_handshake_needs_a_token_and_the_jmap_subprotocol(
    jmap_server: LocalHttpApi, new_user: Callable[..., str]
) -> None:
    url = jmap_server.url.replace("http://", "ws://") + "/jmap/ws"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{url}?access_token={'A' * 43}", subprotocols=["jmap"], timeout=30)
    assert refused.value.status_code == 401
    token = token_for(jmap_server.url, new_user())
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{url}?access_token={token}", timeout=30)
    assert refused.value.status_code == 400


def test_new_mail_pushes_a_state_change_to_its_owner_only(
    stack: DevStack, jmap_server: LocalHttpApi, push_endpoint: str, new_user: Callable[..., str]
) -> None:
    alice, bob = new_user(), new_user()
    for user in (alice, bob):
        stack.mail_store().ensure_mailboxes(user)
    alice_ws, bob_ws = connect(jmap_server.url, alice), connect(jmap_server.url, bob)
    try:
        for ws in (alice_ws, bob_ws):
            ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
        # A request after the enable: once answered, the enable is stored (frames are in order).
        for ws in (alice_ws, bob_ws):
            ws.send(json.dumps({"@type": "Request", "id": "sync", "using": [CORE], "methodCalls": []}))
            assert receive(ws)["requestId"] == "sync"
        before = Raw(jmap_server.url, alice, PASSWORD).call(
            ["Email/get", {"accountId": account_id(alice), "ids": []}, "g"]
        )
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "carol@crepes.fr", alice, "push me"
        message.set_content("hello\n")
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
            client.send_message(message)
        change = state_change_for(alice_ws, account_id(alice))
        assert set(change["changed"]) == {account_id(alice)}
        states = change["changed"][account_id(alice)]
        assert states["Email"] != before[0][1]["state"]
        # The state pushed is the state the account now has (what Email/get tells).
        after = Raw(jmap_server.url, alice, PASSWORD).call(
            ["Email/get", {"accountId": account_id(alice), "ids": []}, "g"]
        )
        assert states["Email"] == after[0][1]["state"]
        # Bob heard nothing of it: the first thing his socket gets is about his own mailbox.
        stack.mail_store().create_mailbox(bob, "Projects")
        change = receive(bob_ws)
        assert change["@type"] == "StateChange" and set(change["changed"]) == {account_id(bob)}
    finally:
        alice_ws.close()
        bob_ws.close()


def test_push_only_of_the_types_asked_and_disable(
    stack: DevStack, jmap_server: LocalHttpApi, push_endpoint: str, new_user: Callable[..., str]
) -> None:
    user = new_user()
    stack.mail_store().ensure_mailboxes(user)
    ws = connect(jmap_server.url, user)
    try:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"]}))
        ws.send(json.dumps({"@type": "Request", "id": "sync", "using": [CORE], "methodCalls": []}))
        assert receive(ws)["requestId"] == "sync"
        stack.mail_store().create_mailbox(user, "Receipts")
        change = state_change_for(ws, account_id(user))
        assert set(change["changed"][account_id(user)]) == {"Mailbox"}
        ws.send(json.dumps({"@type": "WebSocketPushDisable"}))
        ws.send(json.dumps({"@type": "Request", "id": "off", "using": [CORE], "methodCalls": []}))
        assert receive(ws)["requestId"] == "off"
    finally:
        ws.close()


def test_a_gone_connection_is_dropped_at_the_next_push(
    stack: DevStack, jmap_server: LocalHttpApi, push_endpoint: str, new_user: Callable[..., str]
) -> None:
    """A connection whose $disconnect was lost: the management API answers Gone, the relay forgets it."""
    user = new_user()
    stack.mail_store().ensure_mailboxes(user)
    table = aws.table(stack.resources.jmap_table)
    # What a WebSocketPushEnable stores, for a connection API Gateway no longer knows.
    PushConnections(table).enable("lost-connection", user, None)
    stack.mail_store().create_mailbox(user, "Trigger")
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if "Item" not in table.get_item(Key={"pk": f"push#{user}", "sk": "lost-connection"}):
            return
        time.sleep(0.2)
    raise AssertionError("the gone connection was not dropped")


def test_an_imap_store_pushes_a_state_change(
    stack: DevStack, jmap_server: LocalHttpApi, push_endpoint: str, new_user: Callable[..., str]
) -> None:
    user = new_user()
    stack.mail_store().ensure_mailboxes(user)
    stack.mail_store().append_message(user, "INBOX", b"Subject: flag me\r\n\r\nhello\r\n")
    ws = connect(jmap_server.url, user)
    try:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
        ws.send(json.dumps({"@type": "Request", "id": "sync", "using": [CORE], "methodCalls": []}))
        assert receive(ws)["requestId"] == "sync"
        imap = imaplib.IMAP4("127.0.0.1", stack.imap_port)
        try:
            imap.login(user, PASSWORD)
            imap.select("INBOX")
            assert imap.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
        finally:
            imap.logout()
        raw = Raw(jmap_server.url, user, PASSWORD)
        # The append may be pushed first: the flag's change comes within the deadline.
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            states = state_change_for(ws, account_id(user))["changed"][account_id(user)]
            current = raw.call(["Email/get", {"accountId": account_id(user), "ids": []}, "g"])[0][1]["state"]
            if states["Email"] == current:
                break
        else:
            raise AssertionError("no StateChange with the state after the STORE")
        query = raw.call(
            ["Email/query", {"accountId": account_id(user), "filter": {"hasKeyword": "$flagged"}}, "q"]
        )
        assert len(query[0][1]["ids"]) == 1
    finally:
        ws.close()


def test_a_revoked_token_ends_its_sockets_use(
    stack: DevStack, jmap_server: LocalHttpApi, new_user: Callable[..., str]
) -> None:
    """A socket signed in with a token is checked at each frame: after logout (or passwd) its
    requests are refused with a 401 problem and it is forgotten, pushes included."""
    user = new_user()
    stack.mail_store().ensure_mailboxes(user)
    url = Raw(jmap_server.url, user, PASSWORD).session()["capabilities"][WEBSOCKET]["url"]
    request = {"@type": "Request", "using": [CORE], "methodCalls": [["Core/echo", {}, "e"]]}
    table = aws.table(stack.resources.jmap_table)

    def revoked_by(revoke: Callable[[str], None]) -> None:
        token = token_for(jmap_server.url, user)
        ws = websocket.create_connection(
            f"{url}?access_token={token}", subprotocols=["jmap"], timeout=DEADLINE
        )
        try:
            ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            ws.send(json.dumps({**request, "id": "before"}))
            assert receive(ws)["requestId"] == "before"
            assert table.query(KeyConditionExpression=Key("pk").eq(f"push#{user}"))["Items"]
            revoke(token)
            ws.send(json.dumps({**request, "id": "after"}))
            refused = receive(ws)
            assert refused["@type"] == "RequestError" and refused["status"] == 401, refused
            assert "methodResponses" not in refused
            # Forgotten: no push item (the relay tells it nothing more), and still refused.
            assert table.query(KeyConditionExpression=Key("pk").eq(f"push#{user}"))["Items"] == []
            ws.send(json.dumps({**request, "id": "again"}))
            assert receive(ws)["@type"] == "RequestError"
        finally:
            ws.close()

    def logout(token: str) -> None:
        raw = Raw(jmap_server.url, user, PASSWORD)
        raw.auth = f"Bearer {token}"
        assert raw.http("POST", "/jmap/logout")[0] == 204

    revoked_by(logout)
    revoked_by(lambda token: stack.directory().set_password(user, PASSWORD))


def test_the_access_token_is_never_logged(
    jmap_server: LocalHttpApi,
    new_user: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The token rides in the WebSocket URL: no log line of the local server or the function
    carries it, whether the handshake is taken, refused, or the URL is asked without upgrading."""
    caplog.set_level(logging.DEBUG)
    user = new_user()
    token = token_for(jmap_server.url, user)
    url = jmap_server.url.replace("http://", "ws://") + "/jmap/ws"
    ws = websocket.create_connection(f"{url}?access_token={token}", subprotocols=["jmap"], timeout=DEADLINE)
    ws.send(json.dumps({"@type": "Request", "id": "r", "using": [CORE], "methodCalls": []}))
    assert receive(ws)["requestId"] == "r"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"{url}?access_token={token}", timeout=DEADLINE)  # no subprotocol
    raw = Raw(jmap_server.url, user, PASSWORD)
    assert raw.http("GET", f"/jmap/ws?access_token={token}")[0] == 404
    assert raw.http("GET", f"/.well-known/jmap?x=1&access_token={token}")[0] == 200
    out, err = capfd.readouterr()
    assert "jmap/ws?access_token=(hidden)" in caplog.text  # the request line was logged, hidden
    assert token not in caplog.text and token not in out and token not in err


def test_the_relay_reads_who_may_listen_in_one_request_per_hundred_owners(
    stack: DevStack, new_user: Callable[..., str]
) -> None:
    """The markers say which owners may have a listening connection (an enable not yet expired),
    so the relay Queries only theirs: 150 owners (two BatchGetItem pages), two enabled, one of
    them long ago, one enabled and then disabled (the marker stays: another connection may
    listen)."""
    table = aws.table(stack.resources.jmap_table)
    now = time.time()
    owners = {new_user() for _ in range(3)} | {f"nobody-{i}@example.org" for i in range(147)}
    listener, expired, disabled = sorted(o for o in owners if not o.startswith("nobody-"))
    PushConnections(table).enable("conn-a", listener, None)
    PushConnections(table, clock=lambda: now - CONNECTION_LIFETIME - 60).enable("conn-b", expired, None)
    PushConnections(table).enable("conn-c", disabled, ["Email"])
    PushConnections(table).disable("conn-c", disabled)
    assert PushConnections(table).may_listen(owners) == {listener, disabled}
    assert PushConnections(table).listening(listener) == [("conn-a", None)]
    assert PushConnections(table).listening(disabled) == []
    assert PushConnections(table).may_listen(set()) == set()
