"""`mailpipe dev` keeps its state across restarts (unless --ephemeral), with the bodies on disk."""

from __future__ import annotations

import imaplib
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from conftest import wait_for
from dev_process import DevProcess
from dns_zone import serving

from mailpipe.spool import Envelope, EnvelopeRecipient, new_queue_id, now_utc, spool_key

BOB = ("bob@example.test", "bob-password")


@pytest.fixture
def resolver() -> Iterator[str]:
    with serving("") as (port, _zone):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def dev(tmp_path: Path, resolver: str) -> Iterator[DevProcess]:
    process = DevProcess(tmp_path, resolver)
    yield process
    process.kill()


def send(port: int, subject: str, body: bytes = b"hello\r\n") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail("alice@remote.test", [BOB[0]], b"Subject: " + subject.encode() + b"\r\n\r\n" + body)


def imap(dev: DevProcess, user: tuple[str, str] = BOB) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", dev.ports["imap"], timeout=60)
    client.login(*user)
    return client


def inbox(dev: DevProcess) -> tuple[str, dict[int, bytes]]:
    """INBOX's UIDVALIDITY and each UID's message, as IMAP gives them."""
    client = imap(dev)
    client.select("INBOX")
    uidvalidity = client.response("UIDVALIDITY")[1][0].decode()
    _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    messages = {}
    for part in data:
        if isinstance(part, tuple):
            uid = int(re.search(rb"UID (\d+)", part[0]).group(1))
            messages[uid] = part[1]
    client.logout()
    return uidvalidity, messages


def aws(dev: DevProcess, service: str):
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{dev.ports['aws']}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def queue_envelope(dev: DevProcess, env: dict[str, str], subject: str, hold_seconds: int) -> None:
    """An envelope the gateway could have queued, held back on the inbound queue for a while (the
    stack's pollers would otherwise take it before the stop)."""
    queue_id = new_queue_id()
    raw = f"Subject: {subject}\r\n\r\nqueued at stop\r\n".encode()
    envelope = Envelope(
        queue_id,
        "alice@remote.test",
        (EnvelopeRecipient(BOB[0]),),
        spool_key(queue_id, now_utc()),
        len(raw),
        now_utc().isoformat(),
    )
    aws(dev, "s3").put_object(Bucket=env["MAILPIPE_MAIL_BUCKET"], Key=envelope.s3_key, Body=raw)
    aws(dev, "sqs").send_message(
        QueueUrl=env["MAILPIPE_INBOUND_QUEUE_URL"], MessageBody=envelope.to_json(), DelaySeconds=hold_seconds
    )


def add_user(env: dict[str, str], address: str, password: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailpipe_tools.cli", "user", "add", address, "--password-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mail_users_mailboxes_and_queued_envelopes_survive_a_restart(dev: DevProcess, tmp_path: Path) -> None:
    state = tmp_path / ".mailpipe"
    banner = dev.start()
    assert f"state     {state.name}/  (started empty" in banner
    env = dev.cli_env(state)
    send(dev.ports["smtp"], "kept", body=b"line one\r\n\tbinary-ish \xc3\xa9\r\n.dot\r\n")
    wait_for(lambda: len(inbox(dev)[1]) == 1, timeout=60)
    add_user(env, "carol@example.test", "carol-password")
    client = imap(dev)
    assert client.create("Projects")[0] == "OK"
    client.logout()
    before = inbox(dev)
    queue_envelope(dev, env, "queued at stop", hold_seconds=20)
    dev.stop()

    banner = dev.start()
    assert "queued; saved across restarts" in banner and "1 queued" in banner, banner
    assert f"user      {BOB[0]}  (kept from the last run" in banner
    uidvalidity, messages = inbox(dev)
    assert (uidvalidity, messages[1]) == (before[0], before[1][1])  # byte-exact, same UID and UIDVALIDITY
    client = imap(dev)
    assert any(b'"Projects"' in line or b" Projects" in line for line in client.list()[1])
    client.logout()
    imap(dev, ("carol@example.test", "carol-password")).logout()
    # The envelope queued at the stop is delivered once its hold is over, after the UIDs kept.
    wait_for(lambda: len(inbox(dev)[1]) == 2, timeout=90)
    assert b"queued at stop" in inbox(dev)[1][2]
    dev.stop()


def test_ephemeral_starts_empty_and_leaves_nothing(dev: DevProcess, tmp_path: Path) -> None:
    dev.start()
    send(dev.ports["smtp"], "persisted")
    wait_for(lambda: len(inbox(dev)[1]) == 1, timeout=60)
    dev.stop()

    banner = dev.start("--ephemeral")
    where = Path(re.search(r"state     (\S+)  \(ephemeral", banner).group(1))
    assert where.is_dir() and not where.is_relative_to(tmp_path)
    assert inbox(dev)[1] == {}
    send(dev.ports["smtp"], "thrown away")
    wait_for(lambda: len(inbox(dev)[1]) == 1, timeout=60)
    dev.stop()
    assert not where.exists()

    dev.start()  # the kept state is untouched by the throwaway run
    assert [b"persisted" in message for message in inbox(dev)[1].values()] == [True]
    dev.stop()


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()]


