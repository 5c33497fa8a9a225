"""JMAP over HTTP (RFC 8620 2, 3.1, 6.2): routes, sign-in (jmap/auth.py), and the answers,
independent of what carries the request (the Lambda handler behind API Gateway, the local server)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from mailpipe.auth.throttle import AuthThrottle
from mailpipe.directory import Directory
from mailpipe.jmap import api
from mailpipe.jmap.auth import JmapAuth, Throttled
from mailpipe.jmap.blobs import Uploads
from mailpipe.jmap.context import Context
from mailpipe.jmap.downloads import BucketDownloads, Inline, find_download
from mailpipe.jmap.errors import RequestError
from mailpipe.jmap.limits import Limits
from mailpipe.jmap.outbox import Outbox
from mailpipe.jmap.push import PushConnections
from mailpipe.jmap.response_fit import HTTP_RESPONSE_LIMIT, fitted_json
from mailpipe.jmap.session import (
    API_PATH,
    DOWNLOAD_PATH,
    SESSION_PATHS,
    UPLOAD_PATH,
    WEBSOCKET_PATH,
    session_resource,
)
from mailpipe.jmap.websocket import JmapWebSocket
from mailpipe.store import MailboxSnapshots, MailStore

log = logging.getLogger(__name__)

JSON = "application/json"
REALM = 'Basic realm="mailpipe JMAP", charset="UTF-8"'
LOGIN_PATH = "/jmap/login"
LOGOUT_PATH = "/jmap/logout"
# `?redirect=json` on a download: a blob that would be a redirect to S3 is answered 200 with
# {"url": ...} in this type instead, for a client that cannot follow a cross-origin redirect (the
# webmail's fetch under its CSP) and navigates to the URL itself. A type of its own, never served
# as a blob's (a mail's attachment cannot pose as the answer), and a query parameter rather than a
# header, so a cache keyed by URL never mixes the two answers.
DOWNLOAD_LINK = "application/vnd.mailpipe.download-link+json"
_DOWNLOAD = re.compile(re.escape(DOWNLOAD_PATH) + r"([^/]+)/([^/]+)/([^/]*)")
_UPLOAD = re.compile(re.escape(UPLOAD_PATH) + r"([^/]+)/?")
# Messages kept in memory across requests (~1 KB each with the summary packed): ~100 MB of the
# function's 512 MB.
SNAPSHOT_MESSAGES = 100_000
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    base_url: str = ""  # scheme://host[:port] the client reached, for the session's URLs
    source_ip: str = ""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def json(cls, status: int, value: Any, content_type: str = JSON) -> HttpResponse:
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, {"Content-Type": content_type, "Cache-Control": "no-store"}, body)


def _problem(error: RequestError) -> HttpResponse:
    return HttpResponse.json(error.status, error.problem(), "application/problem+json")


class JmapHttp:
    def __init__(
        self,
        directory: Directory,
        store: MailStore,
        limits: Limits | None = None,
        auth: JmapAuth | None = None,
        connections: PushConnections | None = None,
        websocket_url: str | None = None,
        *,
        outbox: Outbox | None = None,
        uploads: Uploads | None = None,
        downloads: BucketDownloads | None = None,
        public_url: str | None = None,
    ) -> None:
        # Without a JMAP table: Basic only, throttled in this process's memory, and no WebSocket.
        self.auth = auth or JmapAuth(directory, AuthThrottle())
        self._store = store
        self.limits = limits or Limits()
        self._outbox = outbox
        self._uploads = uploads
        # Presigned URLs for blobs too large to answer inline; None: everything inline.
        self._downloads = downloads
        self._snapshots = MailboxSnapshots(store, max_messages=SNAPSHOT_MESSAGES)
        self.websocket = (
            JmapWebSocket(self.auth, connections, store, self.limits, self._snapshots)
            if connections
            else None
        )
        # On AWS the WebSocket API's wss:// URL; None: the local server's, next to the API.
        self._websocket_url = websocket_url
        # https://the stack's own name for JMAP (config.jmap_public_urls); None: the request's.
        self._public_url = public_url

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._route(request)
        except Exception:
            # An outage (the directory, the store) or a bug: a 500 problem, the trace to the log only.
            log.exception("jmap %s %s failed", request.method, request.path[:200])
            return HttpResponse.json(500, {"type": "about:blank", "status": 500, "detail": "server error"})

    def _route(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        known = (
            path in SESSION_PATHS
            or path in (API_PATH, LOGIN_PATH, LOGOUT_PATH)
            or path.startswith(DOWNLOAD_PATH)
            or path.startswith(UPLOAD_PATH)
        )
        if not known:
            return HttpResponse.json(404, {"type": "about:blank", "status": 404, "detail": "not found"})
        if path == LOGIN_PATH:
            return self._login(request)
        if path == LOGOUT_PATH:
            return self._logout(request)
        try:
            owner = self.auth.authorization(request.headers.get("authorization", ""), request.source_ip)
        except Throttled:
            return _throttled()
        if owner is None:
            return _sign_in()
        if path in SESSION_PATHS:
            if request.method != "GET":
                return _not_allowed("GET")
            return HttpResponse.json(
                200,
                session_resource(
                    owner, self._public_url or request.base_url, self.limits, self._ws_url(request)
                ),
            )
        if path == API_PATH:
            if request.method != "POST":
                return _not_allowed("POST")
            return self._api(owner, request)
        if path.startswith(UPLOAD_PATH):
            if request.method != "POST":
                return _not_allowed("POST")
            return self._upload(owner, request)
        if request.method != "GET":
            return _not_allowed("GET")
        return self._download(owner, request)

    def _ws_url(self, request: HttpRequest) -> str | None:
        if self.websocket is None:
            return None
        if self._websocket_url:
            return self._websocket_url
        return "ws" + request.base_url.removeprefix("http") + WEBSOCKET_PATH  # http→ws, https→wss

    def _login(self, request: HttpRequest) -> HttpResponse:
        """POST /jmap/login {"username", "password"} → {"accessToken", "tokenType": "Bearer"}."""
        if request.method != "POST":
            return _not_allowed("POST")
        try:
            credentials = json.loads(request.body) if len(request.body) <= 4096 else None
            user, password = credentials["username"], credentials["password"]
        except (ValueError, TypeError, KeyError):
            user = password = None
        if not isinstance(user, str) or not isinstance(password, str):
            log.info("jmap login from %s: not {username, password}", request.source_ip or "-")
            return HttpResponse.json(
                400, {"type": "about:blank", "status": 400, "detail": "username and password"}
            )
        try:
            token = self.auth.login(user, password, request.source_ip)
        except Throttled:
            return _throttled()
        if token is None:
            return _sign_in()
        return HttpResponse.json(200, {"accessToken": token, "tokenType": "Bearer"})

    def _logout(self, request: HttpRequest) -> HttpResponse:
        """POST /jmap/logout with the token as Bearer: the token is deleted (204 either way)."""
        if request.method != "POST":
            return _not_allowed("POST")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            self.auth.logout(token.strip())
        return HttpResponse(204, {"Cache-Control": "no-store"}, b"")

    def _api(self, owner: str, request: HttpRequest) -> HttpResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        context = self._context(owner)
        try:
            if content_type != JSON:
                raise RequestError("notJSON", "the request's Content-Type must be application/json")
            response = api.process(request.body, context)
        except RequestError as error:
            log.info("jmap request from %s refused: %s (%s)", owner, error.kind, error.detail[:200])
            return _problem(error)
        # Over Lambda's response limit API Gateway would answer a bare 500: the calls that would
        # not fit are answered with method errors instead (jmap/response_fit.py).
        body = fitted_json(response, HTTP_RESPONSE_LIMIT, "HTTP", owner).encode()
        return HttpResponse(200, {"Content-Type": JSON, "Cache-Control": "no-store"}, body)

    def _context(self, owner: str) -> Context:
        return Context(
            owner,
            self._store,
            self.limits,
            snapshots=self._snapshots,
            outbox=self._outbox,
            uploads=self._uploads,
        )

    def _upload(self, owner: str, request: HttpRequest) -> HttpResponse:
        """RFC 8620 6.1: the body is the blob; answered 201 with its id, type and size."""
        match = _UPLOAD.fullmatch(request.path)
        context = self._context(owner)
        if match is None or unquote(match.group(1)) != context.account_id or self._uploads is None:
            log.info("jmap upload by %s to %s refused: not their account", owner, request.path[:200])
            return HttpResponse.json(404, {"type": "about:blank", "status": 404, "detail": "no such account"})
        if len(request.body) > self.limits.max_size_upload:
            log.info("jmap upload from %s refused: %d bytes", owner, len(request.body))
            error = RequestError(
                "limit",
                f"an upload is at most {self.limits.max_size_upload} bytes",
                status=413,
                limit="maxSizeUpload",
            )
            return _problem(error)
        wanted = request.headers.get("content-type", "").split(";")[0].strip().lower()
        content_type = wanted if _TOKEN.fullmatch(wanted) else "application/octet-stream"
        try:
            with api.CONCURRENCY.slot(owner + " upload", self.limits.max_concurrent_upload):
                uploaded = self._uploads.put(context.account_id, request.body, content_type)
        except RequestError as error:
            return _problem(error)
        log.info("jmap upload %s by %s: %d bytes", uploaded.blob_id, owner, uploaded.size)
        return HttpResponse.json(201, uploaded.response(context.account_id))

    def _download(self, owner: str, request: HttpRequest) -> HttpResponse:
        match = _DOWNLOAD.fullmatch(request.path)
        context = self._context(owner)
        if match is None or unquote(match.group(1)) != context.account_id:
            return HttpResponse.json(404, {"type": "about:blank", "status": 404, "detail": "no such blob"})
        blob_id = unquote(match.group(2))
        wanted = request.query.get("type", "application/octet-stream")
        served = _TOKEN.fullmatch(wanted) and wanted.lower() != DOWNLOAD_LINK
        content_type = wanted if served else "application/octet-stream"
        name = unquote(match.group(3)).replace('"', "").replace("\\", "")[:200] or "blob"
        disposition = f'attachment; filename="{name.encode("ascii", "replace").decode()}"'
        found = find_download(context, blob_id, self._downloads)
        if found is None:
            return HttpResponse.json(404, {"type": "about:blank", "status": 404, "detail": "no such blob"})
        if isinstance(found, Inline):
            headers = {
                "Content-Type": content_type,
                "Content-Disposition": disposition,
                "Cache-Control": "private, immutable, max-age=31536000",
                "X-Content-Type-Options": "nosniff",
            }
            return HttpResponse(200, headers, found.data)
        # Too large for a Lambda response: the client fetches it from S3 directly, by a presigned
        # URL that answers with the same headers.
        url = found.url(content_type, disposition)
        if request.query.get("redirect") == "json":
            return HttpResponse.json(200, {"url": url}, DOWNLOAD_LINK)
        return HttpResponse(302, {"Location": url, "Cache-Control": "no-store"}, b"")


def _sign_in() -> HttpResponse:
    response = HttpResponse.json(401, {"type": "about:blank", "status": 401, "detail": "sign in"})
    return HttpResponse(401, {**response.headers, "WWW-Authenticate": REALM}, response.body)


def _throttled() -> HttpResponse:
    # The password was not checked: too many failures lately (mailpipe/auth/throttle.py).
    response = HttpResponse.json(
        429, {"type": "about:blank", "status": 429, "detail": "too many failed logins"}
    )
    return HttpResponse(429, {**response.headers, "Retry-After": "900"}, response.body)


def _not_allowed(allowed: str) -> HttpResponse:
    response = HttpResponse.json(405, {"type": "about:blank", "status": 405, "detail": "method not allowed"})
    return HttpResponse(405, {**response.headers, "Allow": allowed}, response.body)
