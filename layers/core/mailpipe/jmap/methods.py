"""The table of methods: name -> (capability it belongs to, function). Modules register theirs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailpipe.jmap.context import Context

# A method returns its response's arguments, or several (name, arguments) responses
# (Email/copy with onSuccessDestroyOriginal answers with an Email/set too).
Result = dict[str, Any] | list[tuple[str, dict[str, Any]]]
Function = Callable[[Context, dict[str, Any]], Result]


@dataclass(frozen=True)
class Method:
    name: str
    capability: str
    function: Function
    needs_account: bool = True


METHODS: dict[str, Method] = {}


def method(name: str, capability: str, *, needs_account: bool = True) -> Callable[[Function], Function]:
    def register(function: Function) -> Function:
        METHODS[name] = Method(name, capability, function, needs_account)
        return function

    return register
