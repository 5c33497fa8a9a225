"""JMAP's two kinds of error: a request-level problem (RFC 8620 3.6.1, an HTTP status with an RFC 7807
problem document) and a method-level error (3.6.2, an "error" response in place of the method's)."""

from __future__ import annotations

from typing import Any

PREFIX = "urn:ietf:params:jmap:error:"


class RequestError(Exception):
    """The whole request is refused: unknownCapability, notJSON, notRequest, limit."""

    def __init__(self, kind: str, detail: str, status: int = 400, **extra: Any) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        return {"type": PREFIX + self.kind, "status": self.status, "detail": self.detail, **self.extra}


class MethodError(Exception):
    """One method call fails; the others of the request go on (RFC 8620 3.6.2)."""

    def __init__(self, kind: str, description: str | None = None, **extra: Any) -> None:
        super().__init__(description or kind)
        self.kind = kind
        self.description = description
        self.extra = extra

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind, **self.extra}
        if self.description:
            body["description"] = self.description
        return body


def invalid_arguments(description: str) -> MethodError:
    return MethodError("invalidArguments", description)


def set_error(kind: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    """A SetError (RFC 8620 5.3) for one object of a /set, /copy or /import."""
    error: dict[str, Any] = {"type": kind, **extra}
    if description:
        error["description"] = description
    return error


class SetFailure(Exception):
    """Raised inside one object's create/update/destroy: becomes that object's SetError."""

    def __init__(self, kind: str, description: str | None = None, **extra: Any) -> None:
        super().__init__(description or kind)
        self.error = set_error(kind, description, **extra)
