"""`mailpipe gateway`: the ECS entry point, configured only by its environment."""

from __future__ import annotations

import imaplib
import os
import poplib
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time

from conftest import PASSWORD, wait_for_inbox

from mailpipe_gateway.tls import write_self_signed


def test_gateway_runs_from_the_environment_and_stops_on_sigterm(stack, new_user) -> None:
    bob = new_user()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        **stack.environment,
        "MAILPIPE_SMTP_HOST": "127.0.0.1",
        "MAILPIPE_SMTP_PORT": str(port),
        "MAILPIPE_HOSTNAME": "mx.example.test",
    }
    env.pop("MAILPIPE_VALIDATE_FUNCTION", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailpipe_tools.cli", "gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stdout and process.stdout.read()
            )
            time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("alice@remote.test", [bob], b"Subject: via mailpipe gateway\r\n\r\nhi\r\n")
        [stored] = wait_for_inbox(stack, bob, 1)
        assert b"by mx.example.test (mailpipe)" in stack.mail_store().read_body(stored)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert process.poll() is None and time.monotonic() < deadline, (
            process.stdout and process.stdout.read()
        )
        time.sleep(0.1)


def test_access_gateway_serves_imap_and_pop3_with_tls(stack, new_user, tmp_path) -> None:
    bob = new_user()
    stack.mail_store().ensure_mailboxes(bob)
    stack.mail_store().append(bob, "INBOX", b"Subject: stored\r\n\r\nhi\r\n")
    cert, key = write_self_signed(tmp_path, "imap.example.test")
    ports = {name: free_port() for name in ("IMAP", "IMAPS", "POP3", "POP3S")}
    env = {
        **os.environ,
        **stack.environment,
        "MAILPIPE_ACCESS_HOST": "127.0.0.1",
        **{f"MAILPIPE_{name}_PORT": str(port) for name, port in ports.items()},
        "MAILPIPE_TLS_CERT_PEM": cert.read_text(),
        "MAILPIPE_TLS_KEY_PEM": key.read_text(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mailpipe_tools.cli", "access-gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        for port in ports.values():
            wait_listening(process, port)
        plain = imaplib.IMAP4("127.0.0.1", ports["IMAP"], timeout=30)
        assert "LOGINDISABLED" in plain.capabilities, "no plaintext passwords off loopback-dev"
        plain.logout()
        imaps = imaplib.IMAP4_SSL("127.0.0.1", ports["IMAPS"], ssl_context=context, timeout=30)
        imaps.login(bob, PASSWORD)
        imaps.select("INBOX")
        assert imaps.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1] == b"Subject: stored\r\n\r\n"
        imaps.logout()
        pop3s = poplib.POP3_SSL("127.0.0.1", ports["POP3S"], context=context, timeout=30)
        pop3s.user(bob)
        pop3s.pass_(PASSWORD)
        assert pop3s.stat()[0] == 1
        pop3s.quit()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_access_gateway_refuses_to_run_without_a_certificate(stack) -> None:
    env = {k: v for k, v in {**os.environ, **stack.environment}.items() if not k.startswith("MAILPIPE_TLS")}
    result = subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", "access-gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "needs a certificate" in result.stderr
