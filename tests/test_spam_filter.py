"""The spam filter at the end of DATA against Debian's rspamd on loopback (tests/rspamd.py)."""

from __future__ import annotations

import smtplib
import socket
import threading

import pytest
from conftest import PASSWORD, wait_for
from rspamd import GTUBE_REJECT, Rspamd, free_port, rspamd_fixture  # noqa: F401 (the fixture "rspamd")

from mailpipe_gateway.smtp.rspamd_client import RspamdClient, RspamdUnavailable, http_body, parse_result
from mailpipe_gateway.smtp.settings import GatewaySettings
from mailpipe_gateway.smtp.spam_filter import verdict

CLEAN = (
    b"From: Alice <alice@remote.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: lunch\r\n"
    b"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <lunch-1@remote.test>\r\n"
    b"\r\n"
    b"Shall we meet at noon?\r\n"
)


def with_body_line(message: bytes, line: str) -> bytes:
    return message + line.encode() + b"\r\n"


def with_header(message: bytes, header: str) -> bytes:
    return header.encode() + b"\r\n" + message


@pytest.fixture(scope="module")
def filtered(stack, rspamd: Rspamd):
    """Port 25 with the filter on (and SPF/DKIM/DMARC off: their header is test_inbound_auth's)."""
    gateway = stack.build_gateway(stack.spool(), rspamd_url=rspamd.url, authenticate_inbound=False)
    stack.loop.run(gateway.start())
    yield gateway
    stack.loop.run(gateway.stop())


@pytest.fixture(scope="module")
def filtered_submission(stack, rspamd: Rspamd):
    gateway = stack.build_submission(stack.spool(), rspamd_url=rspamd.url)
    stack.loop.run(gateway.start())
    yield gateway
    stack.loop.run(gateway.stop())


def send(port: int, rcpt: str, message: bytes, login: str | None = None) -> tuple[int, bytes]:
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        client.ehlo("client.remote.test")
        if login:
            client.login(login, PASSWORD)
        code, text = client.mail(login or "alice@remote.test")
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        return client.data(message)
    finally:
        client.quit()


def mailbox(stack, owner: str, name: str) -> list:
    store = stack.mail_store()
    if store.get_mailbox(owner, name) is None:
        return []
    return store.list_messages(owner, name)[1]


def delivered(stack, owner: str, name: str) -> list[bytes]:
    """The bodies in `name` once one has arrived there."""
    wait_for(lambda: mailbox(stack, owner, name), 30)
    return [stack.mail_store().read_body(m) for m in mailbox(stack, owner, name)]


def test_gtube_is_rejected(stack, new_user, filtered) -> None:
    bob = new_user()
    code, text = send(filtered.port, bob, with_body_line(CLEAN, GTUBE_REJECT))
    assert code == 550
    assert text.startswith(b"5.7.1 ")
    assert b"Gtube" in text, "rspamd's own message is passed on"
    # The refused message was never spooled: the next one is the only one that arrives.
    assert send(filtered.port, bob, CLEAN)[0] == 250
    [body] = delivered(stack, bob, "INBOX")
    assert body.endswith(CLEAN)


def test_a_clean_message_passes_untouched(stack, new_user, filtered) -> None:
    bob = new_user()
    code, text = send(filtered.port, bob, CLEAN)
    assert (code, text[:6]) == (250, b"2.0.0 ")
    [body] = delivered(stack, bob, "INBOX")
    received, _, rest = body.partition(b"\r\n\tby ")
    assert received.startswith(b"Received: from client.remote.test")
    assert rest.split(b"\r\n", 2)[2] == CLEAN, "only our Received header is added"
    assert b"X-Spam" not in body and b"X-Mailpipe-Spam-Check" not in body
    assert mailbox(stack, bob, "Junk") == []


def test_add_header_lands_in_junk_with_the_spam_headers(stack, new_user, filtered) -> None:
    bob = new_user()
    message = with_header(CLEAN, "X-Test-Action: add header")
    assert send(filtered.port, bob, message)[0] == 250
    [body] = delivered(stack, bob, "Junk")
    assert mailbox(stack, bob, "INBOX") == []
    assert body.endswith(message), "the message itself is kept byte for byte"
    added = body[: -len(message)]
    assert added.startswith(b"Received: "), "our trace header stays on top"
    assert b"\r\nX-Spam: Yes\r\n" in added
    assert b"\r\nX-Spam-Score: " in added
    result = added[added.index(b"X-Spamd-Result: ") :]
    assert result.startswith(b"X-Spamd-Result: default: True [")
    assert b"MAILPIPE_TEST_ACTION(1.00)[add header]" in result
    assert b"Subject: lunch\r\n" in body, "rewrite subject is not applied: the subject stays"


