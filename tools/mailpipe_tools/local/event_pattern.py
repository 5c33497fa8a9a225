"""Lambda's event filtering (FilterCriteria), locally: does a record match an event pattern?

The part of EventBridge's pattern syntax that event source mappings accept and the template uses:
nested objects, and at the leaves a list of allowed values, each a literal, `{"prefix": ...}`,
`{"exists": true|false}` or `{"anything-but": [...]}`. Any other operator is refused when the
pattern is read, so a template that needs more fails at `mailpipe dev` start, not silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_OPERATORS = {"prefix", "exists", "anything-but"}


def check(pattern: Mapping[str, Any]) -> None:
    """Raises ValueError if the pattern uses what `matches` does not implement."""
    for key, value in pattern.items():
        if isinstance(value, Mapping):
            check(value)
        elif isinstance(value, list):
            for allowed in value:
                if isinstance(allowed, Mapping) and not set(allowed) <= _OPERATORS:
                    raise ValueError(f"filter operator not supported locally: {sorted(allowed)} at {key!r}")
        else:
            raise ValueError(f"a pattern's leaves are lists of values: {key!r} is {value!r}")


def matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """True if every field the pattern names matches the event's (an object's missing field matches
    only `{"exists": false}`)."""
    if not isinstance(event, Mapping):
        return False
    for key, wanted in pattern.items():
        if isinstance(wanted, Mapping):
            if not matches(wanted, event.get(key)):
                return False
        elif not _leaf_matches(wanted, key in event, event.get(key)):
            return False
    return True


def _leaf_matches(allowed: list[Any], present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for rule in allowed:
        if isinstance(rule, Mapping):
            if "exists" in rule:
                if bool(rule["exists"]) == (present and not isinstance(value, Mapping)):
                    return True
                continue
            if not present:
                continue
            if "prefix" in rule and any(isinstance(v, str) and v.startswith(rule["prefix"]) for v in values):
                return True
            if "anything-but" in rule:
                excluded = rule["anything-but"]
                excluded = excluded if isinstance(excluded, list) else [excluded]
                if all(v not in excluded for v in values):
                    return True
        elif present and rule in values:
            return True
    return False
