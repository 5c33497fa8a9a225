"""The `capture:FOLDER` transport: mail that would leave the machine is written to a folder instead.

The dev stack's default (`mailpipe dev` routes `*` here unless told `--transport '*=mx'`): a
developer's test mail to real addresses must not reach them, yet should be there to read. Each
message becomes `ENVELOPE-ID.DOMAIN.eml`, byte for byte as it would have been sent, after a
`Return-Path:` and an `X-Original-To:` header saying what the envelope said (as a local delivery
agent adds them), so any mail reader opens it. The file appears whole (written aside, then
renamed), and a retry of the same message writes the same file again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mailpipe.outbound.status import SmtpStatus
from mailpipe.outbound.transports import Recipient, RecipientResult

CAPTURED = "capture"  # what a captured recipient's result names as the host that took it


def deliver_capture(
    raw: bytes, mail_from: str, recipients: Sequence[Recipient], folder: Path, envelope_id: str
) -> list[RecipientResult]:
    """Write the message for `recipients` (all of one domain) to `folder`; one result each."""
    domain = recipients[0].domain.lower() if recipients else "none"
    path = folder / f"{envelope_id}.{domain}.eml"
    headers = (
        f"Return-Path: <{mail_from}>\r\nX-Original-To: {', '.join(r.address for r in recipients)}\r\n"
    ).encode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(headers + raw)
        os.replace(temporary, path)
    except OSError as exc:
        status = SmtpStatus(451, "4.3.0", f"cannot write {path}: {exc.strerror}")
    else:
        status = SmtpStatus(250, "2.0.0", f"captured in {path}")
    return [RecipientResult(r.address, status, remote_mta=CAPTURED) for r in recipients]
