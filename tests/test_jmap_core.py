"""JMAP request processing (RFC 8620) over real HTTP, through the Lambda handler as API Gateway
feeds it, over the dev stack's store: the session resource, capabilities, result references,
Core/echo, every request-level error and the method-level ones, and the limits."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from conftest import PASSWORD
from jmap_support import CORE, MAIL, Raw

from mailpipe_tools.local.jmap_http import LocalHttpApi

SUBMISSION = "urn:ietf:params:jmap:submission"
PROBLEM = "urn:ietf:params:jmap:error:"


@pytest.fixture
def raw(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> Raw:
    return Raw(jmap_server.url, new_user(), PASSWORD)


def test_session_resource(raw: Raw, jmap_server: LocalHttpApi) -> None:
    session = raw.session()
    assert set(session["capabilities"]) == {CORE, MAIL, SUBMISSION, "urn:ietf:params:jmap:websocket"}
    core = session["capabilities"][CORE]
    for limit in ("maxSizeRequest", "maxCallsInRequest", "maxObjectsInGet", "maxObjectsInSet"):
        assert isinstance(core[limit], int) and core[limit] > 0
    (account,) = session["accounts"]
    assert session["primaryAccounts"] == {CORE: account, MAIL: account, SUBMISSION: account}
    assert session["accounts"][account]["accountCapabilities"][MAIL]["maxMailboxesPerEmail"] == 1
    assert session["apiUrl"] == jmap_server.url + "/jmap/api"
    status, _, body = raw.http("GET", "/jmap/session")
    assert status == 200 and json.loads(body) == session


def test_unauthenticated_and_wrong_password(raw: Raw, caplog: pytest.LogCaptureFixture) -> None:
    raw.auth = None  # type: ignore[assignment]
    status, headers, _ = raw.http("GET", "/.well-known/jmap")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    wrong = Raw(raw.base_url, "nobody@example.test", "nope")
    with caplog.at_level(logging.WARNING, logger="mailpipe"):
        assert wrong.http("GET", "/.well-known/jmap")[0] == 401
    assert "auth failed: client=127.0.0.1 protocol=jmap user=nobody@example.test" in caplog.text
    assert wrong.http("POST", "/jmap/api", b"{}", {"Content-Type": "application/json"})[0] == 401


def test_echo_and_result_references(raw: Raw) -> None:
    responses = raw.call(
        ["Core/echo", {"hello": [{"a": 1}, {"a": 2, "b": [3, 4]}]}, "e1"],
        ["Core/echo", {"#values": {"resultOf": "e1", "name": "Core/echo", "path": "/hello/*/a"}}, "e2"],
        ["Core/echo", {"#flat": {"resultOf": "e1", "name": "Core/echo", "path": "/hello/1/b"}}, "e3"],
        ["Mailbox/get", {"accountId": raw.account, "properties": ["name", "role"]}, "m"],
        [
            "Mailbox/get",
            {
                "accountId": raw.account,
                "#ids": {"resultOf": "m", "name": "Mailbox/get", "path": "/list/*/id"},
                "properties": ["role"],
            },
            "m2",
        ],
    )
    assert responses[0] == ["Core/echo", {"hello": [{"a": 1}, {"a": 2, "b": [3, 4]}]}, "e1"]
    assert responses[1] == ["Core/echo", {"values": [1, 2]}, "e2"]
    assert responses[2] == ["Core/echo", {"flat": [3, 4]}, "e3"]
    roles = sorted(str(m["role"]) for m in responses[4][1]["list"])
    assert roles == ["archive", "drafts", "inbox", "junk", "sent", "trash"]
    assert responses[4][1]["notFound"] == []


@pytest.mark.parametrize(
    "reference",
    [
        {"resultOf": "missing", "name": "Core/echo", "path": "/a"},  # no such call
        {"resultOf": "e1", "name": "Mailbox/get", "path": "/a"},  # the call had another name
        {"resultOf": "e1", "name": "Core/echo", "path": "/nothere"},  # the path leads nowhere
        {"resultOf": "e1", "name": "Core/echo", "path": "a"},  # not a pointer
        {"resultOf": "e1", "name": "Core/echo"},  # no path
    ],
)
def test_invalid_result_reference(raw: Raw, reference: dict) -> None:
    responses = raw.call(["Core/echo", {"a": 1}, "e1"], ["Core/echo", {"#x": reference}, "e2"])
    assert responses[1] == ["error", responses[1][1], "e2"]
    assert responses[1][1]["type"] == "invalidResultReference"


def test_both_argument_and_reference_is_invalid(raw: Raw) -> None:
    responses = raw.call(
        ["Core/echo", {"a": 1}, "e1"],
        ["Core/echo", {"x": 1, "#x": {"resultOf": "e1", "name": "Core/echo", "path": "/a"}}, "e2"],
    )
    assert responses[1][0] == "error" and responses[1][1]["type"] == "invalidArguments"


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b"{not json", "application/json", "notJSON"),
        (b'{"using": [], "methodCalls": []}', "text/plain", "notJSON"),
        (b"\xff\xfe", "application/json", "notJSON"),
        (b"[]", "application/json", "notRequest"),
        (b'{"using": "x", "methodCalls": []}', "application/json", "notRequest"),
        (b'{"using": [], "methodCalls": [["Core/echo", {}]]}', "application/json", "notRequest"),
        (b'{"using": [], "methodCalls": [[1, {}, "a"]]}', "application/json", "notRequest"),
        (b'{"using": ["urn:example:nope"], "methodCalls": []}', "application/json", "unknownCapability"),
        # Past the parser's own nesting limit, within maxSizeRequest (100,000 bytes).
        (b"[" * 45_000 + b"]" * 45_000, "application/json", "notJSON"),
        (
            b'{"using": [], "methodCalls": [["Core/echo", {"a": ' + b"[" * 500 + b"]" * 500 + b'}, "0"]]}',
            "application/json",
            "notRequest",
        ),
    ],
)
def test_request_level_errors(raw: Raw, body: bytes, content_type: str, kind: str) -> None:
    status, headers, data = raw.http("POST", "/jmap/api", body, {"Content-Type": content_type})
    problem = json.loads(data)
    assert (status, problem["type"], problem["status"]) == (400, PROBLEM + kind, 400)
    assert headers["Content-Type"] == "application/problem+json"


def test_request_limits(raw: Raw) -> None:
    core = raw.session()["capabilities"][CORE]
    too_many = [["Core/echo", {}, str(i)] for i in range(core["maxCallsInRequest"] + 1)]
    status, problem = raw.post({"using": [CORE], "methodCalls": too_many})
    assert (status, problem["type"], problem["limit"]) == (400, PROBLEM + "limit", "maxCallsInRequest")
    just_enough = too_many[:-1]
    status, response = raw.post({"using": [CORE], "methodCalls": just_enough})
    assert status == 200 and len(response["methodResponses"]) == len(just_enough)
    padding = "x" * core["maxSizeRequest"]
    status, problem = raw.post({"using": [CORE], "methodCalls": [["Core/echo", {"p": padding}, "a"]]})
    assert (status, problem["type"], problem["limit"]) == (400, PROBLEM + "limit", "maxSizeRequest")
    ids = [f"M{i:032x}" for i in range(core["maxObjectsInGet"] + 1)]
    ((name, error, _),) = raw.call(["Mailbox/get", {"accountId": raw.account, "ids": ids}, "g"])
    assert (name, error["type"]) == ("error", "requestTooLarge")
    destroy = [f"E{i:032x}-1" for i in range(core["maxObjectsInSet"] + 1)]
    ((name, error, _),) = raw.call(["Email/set", {"accountId": raw.account, "destroy": destroy}, "s"])
    assert (name, error["type"]) == ("error", "requestTooLarge")


def test_method_level_errors(raw: Raw) -> None:
    account = raw.account
    responses = raw.call(
        ["Nope/get", {"accountId": account}, "a"],
        ["Mailbox/get", {"accountId": "Anotmine"}, "b"],
        ["Mailbox/get", {}, "c"],
        ["Mailbox/get", {"accountId": account, "properties": ["nosuch"]}, "d"],
        ["Mailbox/changes", {"accountId": account, "sinceState": "garbage"}, "e"],
        ["Mailbox/set", {"accountId": account, "ifInState": "m1:old", "create": {}}, "f"],
        ["Email/queryChanges", {"accountId": account, "sinceQueryState": "garbage"}, "g"],
        ["Email/copy", {"accountId": account, "fromAccountId": "Aother", "create": {}}, "h"],
        ["Email/get", {"accountId": account, "ids": None}, "i"],
        ["Mailbox/query", {"accountId": account, "filter": {"nosuch": 1}}, "j"],
        ["Email/query", {"accountId": account, "sort": [{"property": "nosuch"}]}, "k"],
        ["Mailbox/changes", {"accountId": account, "sinceState": "m1:", "maxChanges": 0}, "l"],
    )
    kinds = {call_id: (name, result.get("type")) for name, result, call_id in responses}
    assert kinds == {
        "a": ("error", "unknownMethod"),
        "b": ("error", "accountNotFound"),
        "c": ("error", "invalidArguments"),
        "d": ("error", "invalidArguments"),
        "e": ("error", "cannotCalculateChanges"),
        "f": ("error", "stateMismatch"),
        "g": ("error", "cannotCalculateChanges"),
        "h": ("error", "fromAccountNotFound"),
        "i": ("error", "requestTooLarge"),
        "j": ("error", "unsupportedFilter"),
        "k": ("error", "unsupportedSort"),
        "l": ("error", "invalidArguments"),
    }


def test_method_of_a_capability_not_used_is_unknown(raw: Raw) -> None:
    ((name, error, _),) = raw.call(["Mailbox/get", {"accountId": raw.account}, "a"], using=(CORE,))
    assert (name, error["type"]) == ("error", "unknownMethod")


def test_other_routes(raw: Raw) -> None:
    assert raw.http("GET", "/jmap/nothing")[0] == 404
    assert raw.http("GET", "/jmap/api")[0] == 405
    assert raw.http("POST", "/jmap/session", b"")[0] == 405
