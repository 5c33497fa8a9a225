"""Result references (RFC 8620 3.7): an argument "#name" takes its value from an earlier response.

{"resultOf": call id, "name": method name, "path": JSON pointer} picks the value; a `*` in the path
maps the rest of the path over an array (and flattens arrays of arrays one level).
"""

from __future__ import annotations

from typing import Any

from mailpipe.jmap.errors import MethodError


def resolve_arguments(arguments: dict[str, Any], responses: list[list[Any]]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in arguments.items():
        if not key.startswith("#"):
            continue
        name = key[1:]
        if name in arguments:
            raise MethodError("invalidArguments", f"both {name!r} and {key!r} given")
        resolved[name] = _evaluate(value, responses)
    if not resolved:
        return arguments
    plain = {k: v for k, v in arguments.items() if not k.startswith("#")}
    return {**plain, **resolved}


def _evaluate(reference: Any, responses: list[list[Any]]) -> Any:
    if not (
        isinstance(reference, dict)
        and isinstance(reference.get("resultOf"), str)
        and isinstance(reference.get("name"), str)
        and isinstance(reference.get("path"), str)
    ):
        raise MethodError("invalidResultReference", "a ResultReference needs resultOf, name and path")
    for name, result, call_id in responses:
        if call_id == reference["resultOf"] and name == reference["name"]:
            try:
                return evaluate_pointer(result, reference["path"])
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise MethodError("invalidResultReference", f"path {reference['path']!r}: {exc}") from None
    raise MethodError(
        "invalidResultReference", f"no {reference['name']} response with id {reference['resultOf']!r}"
    )


def evaluate_pointer(value: Any, pointer: str) -> Any:
    """RFC 6901 with RFC 8620's `*`."""
    if pointer == "":
        return value
    if not pointer.startswith("/"):
        raise ValueError("a JSON pointer starts with /")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    return _walk(value, tokens)


def _walk(value: Any, tokens: list[str]) -> Any:
    if not tokens:
        return value
    token, rest = tokens[0], tokens[1:]
    if isinstance(value, list):
        if token == "*":
            mapped = [_walk(item, rest) for item in value]
            flat: list[Any] = []
            for item in mapped:
                flat.extend(item if isinstance(item, list) else [item])
            return flat
        if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
            raise ValueError(f"{token!r} is not an array index")
        return _walk(value[int(token)], rest)
    if isinstance(value, dict):
        if token not in value:
            raise KeyError(f"no member {token!r}")
        return _walk(value[token], rest)
    raise TypeError(f"cannot descend into {type(value).__name__} with {token!r}")