def test_rewrite_subject_also_goes_to_junk(stack, new_user, filtered) -> None:
    bob = new_user()
    message = with_header(CLEAN, "X-Test-Action: rewrite subject")
    assert send(filtered.port, bob, message)[0] == 250
    [body] = delivered(stack, bob, "Junk")
    assert body.endswith(message)
    assert b"\r\nX-Spam: Yes\r\n" in body


def test_soft_reject_is_a_temporary_failure_with_rspamds_message(stack, new_user, filtered) -> None:
    bob = new_user()
    message = with_header(
        with_header(CLEAN, "X-Test-Message: Rate limit exceeded"), "X-Test-Action: soft reject"
    )
    code, text = send(filtered.port, bob, message)
    assert (code, text) == (451, b"4.7.1 Rate limit exceeded")


def test_reject_without_a_message_gets_ours(stack, new_user, filtered) -> None:
    bob = new_user()
    code, text = send(filtered.port, bob, with_header(CLEAN, "X-Test-Action: reject"))
    assert (code, text) == (550, b"5.7.1 test action")


def test_greylist_is_accepted(stack, new_user, filtered) -> None:
    """A bare greylist action (no greylist module answering soft reject) is delivered, as rspamd's
    milter does: nothing would ever let a deferred message through."""
    bob = new_user()
    message = with_header(CLEAN, "X-Test-Action: greylist")
    assert send(filtered.port, bob, message)[0] == 250
    [body] = delivered(stack, bob, "INBOX")
    assert body.endswith(message)
    assert b"X-Spam" not in body


def test_rspamd_down_means_accepted_and_marked_not_scanned(stack, new_user, caplog) -> None:
    bob = new_user()
    gateway = stack.build_gateway(stack.spool(), rspamd_url=f"http://127.0.0.1:{free_port()}")
    stack.loop.run(gateway.start())
    try:
        with caplog.at_level("WARNING", logger="mailpipe_gateway.smtp.spam_filter"):
            code, _ = send(gateway.port, bob, with_body_line(CLEAN, GTUBE_REJECT))
    finally:
        stack.loop.run(gateway.stop())
    assert code == 250, "never lose mail because the filter is down"
    [body] = delivered(stack, bob, "INBOX")
    assert b"\r\nX-Mailpipe-Spam-Check: not scanned; rspamd unavailable\r\n" in body
    assert any("not scanned" in r.getMessage() and "Connect" in r.getMessage() for r in caplog.records)


def test_rspamd_too_slow_means_accepted_and_marked_not_scanned(stack, new_user, caplog) -> None:
    """A listener that takes the request and never answers: the bounded timeout lets the mail in."""
    bob = new_user()
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    gateway = stack.build_gateway(stack.spool(), rspamd_url=url, rspamd_timeout=0.5)
    stack.loop.run(gateway.start())
    try:
        with caplog.at_level("WARNING", logger="mailpipe_gateway.smtp.spam_filter"):
            code, _ = send(gateway.port, bob, CLEAN)
    finally:
        stack.loop.run(gateway.stop())
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        silent.close()
    assert code == 250
    [body] = delivered(stack, bob, "INBOX")
    assert b"X-Mailpipe-Spam-Check: not scanned" in body
    assert any("no answer within 0.5s" in r.getMessage() for r in caplog.records)


def test_submission_is_scanned_and_spam_refused(stack, new_user, filtered_submission) -> None:
    alice, bob = new_user(), new_user()
    message = with_body_line(CLEAN.replace(b"alice@remote.test", alice.encode()), GTUBE_REJECT)
    code, text = send(filtered_submission.port, bob, message, login=alice)
    assert (code, text[:6]) == (550, b"5.7.1 ")


def test_submission_add_header_gets_no_spam_headers(stack, new_user, filtered_submission) -> None:
    """A user's own borderline mail goes out as it was written (and not to a colleague's Junk)."""
    alice, bob = new_user(), new_user()
    message = with_header(CLEAN.replace(b"alice@remote.test", alice.encode()), "X-Test-Action: add header")
    assert send(filtered_submission.port, bob, message, login=alice)[0] == 250
    [body] = delivered(stack, bob, "INBOX")
    assert body.endswith(message)
    assert b"X-Spam" not in body


def test_rspamd_is_given_the_envelope(new_user, filtered) -> None:
    bob, carol = new_user(), new_user()
    client = smtplib.SMTP("127.0.0.1", filtered.port, timeout=60)
    client.ehlo("client.remote.test")
    client.mail("alice@remote.test")
    client.rcpt(bob)
    client.rcpt(carol)
    code, text = client.data(with_header(CLEAN, "X-Test-Echo: 1"))
    client.quit()
    assert code == 550
    echoed = dict(item.split("=", 1) for item in text.decode().split(" ", 1)[1].split(" "))
    assert echoed["ip"] == "127.0.0.1"
    assert echoed["helo"] == "client.remote.test"
    assert echoed["from"] == "alice@remote.test"
    assert echoed["rcpt"] == f"{bob},{carol}"
    assert echoed["user"] == "nil", "port 25 has no authenticated user"
    assert len(echoed["qid"]) == 28, "our queue id, as in the Received header and the logs"


