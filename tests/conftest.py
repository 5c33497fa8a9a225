"""Shared fixtures: one real dev stack (moto server over HTTP, gateway on a socket) per test session."""

from __future__ import annotations

import imaplib
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_zone import serving
from jmap_support import serve

from mailpipe import dynamo_transactions, s3_gets, s3_puts
from mailpipe.store import MailStore
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevOptions, DevStack

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
DOMAIN = "example.test"
OTHER_DOMAIN = "other.test"
PASSWORD = "correct horse battery staple"


def require_tool(name: str) -> str:
    """The tool's path, or a skip whose reason CI treats as a failure (see .ci/run)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"missing tool: {name} (make test installs it when run as root)")
    return path


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def wait_for_gateway(stack: DevStack, owner: str, timeout: float = 60.0) -> None:
    """Until the stack's IMAP gateway has heard of every change made to the user's mailboxes
    elsewhere (a test writing through the store or JMAP): the change feed's notices come
    asynchronously, as another gateway process's would, and a client's next command sees what
    memory has heard."""
    store = stack.mail_store()
    memory = stack.imap.context.memory

    def heard() -> bool:
        want = {m.name: (m.mailbox_id, m.uidnext, m.highestmodseq) for m in store.list_mailboxes(owner)}
        held = {m.name: (m.mailbox_id, m.uidnext, m.highestmodseq) for m in memory.items.list(owner)}
        return want == held

    wait_for(heard, timeout)


class HeardIMAP(imaplib.IMAP4):
    """imaplib's client on the stack's IMAP port whose every command after login first waits for
    the gateway to hear of the user's changes made by other processes (wait_for_gateway): what a
    real client sees a moment later, without a test racing the change feed."""

    def __init__(self, stack: DevStack, user: str) -> None:
        self._stack, self._user = stack, user
        super().__init__("127.0.0.1", stack.imap_port)

    def _simple_command(self, name: str, *args: Any) -> tuple[str, list[Any]]:
        if self.state in ("AUTH", "SELECTED") and name != "LOGOUT":
            wait_for_gateway(self._stack, self._user)
        return super()._simple_command(name, *args)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # Inbound authentication looks up SPF, DKIM and DMARC: a loopback server that knows no names
    # answers (NXDOMAIN), so mail from 127.0.0.1 gets spf=none, dmarc=none and is accepted.
    with serving("") as (dns_port, _):
        yield from _stack(tmp_path_factory, f"127.0.0.1:{dns_port}")


def _stack(tmp_path_factory: pytest.TempPathFactory, resolver: str) -> Iterator[DevStack]:
    options = DevOptions(
        smtp_port=0,
        submission_port=0,
        pop3_port=0,
        imap_port=0,
        aws_port=0,
        domains=[DOMAIN, OTHER_DOMAIN],
        users=[(f"bob@{DOMAIN}", PASSWORD)],
        state_dir=tmp_path_factory.mktemp("state"),
        retry_after=1,
        redelivery_backoff="1;1",
        # Tests never use real DNS: remote mail goes to a loopback port where nothing listens
        # (a temporary failure); outbound tests bring their own servers and resolvers.
        transports=["*=smtp:[127.0.0.1]:1"],
        resolver=resolver,
    )
    dev = DevStack(options)
    dev.start()
    yield dev
    dev.stop()


@pytest.fixture(scope="session")
def moto_here() -> Iterator[object]:
    """A moto server in the tests' process (the dev stack's runs in a child), so a test can reach
    into its backend or shrink its bounds. One for the session: waitress's stop of one server
    in a process can leave a later one's trigger descriptor closed."""
    from mailpipe_tools.local.moto_server import MotoServer

    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_dynamodb(moto_here: Any) -> tuple[Any, Any]:
    """DynamoDB and DynamoDB Streams clients on the tests' own moto server."""
    import boto3

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return (
        session.client("dynamodb", endpoint_url=moto_here.endpoint),
        session.client("dynamodbstreams", endpoint_url=moto_here.endpoint),
    )


