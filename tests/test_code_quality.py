"""The project's own standard: ruff clean, and every module where docs/architecture.md says it is."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO_ROOT


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check() -> None:
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_architecture_doc_names_existing_files() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:gateway|layers|functions|tools)/[\w/.]+)`", text))
    assert paths, "docs/architecture.md should point at the code"
    missing = sorted(p for p in paths if not (REPO_ROOT / p).exists())
    assert missing == [], f"docs/architecture.md names files that are not there: {missing}"
