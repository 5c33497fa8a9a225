"""Cold import of each Lambda handler, before and after the cold-start fixes, in one run.

A Lambda cold start imports the handler module in a fresh interpreter. Two variants of the
core package (layers/core/mailpipe, as the layer ships it: source only, and Lambda's /opt is
read-only, so nothing is cached) are timed, each in fresh interpreters, interleaved round by round
so that they share the machine's state:

- before: the argon2 hash that passwords.py used to compute at import (the variant calls it right
  after the import: the same work, in the same place);
- after: no hash at import (it is made at the first unknown-user login, in the gateways only).

The dependencies (Powertools, boto3, dnspython, ...) are the venv's, compiled by pip as the layer's
are. Each child reports its own import time (time.perf_counter around the import); the medians are
printed with before/after ratios.

    .venv/bin/python bench/cold_import.py            # 15 rounds
    .venv/bin/python bench/cold_import.py --rounds 5
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "layers" / "core" / "mailpipe"
HANDLERS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

# What Globals.Function.Environment gives the functions (values do not matter: nothing is called).
ENV = {
    "MAILPIPE_MAIL_BUCKET": "bench-bucket",
    "MAILPIPE_INBOUND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/inbound",
    "MAILPIPE_DIRECTORY_TABLE": "directory",
    "MAILPIPE_MAILBOX_TABLE": "mailbox",
    "MAILPIPE_IDEMPOTENCY_TABLE": "idempotency",
    "MAILPIPE_OUTBOUND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/outbound",
    "MAILPIPE_OUTBOUND_TABLE": "outbound",
    "MAILPIPE_TRANSPORTS": "*=ses",
    "MAILPIPE_HOSTNAME": "mail.example.com",
    "MAILPIPE_SES_CONFIGURATION_SET": "bench",
    "POWERTOOLS_SERVICE_NAME": "mailpipe-functions",
    "POWERTOOLS_METRICS_NAMESPACE": "mailpipe",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "LOG_LEVEL": "INFO",
}

CHILD = """
import sys, time
start = time.perf_counter()
import app
if {eager_hash}:
    import mailpipe.passwords
    mailpipe.passwords._dummy()
elapsed = time.perf_counter() - start
import mailpipe
assert mailpipe.__file__.startswith({core!r}), mailpipe.__file__
print(elapsed)
"""


def _copy_core(into: Path, compiled: bool) -> Path:
    target = into / "mailpipe"
    shutil.copytree(CORE, target, ignore=shutil.ignore_patterns("__pycache__"))
    if compiled:
        assert compileall.compile_dir(target, quiet=1, workers=1)
    return into


def _import_time(handler: str, core: Path, eager_hash: bool, compiled: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_", "POWERTOOLS_"))}
    env.update(ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(core), str(ROOT / "functions" / handler)])
    if not compiled:
        # As on Lambda's read-only /opt: compiled, never cached.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    code = CHILD.format(eager_hash=eager_hash, core=str(core))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailpipe-cold-") as tmp:
        source = _copy_core(Path(tmp) / "source", compiled=False)
        variants = {
            "before": (source, True, False),
            "after": (source, False, False),
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for handler in HANDLERS:
                for name, (core, eager, compiled) in variants.items():
                    elapsed = _import_time(handler, core, eager, compiled)
                    times.setdefault((handler, name), []).append(elapsed)

    python = sys.version.split()[0]
    print(f"cold import of each handler, median of {args.rounds} fresh interpreters, Python {python}")
    print(f"{'handler':<20}{'before':>10}{'after':>10}{'before/after':>15}")
    for handler in HANDLERS:
        medians = {name: statistics.median(times[(handler, name)]) for name in variants}
        print(
            f"{handler:<20}"
            f"{medians['before'] * 1000:>8.0f}ms"
            f"{medians['after'] * 1000:>8.0f}ms"
            f"{medians['before'] / medians['after']:>14.2f}x"
        )


if __name__ == "__main__":
    main()
