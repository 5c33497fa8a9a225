"""rspamd's HTTP scanning API (`POST /checkv2`), spoken over asyncio streams.

One request per message to rspamd's normal worker (on AWS a sidecar on 127.0.0.1): HTTP/1.1 with
`Connection: close`, the message as the body, the SMTP envelope as rspamd's own request headers
(https://rspamd.com/doc/developers/protocol.html). rspamd answers with a Content-Length'd JSON
object. That exchange is small enough that a client of our own (this module) is simpler than a
general HTTP library in the gateway's image; everything about it is bounded: the whole exchange by
`timeout` (connect, send, wait, read), the answer by MAX_RESPONSE bytes.

Any failure (refused, reset, timed out, an HTTP error, an answer that is not rspamd's JSON) raises
RspamdUnavailable: the caller accepts the message unscanned rather than lose it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# rspamd's answer lists every symbol with its options; real answers are a few KiB.
MAX_RESPONSE = 4 * 1024 * 1024
DEFAULT_TIMEOUT = 15.0  # rspamd's own task_timeout is 8 s; past this we stop waiting


class RspamdUnavailable(Exception):
    """rspamd could not be asked, or did not answer in time or in its own format."""


@dataclass(frozen=True)
class Symbol:
    name: str
    score: float
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanResult:
    action: str
    score: float
    required_score: float
    symbols: tuple[Symbol, ...] = ()
    # rspamd's text for the SMTP reply (messages.smtp_message), if a rule set one.
    smtp_message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


class RspamdClient:
    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"rspamd URL must be http://HOST:PORT, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 11333
        self.timeout = timeout

    async def check(self, message: bytes, headers: Sequence[tuple[str, str]]) -> ScanResult:
        """Scan `message`; `headers` are rspamd's request headers (IP, Helo, From, Rcpt, ...)."""
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._exchange(message, headers)
        except TimeoutError as exc:
            raise RspamdUnavailable(f"no answer within {self.timeout:g}s") from exc
        except OSError as exc:
            raise RspamdUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return parse_result(answer)

    async def _exchange(self, message: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=64 * 1024)
        try:
            writer.write(request_head(self.host, self.port, len(message), headers))
            writer.write(message)
            await writer.drain()
            response = b""
            while len(response) <= MAX_RESPONSE and (chunk := await reader.read(64 * 1024)):
                response += chunk
        finally:
            writer.close()
        if len(response) > MAX_RESPONSE:
            raise RspamdUnavailable(f"answer larger than {MAX_RESPONSE} bytes")
        return http_body(response)


def request_head(host: str, port: int, length: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [
        "POST /checkv2 HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        f"Content-Length: {length}",
    ]
    lines += [f"{name}: {_header_value(value)}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")


def _header_value(value: str) -> str:
    # Envelope values come from the client: no line breaks or NULs may end our header early.
    return "".join(char if char >= " " and char != "\x7f" else "?" for char in value)


def http_body(response: bytes) -> bytes:
    """The body of a complete HTTP/1.x response that says 200; RspamdUnavailable otherwise."""
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        raise RspamdUnavailable("incomplete HTTP answer")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise RspamdUnavailable(f"not an HTTP answer: {status_line[:80]!r}")
    if parts[1] != "200":
        raise RspamdUnavailable(f"HTTP {status_line[:120]}: {body[:200]!r}")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding", "").lower() == "chunked":
        return _unchunk(body)
    if "content-length" in fields:
        try:
            length = int(fields["content-length"])
        except ValueError as exc:
            raise RspamdUnavailable("bad Content-Length") from exc
        if len(body) < length:
            raise RspamdUnavailable("answer cut short")
        return body[:length]
    return body  # no length: the connection's end ended the body


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, separator, body = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError as exc:
            raise RspamdUnavailable("bad chunked encoding") from exc
        if not separator or len(body) < size:
            raise RspamdUnavailable("answer cut short")
        if size == 0:
            return bytes(out)
        out += body[:size]
        body = body[size + 2 :]


def parse_result(body: bytes) -> ScanResult:
    """rspamd's JSON answer; RspamdUnavailable for anything else (a filter answering nonsense is a
    filter that could not be asked: the message is accepted unscanned, never refused by accident)."""
    try:
        return _result(json.loads(body))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RspamdUnavailable(f"not an rspamd result ({type(exc).__name__}): {body[:200]!r}") from exc


def _result(data: Any) -> ScanResult:
    action = data["action"]
    if not isinstance(action, str):
        raise TypeError("action is not a string")
    symbols = []
    for name, symbol in (data.get("symbols") or {}).items():
        options = symbol.get("options") or []
        if not isinstance(options, list):
            raise TypeError("symbol options are not a list")
        symbols.append(Symbol(str(name), float(symbol.get("score") or 0.0), tuple(map(str, options))))
    smtp_message = (data.get("messages") or {}).get("smtp_message")
    return ScanResult(
        action=action,
        score=float(data.get("score") or 0.0),
        required_score=float(data.get("required_score") or 0.0),
        symbols=tuple(symbols),
        smtp_message=smtp_message if isinstance(smtp_message, str) and smtp_message else None,
        raw=data,
    )
