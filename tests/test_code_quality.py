"""The project's own standard: ruff clean, and every module where docs/architecture.md says it is."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

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


PACKAGE_ROOTS = {
    "mailpipe": REPO_ROOT / "layers" / "core" / "mailpipe",
    "mailpipe_gateway": REPO_ROOT / "gateway" / "mailpipe_gateway",
    "mailpipe_tools": REPO_ROOT / "tools" / "mailpipe_tools",
}


def _module_names() -> dict[str, Path]:
    modules = {}
    for package, root in PACKAGE_ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules `path` imports anywhere (a function-level import is still a dependency),
    except under `if TYPE_CHECKING:`, which never runs."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            if name in modules:
                found.add(name)
    return found


def test_no_import_cycles_between_our_modules() -> None:
    modules = _module_names()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ importing its own modules (a re-export) is not a cycle anyone follows.
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not name.startswith(dep + ".")}
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycles.append(" -> ".join([*trail, dep]))
                elif dep not in seen and dep > start:  # each cycle once, from its smallest module
                    seen.add(dep)
                    stack.append((dep, [*trail, dep]))
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)