def test_submission_tells_rspamd_the_user(new_user, filtered_submission) -> None:
    alice, bob = new_user(), new_user()
    message = with_header(CLEAN.replace(b"alice@remote.test", alice.encode()), "X-Test-Echo: 1")
    code, text = send(filtered_submission.port, bob, message, login=alice)
    assert code == 550
    assert f"user={alice} ".encode() in text


def test_submission_with_rspamd_down_is_accepted_without_our_header(stack, new_user) -> None:
    alice, bob = new_user(), new_user()
    gateway = stack.build_submission(stack.spool(), rspamd_url=f"http://127.0.0.1:{free_port()}")
    stack.loop.run(gateway.start())
    try:
        message = CLEAN.replace(b"alice@remote.test", alice.encode())
        assert send(gateway.port, bob, message, login=alice)[0] == 250
    finally:
        stack.loop.run(gateway.stop())
    [body] = delivered(stack, bob, "INBOX")
    assert body.endswith(message)
    assert b"X-Mailpipe-Spam-Check" not in body, "a user's mail says nothing about our filter's health"


# -- the client's parsing, on answers rspamd does not give on request -----------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
        b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{"action": false}',
        b'HTTP/1.1 200 OK\r\n\r\n{"action": "reject", "score": "high"}',
        b'HTTP/1.1 200 OK\r\n\r\n{"action": "reject", "symbols": {"A": {"score": "x"}}}',
        b'HTTP/1.1 200 OK\r\n\r\n{"action": "reject", "symbols": ["A"]}',
        b'HTTP/1.1 200 OK\r\n\r\n{"action": "reject", "messages": "no"}',
        b'HTTP/1.1 200 OK\r\n\r\n{"action": "reject", "symbols": {"A": {"options": "x"}}}',
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}",
    ],
)
def test_broken_answers_count_as_unavailable(answer: bytes) -> None:
    with pytest.raises(RspamdUnavailable):
        parse_result(http_body(answer))


def test_a_chunked_answer_is_read() -> None:
    body = b'{"action":"reject","score":20,"required_score":15,"messages":{"smtp_message":"550 5.7.1 No"}}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    result = parse_result(http_body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked))
    assert verdict(result, authenticated=False).reply == "550 5.7.1 No"


def test_hostile_symbol_options_cannot_break_the_header() -> None:
    body = (
        b'{"action":"add header","score":7,"required_score":15,'
        b'"symbols":{"X\\r\\nBcc: evil":{"score":1,"options":["a\\r\\nX-Injected: 1","[];,"]}}}'
    )
    headers = verdict(parse_result(body), authenticated=False).headers
    lines = headers.split(b"\r\n")
    assert all(line.startswith((b"X-Spam", b"\t")) or line == b"" for line in lines), headers
    assert b"\r\nX-Injected" not in headers and b"\r\nBcc" not in headers


def test_settings_from_the_environment() -> None:
    assert GatewaySettings.from_env({}).rspamd_url is None, "off unless configured"
    settings = GatewaySettings.from_env(
        {"MAILPIPE_RSPAMD_URL": "http://127.0.0.1:11333", "MAILPIPE_RSPAMD_TIMEOUT": "3"}
    )
    assert (settings.rspamd_url, settings.rspamd_timeout) == ("http://127.0.0.1:11333", 3.0)
    with pytest.raises(ValueError, match="rspamd URL"):
        RspamdClient("127.0.0.1:11333")


def test_with_authentication_on_rspamd_scans_the_authenticated_message(stack, new_user, rspamd) -> None:
    """Both checks at the end of DATA: our Authentication-Results goes in first, then rspamd's
    headers; either verdict may send the message to Junk, and a reject from rspamd still refuses."""
    gateway = stack.build_gateway(stack.spool(), rspamd_url=rspamd.url)
    stack.loop.run(gateway.start())
    try:
        bob = new_user()
        assert send(gateway.port, bob, with_body_line(CLEAN, GTUBE_REJECT))[0] == 550
        message = with_header(CLEAN, "X-Test-Action: add header")
        assert send(gateway.port, bob, message)[0] == 250
        [body] = delivered(stack, bob, "Junk")
        added = body[: -len(message)]
        assert added.index(b"\r\nX-Spam: Yes\r\n") < added.index(b"\r\nAuthentication-Results: ")
        assert b"dmarc=none" in added  # client.remote.test publishes nothing (the empty test zone)
    finally:
        stack.loop.run(gateway.stop())
