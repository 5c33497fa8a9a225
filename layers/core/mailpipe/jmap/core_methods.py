"""Core/echo (RFC 8620 4): the arguments back, for testing a connection."""

from __future__ import annotations

from typing import Any

from mailpipe.jmap.context import CORE, Context
from mailpipe.jmap.methods import method


@method("Core/echo", CORE, needs_account=False)
def echo(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    return arguments
