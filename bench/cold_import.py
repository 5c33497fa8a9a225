"""Cold import of each Lambda handler, before and after the cold-start fixes, in one run.

A Lambda cold start imports the handler module in a fresh interpreter, from the layer in /opt,
which is read-only: what the layer does not ship compiled is compiled again at every cold start.
The bench builds two layers into a temporary directory and times each handler's import in fresh
interpreters (PYTHONDONTWRITEBYTECODE, as on Lambda), the variants interleaved round by round so
that they share the machine's state:

- before: the layer as BuildMethod python3.11 built it (`pip install --no-compile` of
  layers/core/requirements.txt, boto3 and botocore included, and the mailpipe source copied) and
  the argon2 hash passwords.py used to compute at import (the variant calls it right after the
  import: the same work, in the same place);
- lazy hash: the same layer, no hash at import;
- after: the layer as layers/core/Makefile builds it (precompiled, no boto3/botocore: the
  runtime's are used; here the venv's, which pip compiled, stand in for them), no hash at import.

Each child reports its own import time (time.perf_counter around the import); the medians are
printed with before/after ratios.

    .venv/bin/python bench/cold_import.py            # 15 rounds
    .venv/bin/python bench/cold_import.py --rounds 5
"""

from __future__ import annotations

import argparse
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


def _build_before(into: Path) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(into)),
            *("-r", str(ROOT / "layers" / "core" / "requirements.txt")),
        ],
        check=True,
    )
    shutil.copytree(CORE, into / "mailpipe", ignore=shutil.ignore_patterns("__pycache__"))
    return into


def _build_after(into: Path) -> Path:
    # For this interpreter's version (bytecode is per version), whatever the runtime's is: both
    # layers are then imported by the same Python.
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run(
        [
            *("make", "--silent", "-C", str(ROOT / "layers" / "core"), "build-CoreLayer"),
            *(f"ARTIFACTS_DIR={into}", f"RUNTIME={version}", f"PYTHON={sys.executable}"),
        ],
        check=True,
    )
    return into / "python"


def _import_time(handler: str, core: Path, eager_hash: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIPE_", "POWERTOOLS_"))}
    env.update(ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(core), str(ROOT / "functions" / handler)])
    # As on Lambda's read-only /opt: what is not shipped compiled is compiled, never cached.
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
        before = _build_before(Path(tmp) / "before")
        after = _build_after(Path(tmp) / "after")
        variants = {
            "before": (before, True),
            "lazy hash": (before, False),
            "after": (after, False),
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for handler in HANDLERS:
                for name, (core, eager) in variants.items():
                    elapsed = _import_time(handler, core, eager)
                    times.setdefault((handler, name), []).append(elapsed)

    python = sys.version.split()[0]
    print(f"cold import of each handler, median of {args.rounds} fresh interpreters, Python {python}")
    print(f"{'handler':<20}{'before':>10}{'lazy hash':>12}{'after':>10}{'before/after':>15}")
    for handler in HANDLERS:
        medians = {name: statistics.median(times[(handler, name)]) for name in variants}
        print(
            f"{handler:<20}"
            f"{medians['before'] * 1000:>8.0f}ms"
            f"{medians['lazy hash'] * 1000:>10.0f}ms"
            f"{medians['after'] * 1000:>8.0f}ms"
            f"{medians['before'] / medians['after']:>14.2f}x"
        )


if __name__ == "__main__":
    main()
