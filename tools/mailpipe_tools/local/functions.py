"""Loading a function's handler from its CodeUri and Handler, as the Lambda runtime does."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailpipe_tools.local.template import Template

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    name: str
    handler: Handler
    timeout: int
    # A Lambda execution environment runs one invocation at a time, and handlers rely on it
    # (Powertools' BatchProcessor keeps the batch on the module-level processor): pollers of
    # the same function (the stack's, a test's) take turns.
    invocation: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def load_function(template: Template, logical_id: str, name: str) -> LocalFunction:
    props = template.properties(logical_id)
    globals_ = template.body.get("Globals", {}).get("Function", {})
    module_name, _, attribute = props.get("Handler", globals_.get("Handler", "")).rpartition(".")
    path = template.root / props["CodeUri"] / f"{module_name.replace('.', '/')}.py"
    # Each function gets its own module name: every function's module is called `app`.
    spec = importlib.util.spec_from_file_location(f"mailpipe_functions.{logical_id}.{module_name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timeout = int(props.get("Timeout", globals_.get("Timeout", 30)))
    return LocalFunction(logical_id, name, getattr(module, attribute), timeout)
