"""Delivery status notifications (RFC 3464 bounces and delay warnings), and when to send one.

A DSN is a `multipart/report; report-type=delivery-status` (RFC 6522) with three parts:

1. `text/plain`: what happened, for the person who sent the message;
2. `message/delivery-status`: the same for programs — per-message fields (Reporting-MTA,
   Original-Envelope-Id, Arrival-Date) then one block per recipient (Original-Recipient,
   Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
   Will-Retry-Until), in RFC 3464's order;
3. the original: only its header (`text/rfc822-headers`) or all of it (`message/rfc822`), as
   the sender's RET asked (RFC 3461 4.3). RET applies to failure DSNs only: a delay warning
   always carries the headers, and so does a failure whose original is larger than
   `max_full_size` (a bounce must not fail for being too big).

It comes from `MAILER-DAEMON@<reporting domain>` with `Auto-Submitted: auto-replied`
(RFC 3834; what Postfix sends) and must be sent with a **null reverse path** (`MAIL FROM:<>`),
so that a DSN about a DSN is never generated.

The parts are built with the standard `email` package. The returned original is spliced in
byte for byte (line ends made CRLF) rather than parsed and re-generated: re-generation
refolds headers and re-serialises MIME, which changes the very bytes a sender would look
at to see what went wrong.

Field values in `message/delivery-status` are ASCII (RFC 3464): remote replies are joined
onto one line and non-ASCII bytes replaced; a non-ASCII (SMTPUTF8) address is written with
RFC 6533's `utf-8` address type and `\\x{HEX}` escapes.

Who gets one (`should_send_dsn`): never a message whose sender is null (it is itself a
bounce), and never a sender we did not authenticate: mail relayed for an unauthenticated
sender has a forgeable return path, and bouncing it would send "backscatter" to whoever was
forged. Such failures are only logged.
"""

from __future__ import annotations

import io
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from email.utils import format_datetime

from mailpipe.message_ids import new_message_id

KINDS = {"failure": "failed", "delay": "delayed", "success": "relayed"}
ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
RETS = ("HDRS", "FULL")
DEFAULT_MAX_FULL_SIZE = 10 * 1024 * 1024
NULL_SENDERS = ("", "<>")

# compat32 without refolding: the fields below are folded here, the rest must stay as given.
_POLICY = compat32.clone(linesep="\r\n", max_line_length=0)
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_SUBJECTS = {
    "failure": "Undelivered Mail Returned to Sender",
    "delay": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
}


@dataclass(frozen=True)
class RecipientStatus:
    """What became of one recipient, in the terms of an RFC 3464 per-recipient block.

    `original_recipient` is the ORCPT parameter, xtext-decoded (`rfc822;bob@example.org`; a
    bare address is taken as rfc822). `diagnostic` is the remote server's reply
    (`550 5.1.1 no such user`), or a local explanation with `diagnostic_type` other than
    `smtp` (`X-mailpipe`, as Postfix writes `X-Postfix`). `action` defaults from the DSN's
    kind (failed, delayed, relayed).
    """

    final_recipient: str
    status: str
    action: str | None = None
    original_recipient: str | None = None
    remote_mta: str | None = None
    diagnostic: str | None = None
    diagnostic_type: str = "smtp"
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None

    def __post_init__(self) -> None:
        if not _STATUS.match(self.status):
            raise ValueError(f"not a status code: {self.status!r} (want x.y.z)")
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"not a DSN action: {self.action!r}")


def should_send_dsn(envelope_from: str | None, authenticated: bool) -> bool:
    """Whether a failure or delay may be reported to `envelope_from` at all (see the module docstring)."""
    if envelope_from is None or envelope_from.strip() in NULL_SENDERS:
        return False
    return authenticated


def notify_allows(notify: str | None, kind: str) -> bool:
    """Whether a recipient's RFC 3461 NOTIFY parameter asks for a DSN of this kind.

    Without NOTIFY an MTA behaves as for `FAILURE,DELAY` (RFC 3461 4.1); `NEVER` stops all.
    """
    if kind not in KINDS:
        raise ValueError(f"kind is one of {sorted(KINDS)}, not {kind!r}")
    wanted = {part.strip().upper() for part in (notify or "FAILURE,DELAY").split(",")}
    return "NEVER" not in wanted and kind.upper() in wanted


def xtext_decode(text: str) -> str:
    """RFC 3461 4: `+XX` is the byte XX. ENVID and ORCPT arrive so; the DSN carries them decoded."""
    raw = re.sub(rb"\+([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return raw.decode("utf-8", "replace")


def xtext_encode(text: str) -> str:
    """RFC 3461 4: what ENVID and ORCPT look like when passed on to the next server."""
    out = []
    for byte in text.encode("utf-8"):
        out.append(chr(byte) if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D) else f"+{byte:02X}")
    return "".join(out)


