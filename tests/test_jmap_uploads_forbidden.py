"""On AWS the functions' roles have no s3:ListBucket on the mail bucket, so S3 answers a GET or
HEAD of a key that is not there with 403 AccessDenied, not 404 (moto answers 404). An upload id
that is not the user's (or no longer there) must read as "no such blob", not fail the request.
A small real HTTP server answers as S3 does without ListBucket."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import boto3
import pytest

from mailpipe.jmap.blobs import Uploads

DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


class AccessDenied(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._deny(body=True)

    def do_HEAD(self) -> None:
        self._deny(body=False)

    def _deny(self, body: bool) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(DENIED)))
        self.end_headers()
        if body:
            self.wfile.write(DENIED)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def uploads() -> Iterator[Uploads]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AccessDenied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s3 = boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield Uploads(s3, "mail-bucket")
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_forbidden_upload_reads_as_no_such_blob(uploads: Uploads) -> None:
    blob_id = "U" + "0" * 32
    assert uploads.size("Aaccount", blob_id) is None
    assert uploads.read("Aaccount", blob_id) is None
