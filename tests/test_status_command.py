"""`mailpipe status` against the dev stack: its listeners, queues of its own making, its directory."""

from __future__ import annotations

import json
import secrets

from ports import free_port
from test_cli import mailpipe

from mailpipe import aws


def _closed_port() -> int:
    # Not one the system hands out (ports.py): no other process starts listening on it meanwhile.
    return free_port()


def _queue(sqs, name: str, dead_letters: str | None = None) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    if dead_letters:
        arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"]
        policy = {"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 5}
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})
    return url


def test_status_reports_listeners_queues_and_directory(stack) -> None:
    closed = _closed_port()
    ports = [
        f"smtp={stack.smtp_port}",
        f"submission={stack.submission_port}",
        f"imap={stack.imap_port}",
        f"pop3={stack.pop3_port}",
        f"imap={closed}",
    ]
    # Queues of the test's own, named as the dev stack names its own: the stack's queues are shared.
    sqs, prefix = aws.client("sqs"), f"status-{secrets.token_hex(3)}"
    inbound = _queue(sqs, f"{prefix}-inbound-queue", _queue(sqs, f"{prefix}-inbound-dead-letter-queue"))
    for n in range(3):
        sqs.send_message(QueueUrl=inbound, MessageBody=f"m{n}")
    outbound = _queue(sqs, f"{prefix}-outbound-queue")
    ses_dlq = _queue(sqs, f"{prefix}-ses-event-dead-letter-queue")
    _queue(sqs, f"{prefix}-ses-event-queue", ses_dlq)
    sqs.send_message(QueueUrl=ses_dlq, MessageBody="an event no one could apply")
    env = {
        **stack.environment,
        "MAILPIPE_INBOUND_QUEUE_URL": inbound,
        "MAILPIPE_OUTBOUND_QUEUE_URL": outbound,
    }
    directory = stack.directory()
    users = directory.list_users()

    result = _run(env, "status", *[arg for port in ports for arg in ("--port", port)])
    assert result.returncode == 1  # a dead letter
    assert result.stderr == "mailpipe: 1 dead-lettered messages (see `mailpipe queue redrive`)\n"
    lines = result.stdout.splitlines()
    assert lines[0] == "listeners on 127.0.0.1: 4 of 5 ports answer"
    assert lines[1].split()[:3] == ["smtp", str(stack.smtp_port), "220"]
    assert lines[2].split()[:3] == ["submission", str(stack.submission_port), "220"]
    assert lines[3].split()[:4] == ["imap", str(stack.imap_port), "*", "OK"]
    assert lines[4].split()[:3] == ["pop3", str(stack.pop3_port), "+OK"]
    assert lines[5] == f"  not answering: imap {closed}"
    assert lines[6] == "queues"
    assert " ".join(lines[7].split()) == "inbound waiting 3 in flight 0 delayed 0 dead letters 0"
    assert " ".join(lines[8].split()) == "outbound waiting 0 in flight 0 delayed 0 no dead-letter queue"
    assert " ".join(lines[9].split()) == "ses-events waiting 0 in flight 0 delayed 0 dead letters 1"
    assert lines[10] == (
        f"directory: {len(directory.list_domains())} domains, {len(users)} users "
        f"({sum(u.disabled for u in users)} disabled), {len(directory.list_aliases())} aliases"
    )


def test_status_without_dead_letters_exits_0_and_bad_ports_are_refused(stack) -> None:
    sqs, prefix = aws.client("sqs"), f"status-{secrets.token_hex(3)}"
    env = {
        **stack.environment,
        "MAILPIPE_INBOUND_QUEUE_URL": _queue(sqs, f"{prefix}-inbound-queue"),
        "MAILPIPE_OUTBOUND_QUEUE_URL": "",
    }
    calm = _run(env, "status", "--port", f"smtp={stack.smtp_port}")
    assert calm.returncode == 0, calm.stderr
    assert "  outbound     (none)" in calm.stdout and "  ses-events   (none)" in calm.stdout
    refused = _run(env, "status", "--port", "imap")
    assert (refused.returncode, refused.stderr) == (
        1,
        "mailpipe: --port wants NAME=PORT, e.g. imap=1143; got 'imap'\n",
    )
    unset = _run({**env, "MAILPIPE_MAILBOX_TABLE": ""}, "status")
    assert unset.returncode == 1 and unset.stderr == "mailpipe: missing environment: MAILPIPE_MAILBOX_TABLE\n"


def _run(env: dict[str, str], *args: str):
    class Stack:  # mailpipe() takes the environment from a stack
        environment = env

    return mailpipe(Stack, *args)