def rss_bytes(pid: int) -> int:
    """Of the stack and its processes (moto runs in a child of its own)."""
    status = Path(f"/proc/{pid}/status").read_text()
    own = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
    return own + sum(rss_bytes(child) for child in children(pid))


def test_memory_does_not_grow_with_the_bodies_held(dev: DevProcess, tmp_path: Path) -> None:
    dev.start()
    env = dev.cli_env(tmp_path / ".mailpipe")
    s3 = aws(dev, "s3")
    body = bytes(range(256)) * 800  # 200 kB
    for n in range(100):  # the first requests' allocations (buffers, connections) are not the bodies'
        s3.put_object(Bucket=env["MAILPIPE_MAIL_BUCKET"], Key=f"warm-up/{n}", Body=body)
    before = rss_bytes(dev.pid)
    count = 400  # 80 MB of bodies
    for n in range(count):
        s3.put_object(Bucket=env["MAILPIPE_MAIL_BUCKET"], Key=f"mail/{n}", Body=body)
    growth = rss_bytes(dev.pid) - before
    # moto's own storage keeps each body in memory (~210 kB of RSS each); on disk, what an object
    # costs is its metadata (~5 kB measured).
    assert growth < count * len(body) / 4, f"{growth / count:.0f} bytes of RSS per 200 kB body"
    assert s3.get_object(Bucket=env["MAILPIPE_MAIL_BUCKET"], Key="mail/7")["Body"].read() == body
    dev.stop()


def test_a_second_stack_on_the_same_state_dir_is_refused_until_the_first_is_gone(
    dev: DevProcess, tmp_path: Path, resolver: str
) -> None:
    dev.start()
    send(dev.ports["smtp"], "before the crash")
    wait_for(lambda: len(inbox(dev)[1]) == 1, timeout=60)
    second = DevProcess(tmp_path, resolver)
    code, output = second.run_to_end()
    assert code == 1 and "Traceback" not in output, output
    assert f"another mailpipe dev (PID {dev.pid}) is running on .mailpipe/" in output
    assert "--state-dir DIR" in output and "--ephemeral" in output
    # A kill -9 loses at most what changed since the last save (every 2 s), and leaves its lock stale.
    state = tmp_path / ".mailpipe" / "state.json"
    wait_for(lambda: state.exists() and "uid#0000000001" in state.read_text(), timeout=30)  # saved
    dev.kill()
    try:
        assert "(kept " in second.start()
        assert [b"before the crash" in m for m in inbox(second)[1].values()] == [True]
        second.stop()
    finally:
        second.kill()


def test_a_port_in_use_is_named_with_its_flag(dev: DevProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = dev.run_to_end("--imap-port", str(port))
        assert code == 1, output
        assert output.strip().splitlines()[-1] == (
            f"mailpipe: port {port} (imap) is in use: choose another with --imap-port PORT"
        )
        assert "Traceback" not in output


def test_moto_stops_with_the_stack_and_a_crash_of_it_is_reported(dev: DevProcess, tmp_path: Path) -> None:
    dev.start()
    (moto,) = children(dev.pid)
    assert "mailpipe_tools.local.moto_server" in Path(f"/proc/{moto}/cmdline").read_text()
    dev.stop()
    assert not Path(f"/proc/{moto}").exists()  # waited for by the stack, so no zombie either

    dev.start()
    (moto,) = children(dev.pid)
    os.kill(moto, signal.SIGKILL)
    assert dev.process is not None
    assert dev.process.wait(timeout=60) == 1
    output = dev.process.stdout.read()
    # (The pollers may log a failed receive or two before the stack stops: AWS is gone.)
    assert f"moto (PID {moto}), the dev stack's AWS, exited with code -9" in output, output
    assert output.strip().splitlines()[-1] == (
        "mailpipe: moto, the stack's AWS, exited unexpectedly (see above); the saved state is kept"
    )
    dev.process = None


def test_bodies_no_object_points_to_are_removed_at_start(dev: DevProcess, tmp_path: Path) -> None:
    # What a kill -9 leaves when it comes after a body was written and before the state was saved.
    bodies = tmp_path / ".mailpipe" / "s3"
    bodies.mkdir(parents=True)
    (bodies / "stray").write_bytes(b"a body whose object was never saved")
    dev.start()
    assert not (bodies / "stray").exists()
    dev.stop()


def test_the_state_file_is_the_json_of_the_state_written_an_entry_at_a_time(tmp_path: Path) -> None:
    from mailpipe_tools.local import snapshot

    state = {
        "format": snapshot.FORMAT,
        "dynamodb": {
            "mailbox-table": [
                {"pk": {"S": 'ü€ "quoted" \\ \n'}, "header": {"B": b"\x00\xff binary"}, "n": {"N": "3"}},
                {"pk": {"S": "b"}, "summary": {"M": {"to": {"L": [{"S": "x"}]}}}},
            ],
            "empty-table": [],
        },
        "sqs": {"queue": [{"body": "m", "attributes": {}, "hidden_until": 1.5, "sent": None}]},
        "s3": {},
    }
    path = tmp_path / "state.json"
    snapshot.write(state, path)
    assert path.read_text() == json.dumps(state, separators=(",", ":"), default=snapshot._base64)
    assert json.loads(path.read_text())["dynamodb"]["mailbox-table"][0]["header"]["B"] == "AP8gYmluYXJ5"
