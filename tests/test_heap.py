"""mailpipe.heap.settle: start-up's objects leave the collector's generations (run in a process of
its own: freezing the test runner's heap would keep every earlier test's cyclic garbage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import gc, json
from mailpipe import heap

class Node:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it

kept = [Node() for _ in range(50_000)]  # what a server's start-up makes and keeps
Node()  # garbage left before settling
tracked_before = len(gc.get_objects())
heap.settle()
tracked_after = len(gc.get_objects())
garbage = [Node() for _ in range(1000)]
del garbage
collected = gc.collect()
print(json.dumps({"before": tracked_before, "after": tracked_after, "frozen": gc.get_freeze_count(),
                  "collected": collected, "kept": len(kept)}))
"""


def test_settle_freezes_what_start_up_made_and_later_garbage_is_still_collected() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "core")}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    assert result["frozen"] >= 50_000  # the kept objects, out of every later full collection
    assert result["after"] < result["before"] - 50_000
    assert result["collected"] >= 1000  # cycles made after settling are collected as before
