"""`python -m mailpipe_gateway smtp|access`: the container's entry point, configured only by its environment.

Run here as in the image (gateway/Dockerfile): with only the core and the gateway packages on
the path and the dev stack's packages (moto, PyYAML, mailpipe_tools) unimportable.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import tomllib

from conftest import PASSWORD, REPO_ROOT, wait_for_inbox
from ports import free_port

from mailpipe import aws
from mailpipe.changes.feed import NAME_PREFIX
from mailpipe_gateway.tls import write_self_signed

# What the image does not hold: the dev stack, the `mailpipe` command, and their dependencies.
NOT_IN_THE_IMAGE = ("mailpipe_tools", "yaml", "moto", "waitress", "werkzeug", "flask")
IMAGE_PACKAGES = {"mailpipe": REPO_ROOT / "layers" / "core", "mailpipe_gateway": REPO_ROOT / "gateway"}

# Run before the gateway: the packages the image lacks fail to import, and the image's two packages
# must come from this checkout, not from whatever the environment installed.
AS_IN_THE_IMAGE = f"""
import importlib.abc, runpy, sys

class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_THE_IMAGE!r}:
            raise ImportError(f"{{name}} is not in the gateway image")
        return None

sys.meta_path.insert(0, NotInTheImage())
sys.argv[0] = "mailpipe_gateway"
runpy.run_module("mailpipe_gateway", run_name="__main__", alter_sys=True)
"""


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-c", AS_IN_THE_IMAGE, *args]


def image_environment(*settings: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for more in settings:
        env.update(more)
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in IMAGE_PACKAGES.values())
    return env


def test_every_gateway_module_imports_without_the_dev_stack() -> None:
    script = AS_IN_THE_IMAGE.replace(
        'runpy.run_module("mailpipe_gateway", run_name="__main__", alter_sys=True)',
        """import pkgutil, mailpipe, mailpipe_gateway
for package in (mailpipe, mailpipe_gateway):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        __import__(module.name)
for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] in ("mailpipe", "mailpipe_gateway"):
        print(name, getattr(module, "__file__", None))
""",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=image_environment(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert "mailpipe_gateway.smtp.handler" in loaded and "mailpipe.store.mailstore" in loaded
    for name, path in loaded.items():
        root = IMAGE_PACKAGES[name.split(".")[0]]
        assert path == "None" or path.startswith(str(root)), f"{name} loaded from {path}, not {root}"


def test_the_image_requirements_leave_out_the_dev_stack() -> None:
    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=~! ]", line.strip(), maxsplit=1)[0].lower() for line in requirements}

    def requirements_file(path) -> list[str]:
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return [line for line in lines if line and not line.startswith("-r ")]

    core = names(requirements_file(REPO_ROOT / "layers" / "core" / "requirements.txt"))
    image = core | names(requirements_file(REPO_ROOT / "gateway" / "requirements.txt"))
    assert "-r ../layers/core/requirements.txt" in (REPO_ROOT / "gateway" / "requirements.txt").read_text()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    # pyproject.toml's runtime dependencies are exactly the image's; the dev stack's are extras.
    assert names(project["dependencies"]) == image
    assert not image & {"pyyaml", "moto", "waitress"}
    assert {"pyyaml", "moto", "waitress"} <= names(project["optional-dependencies"]["local"])


def test_gateway_runs_from_the_environment_and_stops_on_sigterm(stack, new_user) -> None:
    bob = new_user()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = image_environment(
        stack.environment,
        {
            "MAILPIPE_SMTP_HOST": "127.0.0.1",
            "MAILPIPE_SMTP_PORT": str(port),
            "MAILPIPE_HOSTNAME": "mx.example.test",
        },
    )
    # No validation function to invoke: the gateway checks recipients with the core's check.
    env.pop("MAILPIPE_VALIDATE_FUNCTION", None)
    process = subprocess.Popen(
        gateway_command("smtp"),
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
    env = image_environment(
        stack.environment,
        {f"MAILPIPE_{name}_PORT": str(port) for name, port in ports.items()},
        {
            "MAILPIPE_ACCESS_HOST": "127.0.0.1",
            "MAILPIPE_TLS_CERT_PEM": cert.read_text(),
            "MAILPIPE_TLS_KEY_PEM": key.read_text(),
        },
    )
    sqs = aws.client("sqs")

    def change_queues() -> set[str]:
        return set(sqs.list_queues(QueueNamePrefix=NAME_PREFIX).get("QueueUrls", []))

    before = change_queues()
    assert env["MAILPIPE_CHANGES_TOPIC_ARN"]
    process = subprocess.Popen(
        gateway_command("access"),
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
        # Its change feed: a queue of its own while it runs, gone when it has drained.
        assert len(change_queues() - before) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert change_queues() - before == set()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_access_gateway_refuses_to_run_without_a_certificate(stack) -> None:
    env = image_environment(stack.environment)
    env = {name: value for name, value in env.items() if not name.startswith("MAILPIPE_TLS")}
    result = subprocess.run(
        gateway_command("access"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "needs a certificate" in result.stderr
