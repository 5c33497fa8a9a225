"""The webmail's static files (webmail/ at the repository root) served by the local HTTP server:
`/` is its index.html, `/webmail/NAME` its other files. On AWS the same files come from S3 through
CloudFront, with the same Content-Security-Policy as a response headers policy (template.yaml)."""

from __future__ import annotations

from pathlib import Path

WEBMAIL_DIR = Path(__file__).resolve().parents[3] / "webmail"
PREFIX = "/webmail/"


def content_security_policy(websocket_origin: str = "") -> str:
    """The webmail's CSP; `websocket_origin` is where its push socket goes when that is not the
    page's own origin (on AWS the WebSocket API's wss://… host; locally the same server, which
    'self' covers, ws: included).

    Kept equal to template.yaml's WebmailResponseHeadersPolicy (tests/test_template.py checks).
    Mail's HTML is shown in a sandboxed srcdoc iframe, which inherits this policy: no script
    runs, no remote image or style loads, whatever the sanitizer missed."""
    connect = f"connect-src 'self' {websocket_origin}" if websocket_origin else "connect-src 'self'"
    return (
        f"default-src 'self'; {connect}; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

Answer = tuple[int, dict[str, str], bytes]


class WebmailFiles:
    def __init__(self, root: Path = WEBMAIL_DIR) -> None:
        self._root = root.resolve()

    def wants(self, path: str) -> bool:
        """True for the paths this serves; every other path goes to the function."""
        return path == "/" or path.startswith(PREFIX)

    def answer(self, method: str, path: str) -> Answer:
        if method not in ("GET", "HEAD"):
            return 405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"}, b"method not allowed\n"
        name = "index.html" if path == "/" else path[len(PREFIX) :]
        file = (self._root / name).resolve()
        # Only regular files under the root, of a type we name: no "..", no listing, no dotfiles.
        content_type = CONTENT_TYPES.get(file.suffix)
        inside = file.is_relative_to(self._root) and not any(p.startswith(".") for p in Path(name).parts)
        if not inside or content_type is None or not file.is_file():
            return 404, {"Content-Type": "text/plain"}, b"not found\n"
        headers = {"Content-Type": content_type, "Cache-Control": "no-cache", **SECURITY_HEADERS}
        return 200, headers, file.read_bytes()
