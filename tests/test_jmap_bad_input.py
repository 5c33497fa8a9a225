"""Bad input to every JMAP method: wrong types and shapes in each argument get the RFC's error
(invalidArguments, a SetError, ...), never serverFail, and the server stays up; the per-user
concurrency limit refuses the request over it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest
from conftest import PASSWORD
from jmap_support import Raw

from mailpipe.jmap.api import Concurrency
from mailpipe.jmap.errors import RequestError
from mailpipe.jmap.methods import METHODS
from mailpipe_tools.local.jmap_http import LocalHttpApi

SUBMISSION = "urn:ietf:params:jmap:submission"
CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"

# Values of the wrong type or shape for any argument.
BAD_VALUES: list[object] = [
    None,
    True,
    -1,
    2**70,
    "",
    "#nocreation",
    [None],
    [1, "a"],
    {"a": None},
    {"operator": "XOR"},
    [{"property": 5}],
]
ARGUMENTS = [
    "ids",
    "properties",
    "sinceState",
    "maxChanges",
    "filter",
    "sort",
    "position",
    "anchor",
    "anchorOffset",
    "limit",
    "calculateTotal",
    "create",
    "update",
    "destroy",
    "ifInState",
    "sinceQueryState",
    "collapseThreads",
    "bodyProperties",
    "fetchTextBodyValues",
    "fetchAllBodyValues",
    "maxBodyValueBytes",
    "blobIds",
    "emails",
    "fromAccountId",
    "onDestroyRemoveEmails",
    "upToId",
]
# Objects for /set create and update that are wrong in other ways.
BAD_OBJECTS: list[object] = [
    5,
    [],
    {"name": 5},
    {"name": "a/b"},
    {"name": "\x01"},
    {"parentId": "Mnope", "name": "x"},
    {"role": "weird", "name": "r"},
    {"mailboxIds": {}},
    {"mailboxIds": {"Mnope": True}},
    {"mailboxIds": "x"},
    {"keywords": {"bad key": True}},
    {"keywords/$seen": 5},
    {"mailboxIds/Mx": 3},
    {"from": [{"name": 1}]},
    {"from": "x"},
    {"textBody": [{"partId": "9"}]},
    {"attachments": [{"blobId": "Bnope"}]},
    {"header:X-A:asAddresses": "x"},
    {"sentAt": "yesterday"},
    {"receivedAt": 3},
    {"subject": ["x"]},
    {"bodyValues": 5, "textBody": [{"partId": "1"}]},
]


@pytest.fixture
def raw(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> Raw:
    return Raw(jmap_server.url, new_user(), PASSWORD)


def _no_server_fail(raw: Raw, calls: list[list[object]]) -> list[list[object]]:
    responses = raw.call(*calls, using=(CORE, MAIL, SUBMISSION))
    failed = [
        (call, response)
        for call, response in zip(calls, responses, strict=True)
        if response[1].get("type") == "serverFail"
    ]
    assert not failed, failed[:3]
    return responses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bad_arguments_never_fail_the_server(raw: Raw, name: str) -> None:
    account = raw.account
    calls: list[list[object]] = []
    for argument, value in itertools.product(ARGUMENTS, BAD_VALUES):
        calls.append([name, {"accountId": account, argument: value}, f"{argument}"])
        if len(calls) == 32:
            _no_server_fail(raw, calls)
            calls = []
    if calls:
        _no_server_fail(raw, calls)


@pytest.mark.parametrize("name", ["Mailbox/set", "Email/set", "Email/import"])
def test_bad_objects_get_set_errors(raw: Raw, name: str) -> None:
    account = raw.account
    key = "emails" if name == "Email/import" else "create"
    for chunk in range(0, len(BAD_OBJECTS), 10):
        objects = {str(i): o for i, o in enumerate(BAD_OBJECTS[chunk : chunk + 10])}
        responses = _no_server_fail(
            raw,
            [
                [name, {"accountId": account, key: objects}, "c"],
                [
                    name,
                    {"accountId": account, "update": {"Mnope": objects.get("0"), "Enope-1": {"keywords": 5}}},
                    "u",
                ],
            ],
        )
        created = responses[0][1]
        if created.get("type") is None:
            assert set(created["notCreated"]) == set(objects), created


def test_bad_patches_on_real_objects(raw: Raw) -> None:
    mailboxes = raw.one("Mailbox/get", {"properties": ["role"]})["list"]
    inbox = next(m["id"] for m in mailboxes if m["role"] == "inbox")
    created = raw.one(
        "Email/set",
        {
            "create": {
                "a": {
                    "mailboxIds": {inbox: True},
                    "subject": "s",
                    "bodyValues": {"1": {"value": "b"}},
                    "textBody": [{"partId": "1"}],
                }
            }
        },
    )
    email = created["created"]["a"]["id"]
    patches = [
        {},
        {"keywords": 5},
        {"keywords": {"$seen": False}},
        {"keywords/a b": True},
        {"mailboxIds": {}},
        {"mailboxIds/" + inbox: None},
        {"subject": "new"},
        {"keywords": {}, "keywords/$seen": True},
        5,
        [],
    ]
    for patch in patches:
        result = raw.one("Email/set", {"update": {email: patch}})
        assert result["notUpdated"][email]["type"] in ("invalidPatch", "invalidProperties"), (patch, result)
    mailbox_patches = [
        {"name": ""},
        {"name": 7},
        {"parentId": inbox},
        {"role": "trash"},
        {"sortOrder": 5},
        {"nothing": 1},
        {"isSubscribed": "yes"},
    ]
    for patch in mailbox_patches:
        result = raw.one("Mailbox/set", {"update": {inbox: patch}})
        assert result["notUpdated"][inbox]["type"] in ("invalidProperties", "forbidden", "invalidPatch"), (
            patch,
            result,
        )


def test_concurrency_limit_per_user() -> None:
    """maxConcurrentRequests as the dispatcher counts it: the request over the limit is refused
    while the others run, per user, and a slot is free again when its request ends."""
    concurrency = Concurrency()
    entered = [concurrency.slot("a@x.test", 2), concurrency.slot("a@x.test", 2)]
    for slot in entered:
        slot.__enter__()
    with pytest.raises(RequestError) as refused:
        concurrency.slot("a@x.test", 2).__enter__()
    assert (refused.value.kind, refused.value.status, refused.value.extra) == (
        "limit",
        429,
        {"limit": "maxConcurrentRequests"},
    )
    with concurrency.slot("b@x.test", 2):
        pass
    entered[0].__exit__(None, None, None)
    done = threading.Event()

    def run() -> None:
        with concurrency.slot("a@x.test", 2):
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert done.is_set()