def build_dsn(
    original: bytes,
    envelope_from: str,
    recipients: Sequence[RecipientStatus],
    reporting_mta: str,
    *,
    ret: str = "HDRS",
    envid: str | None = None,
    kind: str = "failure",
    arrival_date: datetime | None = None,
    now: datetime | None = None,
    from_domain: str | None = None,
    queue_id: str | None = None,
    max_full_size: int = DEFAULT_MAX_FULL_SIZE,
) -> bytes:
    """The DSN as bytes with CRLF line ends, ready to be spooled to `envelope_from` with `MAIL FROM:<>`.

    `reporting_mta` is this MTA's host name; `from_domain` (default: the same) names the
    MAILER-DAEMON address. `now` (default: the current time) dates the DSN.
    """
    if kind not in KINDS:
        raise ValueError(f"kind is one of {sorted(KINDS)}, not {kind!r}")
    ret = ret.upper()
    if ret not in RETS:
        raise ValueError(f"ret is HDRS or FULL, not {ret!r}")
    if not recipients:
        raise ValueError("a DSN reports on at least one recipient")
    if envelope_from.strip() in NULL_SENDERS:
        raise ValueError("no DSN to a null sender")
    now = now or datetime.now(UTC)
    original = re.sub(rb"\r?\n", b"\r\n", original)
    full = kind == "failure" and ret == "FULL" and len(original) <= max_full_size
    returned = original if full else _header_block(original)

    report = Message(policy=_POLICY)
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{from_domain or reporting_mta}>"
    report["To"] = _raw(f"<{envelope_from.strip().strip('<>')}>")
    report["Subject"] = _SUBJECTS[kind]
    report["Date"] = format_datetime(now)
    report["Message-ID"] = new_message_id(reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    report["MIME-Version"] = "1.0"
    boundary = _boundary(reporting_mta, original)
    report["Content-Type"] = f'multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"'
    report.preamble = "This is a MIME-encapsulated message.\n"

    notification = Message(policy=_POLICY)
    notification["Content-Description"] = "Notification"
    text = _human_text(
        kind,
        reporting_mta,
        from_domain or reporting_mta,
        recipients,
        full,
        ret,
        len(original) > max_full_size,
        arrival_date,
    )
    notification["Content-Type"] = f"text/plain; charset={'us-ascii' if text.isascii() else 'utf-8'}"
    if not text.isascii():
        notification["Content-Transfer-Encoding"] = "8bit"
    notification.set_payload(_raw(text))
    eight_bit = not (text.isascii() and returned.isascii() and envelope_from.isascii())
    report["Content-Transfer-Encoding"] = "8bit" if eight_bit else "7bit"

    status = Message(policy=_POLICY)
    status["Content-Description"] = "Delivery report"
    status["Content-Type"] = "message/delivery-status"
    status.set_payload(_status_blocks(reporting_mta, recipients, kind, envid, arrival_date, queue_id))

    placeholder = f"mailpipe-original-{secrets.token_hex(16)}"
    attached = Message(policy=_POLICY)
    attached["Content-Description"] = (
        "Undelivered Message"
        if full
        else "Message Headers"
        if kind == "success"
        else "Undelivered Message Headers"
    )
    attached["Content-Type"] = "message/rfc822" if full else "text/rfc822-headers"
    attached["Content-Transfer-Encoding"] = "7bit" if returned.isascii() else "8bit"
    attached.set_payload(placeholder)

    report.set_payload([notification, status, attached])
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=_POLICY).flatten(report)
    head, found, tail = buffer.getvalue().partition(placeholder.encode())
    if not found:
        raise AssertionError("the original's placeholder went missing")
    return head + returned + tail


def _status_blocks(
    reporting_mta: str,
    recipients: Sequence[RecipientStatus],
    kind: str,
    envid: str | None,
    arrival_date: datetime | None,
    queue_id: str | None,
) -> list[Message]:
    per_message = Message(policy=_POLICY)
    if envid:
        per_message["Original-Envelope-Id"] = _ascii(envid)
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    if arrival_date is not None:
        per_message["Arrival-Date"] = format_datetime(arrival_date)
    if queue_id:  # an extension field: after the standard ones (RFC 3464 2.2)
        per_message["X-Mailpipe-Queue-ID"] = _ascii(queue_id)
    blocks = [per_message]
    for recipient in recipients:
        block = Message(policy=_POLICY)
        if recipient.original_recipient:
            block["Original-Recipient"] = _typed_address(recipient.original_recipient, original=True)
        block["Final-Recipient"] = _typed_address(recipient.final_recipient)
        block["Action"] = recipient.action or KINDS[kind]
        block["Status"] = recipient.status
        if recipient.remote_mta:
            block["Remote-MTA"] = f"dns; {_ascii(recipient.remote_mta)}"
        if recipient.diagnostic:
            block["Diagnostic-Code"] = _fold(
                f"{recipient.diagnostic_type}; {_ascii(recipient.diagnostic)}", len("Diagnostic-Code: ")
            )
        if recipient.last_attempt is not None:
            block["Last-Attempt-Date"] = format_datetime(recipient.last_attempt)
        if recipient.will_retry_until is not None:
            block["Will-Retry-Until"] = format_datetime(recipient.will_retry_until)
        blocks.append(block)
    return blocks


