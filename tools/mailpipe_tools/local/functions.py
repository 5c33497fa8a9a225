"""Loading a function's handler from its CodeUri and Handler, as the Lambda runtime does."""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailpipe_gateway.recipient_check import Lookup
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


class LocalLambdaContext:
    """The parts of Lambda's context object that Powertools and our handlers read."""

    def __init__(self, function_name: str, timeout_seconds: float = 30, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def in_process_lookup(handler: Handler, function_name: str) -> Lookup:
    """The gateway's recipient lookup as a call of the validation function's handler, as Lambda would."""

    def lookup(address: str) -> dict[str, Any]:
        return handler({"address": address}, LocalLambdaContext(function_name))

    return lookup
