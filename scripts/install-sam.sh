#!/usr/bin/env bash
# Install the AWS SAM CLI into its own virtualenv at <repo>/.venv-sam.
#
# The SAM CLI pins boto3/botocore (and pydantic, etc.) to versions that conflict with the project's
# own dependencies, so it must not be installed into .venv. Tests call .venv-sam/bin/sam directly.
#
# Idempotent: when .venv-sam already holds the wanted version, this returns in well under a second.
#
# Environment:
#   SAM_CLI_VERSION  the aws-sam-cli version to install (default below; "latest" = newest on PyPI)
#   SAM_PYTHON       the interpreter for the venv (default: python3.11, else python3)
#   SAM_VENV         where to put the venv (default: <repo>/.venv-sam)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAM_VENV:-$ROOT/.venv-sam}"
VERSION="${SAM_CLI_VERSION:-1.170.0}"

if [[ -z "${SAM_PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then
        SAM_PYTHON=python3.11
    else
        SAM_PYTHON=python3
    fi
fi

installed_version() {
    # Reads the version from package metadata without importing the (slow to start) CLI.
    [[ -x "$VENV/bin/sam" && -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - <<'PY' 2>/dev/null
from importlib.metadata import version
print(version("aws-sam-cli"))
PY
}

current="$(installed_version || true)"
if [[ -n "$current" && ( "$VERSION" == "latest" || "$current" == "$VERSION" ) ]]; then
    echo "install-sam: aws-sam-cli $current already in $VENV"
    exit 0
fi

if ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
    # Missing, or broken (e.g. its interpreter was removed): start afresh.
    echo "install-sam: creating $VENV with $SAM_PYTHON"
    "$SAM_PYTHON" -m venv --clear "$VENV"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ "$VERSION" == "latest" ]]; then
    spec="aws-sam-cli"
else
    spec="aws-sam-cli==$VERSION"
fi
echo "install-sam: installing $spec into $VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$spec"

echo "install-sam: $("$VENV/bin/sam" --version)"
