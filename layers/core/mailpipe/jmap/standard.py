"""The arguments every /get, /changes, /set, /query and /queryChanges shares (RFC 8620 5), checked
once here so each type's module deals only with its objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailpipe.jmap.context import Context
from mailpipe.jmap.errors import MethodError, invalid_arguments


def get_ids(context: Context, arguments: dict[str, Any]) -> list[str] | None:
    requested = arguments.get("ids")
    if requested is None:
        return None
    if not isinstance(requested, list) or not all(isinstance(i, str) for i in requested):
        raise invalid_arguments("ids must be a list of ids or null")
    if len(requested) > context.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", f"at most {context.limits.max_objects_in_get} ids in a /get")
    return [context.resolve(i) for i in dict.fromkeys(requested)]


def properties(arguments: dict[str, Any], known: Iterable[str], default: Iterable[str]) -> list[str]:
    wanted = arguments.get("properties")
    if wanted is None:
        return list(default)
    if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
        raise invalid_arguments("properties must be a list of names or null")
    known = set(known)
    unknown = [p for p in wanted if p not in known and not p.startswith("header:")]
    if unknown:
        raise invalid_arguments(f"unknown properties: {', '.join(unknown)}")
    return list(dict.fromkeys(["id", *wanted]))


def max_changes(context: Context, arguments: dict[str, Any]) -> int:
    value = arguments.get("maxChanges")
    if value is None:
        return context.limits.max_changes
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid_arguments("maxChanges must be a positive integer")
    return min(value, context.limits.max_changes)


def since_state(arguments: dict[str, Any], name: str = "sinceState") -> str:
    value = arguments.get(name)
    if not isinstance(value, str):
        raise invalid_arguments(f"{name} is required")
    return value


def check_set_size(context: Context, arguments: dict[str, Any]) -> None:
    for name, kind in (("create", dict), ("update", dict), ("destroy", list)):
        value = arguments.get(name)
        if value is not None and not isinstance(value, kind):
            raise invalid_arguments(f"{name} must be a {'map' if kind is dict else 'list'} or null")
    if not all(isinstance(i, str) for i in arguments.get("destroy") or []):
        raise invalid_arguments("destroy is a list of ids")
    count = sum(len(arguments.get(name) or ()) for name in ("create", "update", "destroy"))
    if count > context.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", f"at most {context.limits.max_objects_in_set} objects in a /set")


def check_if_in_state(arguments: dict[str, Any], current: str) -> None:
    expected = arguments.get("ifInState")
    if expected is not None and expected != current:
        raise MethodError("stateMismatch", "ifInState is not the current state")


def window(context: Context, arguments: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """position/anchor/anchorOffset/limit of a /query (RFC 8620 5.5) over the full result `ids`."""
    limit = arguments.get("limit")
    if limit is None:
        limit = context.limits.max_query_limit
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise invalid_arguments("limit must be a non-negative integer")
    limit = min(limit, context.limits.max_query_limit)
    anchor = arguments.get("anchor")
    if anchor is not None:
        offset = arguments.get("anchorOffset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise invalid_arguments("anchorOffset must be an integer")
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        position = max(0, ids.index(anchor) + offset)
    else:
        position = arguments.get("position", 0)
        if not isinstance(position, int) or isinstance(position, bool):
            raise invalid_arguments("position must be an integer")
        if position < 0:
            position = max(0, len(ids) + position)
    result: dict[str, Any] = {"ids": ids[position : position + limit], "position": position, "limit": limit}
    if arguments.get("calculateTotal"):
        result["total"] = len(ids)
    return result
