"""The gateways' container health checks (template.yaml), run as ECS runs them, against the real
listeners of the dev stack: they pass while the gateway greets, and fail when nothing greets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from test_template import SECRET_ARN, _container, _deploy, load_template

CHECKS = {
    # container: (task definition, port variable, dev stack attribute)
    "gateway": ("GatewayTaskDefinition", "MAILPIPE_SMTP_PORT", "smtp_port"),
    "access-gateway": ("AccessGatewayTaskDefinition", "MAILPIPE_IMAP_PORT", "imap_port"),
}


def _check(container: str, port: int) -> subprocess.CompletedProcess[str]:
    task, variable, _ = CHECKS[container]
    deployed = _deploy(
        load_template(), DeployGateway="true", DeployAccessGateway="true", AccessTlsSecretArn=SECRET_ARN
    )
    command = _container(deployed[task], container)["HealthCheck"]["Command"]
    assert command[:2] == ["CMD", "python"]
    # The image's `python` is this interpreter's version; the check uses the standard library only.
    env = {**os.environ, variable: str(port)}
    return subprocess.run([sys.executable, *command[2:]], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("container", sorted(CHECKS))
def test_health_check_passes_while_the_gateway_greets(stack, container: str) -> None:
    result = _check(container, getattr(stack, CHECKS[container][2]))
    assert result.returncode == 0, result.stderr


@pytest.fixture
def mute_listener() -> Iterator[int]:
    """A port that accepts connections and says something else (a wedged or foreign server)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"554 5.3.2 not now\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("container", sorted(CHECKS))
def test_health_check_fails_without_a_greeting(container: str, mute_listener: int) -> None:
    assert _check(container, mute_listener).returncode != 0
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert _check(container, port).returncode != 0