def _human_text(
    kind: str,
    reporting_mta: str,
    domain: str,
    recipients: Sequence[RecipientStatus],
    full: bool,
    ret: str,
    too_big: bool,
    arrival_date: datetime | None,
) -> str:
    paragraphs = [f"This is the mail system at host {reporting_mta}."]
    if kind == "failure":
        paragraphs.append(
            "Your message could not be delivered to one or more of its recipients."
            " The reasons are listed below, followed by a machine-readable report and "
            + ("your message." if full else "the headers of your message.")
        )
        if ret == "FULL" and too_big:
            paragraphs.append("Your message was too large to be returned in full.")
    elif kind == "delay":
        paragraphs.append("This is a warning only: you do not need to send your message again.")
        since = f" since {format_datetime(arrival_date)}" if arrival_date else ""
        until = [r.will_retry_until for r in recipients if r.will_retry_until is not None]
        retry = f" Delivery will be retried until {format_datetime(max(until))}." if until else ""
        paragraphs.append(
            f"Your message could not yet be delivered to the recipients below{since}."
            f"{retry} You will be told if it still fails then."
        )
    else:
        paragraphs.append("Your message was delivered or passed on to the recipients below.")
    paragraphs.append(f"For help, write to postmaster@{domain} and include this report.")
    wrapped = [textwrap.fill(p, width=72, break_long_words=False, break_on_hyphens=False) for p in paragraphs]
    lines = ["\n\n".join(wrapped), ""]
    for recipient in recipients:
        if recipient.diagnostic and recipient.remote_mta:
            why = f"host {recipient.remote_mta} said: {' '.join(recipient.diagnostic.split())}"
        elif recipient.diagnostic:
            why = " ".join(recipient.diagnostic.split())
        else:
            why = f"status {recipient.status}"
        entry = f"<{recipient.final_recipient}>: {why}"
        lines.append(
            textwrap.fill(
                entry, width=76, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
            )
        )
        lines.append("")
    return "\n".join(lines)


def _typed_address(value: str, *, original: bool = False) -> str:
    """`rfc822; addr`, or RFC 6533's `utf-8; addr` with `\\x{HEX}` escapes for a non-ASCII address."""
    kind, semicolon, address = value.partition(";")
    if not semicolon:
        kind, address = "rfc822", value
    kind, address = kind.strip(), address.strip().strip("<>")
    if original and kind.lower() not in ("rfc822", "utf-8"):
        return _ascii(f"{kind}; {address}")
    if address.isascii():
        return f"{kind}; {address}"
    escaped = "".join(
        ch if 0x21 <= ord(ch) <= 0x7E and ch not in "+=\\" else f"\\x{{{ord(ch):02X}}}" for ch in address
    )
    return f"utf-8; {escaped}"


def _header_block(message: bytes) -> bytes:
    """The header section, ending with the last header line's CRLF (no blank line)."""
    if message.startswith(b"\r\n"):
        return b""
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def _boundary(reporting_mta: str, original: bytes) -> str:
    while True:
        boundary = f"{secrets.token_hex(12)}/{reporting_mta}"
        if boundary.encode() not in original:
            return boundary


def _ascii(text: str) -> str:
    """One line of ASCII: line breaks become spaces, other bytes a '?'."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "replace").decode("ascii")


def _fold(value: str, used: int) -> str:
    """Fold at spaces to 78 columns (RFC 3464 fields fold as RFC 5322 headers do).

    Continuation lines start with one space, the one the fold replaced, so unfolding (which
    only removes the CRLF) gives back the value exactly.
    """
    lines = textwrap.wrap(
        value,
        width=78,
        initial_indent="x" * used,
        subsequent_indent=" ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    lines[0] = lines[0][used:]
    return "\r\n".join(lines)


def _raw(text: str) -> str:
    """UTF-8 text the compat32 generator writes out as bytes, unencoded (RFC 6532 headers, 8bit bodies)."""
    return text.encode("utf-8").decode("ascii", "surrogateescape")
