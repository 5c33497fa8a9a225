"""`mailpipe gateway`: the ECS entry point, configured only by its environment."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

from conftest import wait_for_inbox


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
        [sys.executable, "-m", "mailpipe_gateway.cli", "gateway"],
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
