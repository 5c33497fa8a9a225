"""What a Lambda cold start pays for: no password hash at import, in any function."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mailpipe.passwords as passwords

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

# A child that refuses to hash: importing a handler must not need one.
NO_HASH_AT_IMPORT = """
import nacl.pwhash.argon2id

def refuse(*args, **kwargs):
    raise SystemExit("an argon2 hash at import")

nacl.pwhash.argon2id.str = refuse
import app
import mailpipe.passwords
print("imported", mailpipe.passwords._dummy_hash)
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_handler_computes_no_password_hash(function: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILPIPE_", "AWS_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT / "functions" / function)]),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        MAILPIPE_MAIL_BUCKET="bucket",
        MAILPIPE_INBOUND_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/inbound",
        MAILPIPE_DIRECTORY_TABLE="directory",
        MAILPIPE_MAILBOX_TABLE="mailbox",
        MAILPIPE_IDEMPOTENCY_TABLE="idempotency",
        MAILPIPE_OUTBOUND_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/outbound",
        MAILPIPE_OUTBOUND_TABLE="outbound",
        MAILPIPE_SES_CONFIGURATION_SET="set",
    )
    result = subprocess.run(
        [sys.executable, "-c", NO_HASH_AT_IMPORT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported None"


def test_unknown_users_still_cost_one_hash_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dummy hash is made at the first unknown-user check, once even when many logins race."""
    monkeypatch.setattr(passwords, "_dummy_hash", None)
    made = []
    real = passwords.hash_password

    def slow_hash(password: str) -> str:
        made.append(password)
        time.sleep(0.05)  # widen the race
        return real(password)

    monkeypatch.setattr(passwords, "hash_password", slow_hash)
    results = []

    def login() -> None:
        results.append(passwords.verify_password(None, "guess"))

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [False] * 8
    assert made == ["mailpipe-no-such-user"]
    # Verified against, as a real hash: a wrong user name costs what a wrong password does.
    assert passwords._dummy_hash is not None and passwords._dummy_hash.startswith("$argon2id$")