def keyed_table(client: Any, prefix: str, stream: bool = True) -> dict[str, Any]:
    """A table keyed like the mailbox table (pk, sk strings), with a stream of both images unless
    `stream` is False; its description. The caller deletes it."""
    extra: dict[str, Any] = (
        {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
        if stream
        else {}
    )
    return client.create_table(
        TableName=f"{prefix}-{secrets.token_hex(4)}",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )["TableDescription"]


@pytest.fixture
def scratch_bucket(stack: DevStack) -> Iterator[tuple[Any, str]]:
    """An S3 client on the dev stack's moto and a bucket of the test's own, emptied and deleted after."""
    from mailpipe import aws

    s3 = aws.client("s3")
    name = f"scratch-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    yield s3, name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=entry["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def new_user(stack: DevStack) -> Callable[..., str]:
    """Makes a user of its own for a test, so tests never see each other's mail."""

    def make(domain: str = DOMAIN) -> str:
        address = f"user-{secrets.token_hex(4)}@{domain}"
        stack.directory().add_user(address, PASSWORD)
        return address

    return make


@pytest.fixture
def owner(stack: DevStack, new_user: Callable[..., str]) -> str:
    """A user of the test's own, with its default mailboxes, for tests of the mail store."""
    address = new_user()
    stack.mail_store().ensure_mailboxes(address)
    return address


@pytest.fixture
def user(new_user: Callable[..., str]) -> str:
    """A user of the test's own with no mailboxes yet: JMAP and IMAP make the default ones at
    first use. (Modules whose tests need them made first define their own `user`.)"""
    return new_user()


@pytest.fixture
def imap(stack: DevStack, user: str) -> Iterator[imaplib.IMAP4]:
    """`user` logged in over IMAP, waiting at each command for the gateway to hear of other
    processes' writes (JMAP's) through the change feed (HeardIMAP)."""
    connection = HeardIMAP(stack, user)
    connection.login(user, PASSWORD)
    yield connection
    connection.logout()


@pytest.fixture(scope="module")
def jmap_server(stack: DevStack) -> Iterator[LocalHttpApi]:
    """The stack's JMAP function behind a local HTTP server, as API Gateway would feed it."""
    api = serve(stack)
    yield api
    api.stop()


@pytest.fixture
def store(stack: DevStack) -> MailStore:
    """The dev stack's mail store, as a process of its own (its own writers; see store/writers.py)."""
    return stack.mail_store()


# Threads of the dev stack's pollers and schedules (local/stream_source.py, event_source.py,
# schedules.py), the local JMAP server and the state saver.
LOCAL_FUNCTION_THREADS = ("stream-", "poller-", "schedule-", "jmap-http", "state-saver")


@pytest.fixture
def gateway_requests(stack) -> Iterator[Counter[str]]:
    """Every AWS request the IMAP gateway's store and directory make, by service and operation
    (counted on the gateway's own clients, so the stack's other work does not show)."""
    context = stack.imap.context
    clients = {
        id(client): client
        for client in (context.store._client, context.store._s3, context.directory._table.meta.client)
    }
    counted: Counter[str] = Counter()
    # Bodies an earlier test's EXPUNGE left to delete in the background go now, not in this count.
    context.store.finish_body_deletes()
    lean = threading.local()  # a lean GET or PUT sent through botocore after all is counted once

    def count(event_name: str, **_kwargs: object) -> None:
        # The clients are the process's shared ones: the stack's local functions (the change
        # feed's relay looking up JMAP push connections, pruning, inbound) use them too, from
        # their own threads. What they ask is not the gateway's.
        if threading.current_thread().name.startswith(LOCAL_FUNCTION_THREADS):
            return
        if not getattr(lean, "active", False):
            counted[event_name.removeprefix("before-call.")] += 1

    def lean_counter(operation: str) -> Callable[[str, object, str], None]:
        def count_lean(event: str, client: object, key: str) -> None:
            # Whole bodies are read and stored without botocore (mailpipe.s3_gets, s3_puts):
            # counted as botocore would.
            local = threading.current_thread().name.startswith(LOCAL_FUNCTION_THREADS)
            if client is context.store._s3 and not local:
                lean.active = event == "start"
                counted[operation] += event == "start"

        return count_lean

    count_gets, count_puts = lean_counter("s3.GetObject"), lean_counter("s3.PutObject")

    def count_transaction(event: str, client: object) -> None:
        # The store's transactions are sent without botocore (mailpipe.dynamo_transactions).
        local = threading.current_thread().name.startswith(LOCAL_FUNCTION_THREADS)
        if client is context.store._client and not local:
            lean.active = event == "start"
            counted["dynamodb.TransactWriteItems"] += event == "start"

    for client in clients.values():
        client.meta.events.register("before-call", count)
    s3_gets.observers.append(count_gets)
    s3_puts.observers.append(count_puts)
    dynamo_transactions.observers.append(count_transaction)
    try:
        yield counted
    finally:
        for client in clients.values():
            client.meta.events.unregister("before-call", count)
        s3_gets.observers.remove(count_gets)
        s3_puts.observers.remove(count_puts)
        dynamo_transactions.observers.remove(count_transaction)


def inbox(stack: DevStack, owner: str) -> list:
    store = stack.mail_store()
    if store.get_mailbox(owner, "INBOX") is None:
        return []
    return store.list_messages(owner, "INBOX")[1]


def wait_for_inbox(stack: DevStack, owner: str, count: int, timeout: float = 30.0) -> list:
    wait_for(lambda: len(inbox(stack, owner)) >= count, timeout)
    return inbox(stack, owner)
