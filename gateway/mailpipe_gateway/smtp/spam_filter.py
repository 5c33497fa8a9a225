"""The spam filter at the end of DATA: ask rspamd, then refuse, mark as junk, or let the message by.

rspamd's action decides (https://rspamd.com/doc/faq.html#what-are-rspamd-actions):

- `reject` (and `discard`, which mailpipe never does silently): `550 5.7.1` with rspamd's message;
- `soft reject`: `451 4.7.1` (what rspamd's greylist and rate-limit modules answer when they delay);
- `add header`, `rewrite subject`, `quarantine`: X-Spam headers prepended, the rest of the message
  kept byte for byte (the subject is not rewritten), and delivered to the recipients' Junk mailbox;
- `greylist` and `no action`: accepted. A bare `greylist` is rspamd's score band for "greylist this";
  its greylist module (which needs Redis) either turns it into `soft reject` or, once the sender came
  back, into `no action`. Without that module nothing would ever let the message through, so, like
  rspamd's own milter, mailpipe accepts it rather than defer it until the sender gives up.

Authenticated submission is scanned too (with rspamd's `User` header, so rspamd skips the checks
that only make sense for strangers): a `reject` is refused with `550 5.7.1` so that a stolen
account cannot send spam through us, a `soft reject` deferred; but no X-Spam headers are added to a
user's own mail and it is not sent to Junk (rspamd's milter_headers skips authenticated users the
same way).

When rspamd cannot be asked (down, slow, answering nonsense), the message is accepted with a header
saying it was not scanned, and a log line says why: a 250 never waits on the filter's health.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol

from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session

from mailpipe_gateway.smtp.rspamd_client import RspamdClient, RspamdUnavailable, ScanResult

log = logging.getLogger(__name__)

HEADER_SPAM = "X-Spam"
HEADER_SCORE = "X-Spam-Score"
HEADER_RESULT = "X-Spamd-Result"
HEADER_NOT_SCANNED = "X-Mailpipe-Spam-Check"

REFUSE = frozenset({"reject", "discard"})
DEFER = frozenset({"soft reject"})
JUNK = frozenset({"add header", "rewrite subject", "quarantine"})

MAX_SYMBOLS = 100  # in X-Spamd-Result
MAX_OPTION = 64  # characters of one symbol option
MAX_MESSAGE = 200  # characters of rspamd's message in our reply
_STATUS_PREFIX = re.compile(r"^\s*(?:[245]\d\d[ -])?(?:[245]\.\d{1,3}\.\d{1,3}\s+)?")


@dataclass(frozen=True)
class SpamVerdict:
    """What the filter says: refuse with `reply`, or accept with `headers` prepended (to Junk if `junk`)."""

    reply: str | None = None
    headers: bytes = b""
    junk: bool = False


class SpamFilter:
    def __init__(self, client: RspamdClient, hostname: str) -> None:
        self._client = client
        self._hostname = hostname

    async def check(
        self, message: bytes, session: Session, envelope: SMTPEnvelope, queue_id: str
    ) -> SpamVerdict:
        user = session.auth_data if isinstance(session.auth_data, str) else None
        client_ip = _peer(session)
        try:
            result = await self._client.check(message, self._request_headers(session, envelope, queue_id))
        except RspamdUnavailable as exc:
            log.warning("%s from %s not scanned: rspamd unavailable: %s", queue_id, client_ip, exc)
            if user is not None:
                return SpamVerdict()  # a user's own mail carries nothing about our filter's health
            return SpamVerdict(headers=_header(HEADER_NOT_SCANNED, "not scanned; rspamd unavailable"))
        log.info(
            "%s from %s: rspamd %s, score %.2f / %.2f%s",
            queue_id,
            client_ip,
            result.action,
            result.score,
            result.required_score,
            f", user {user}" if user else "",
        )
        return verdict(result, authenticated=user is not None)

    def _request_headers(
        self, session: Session, envelope: SMTPEnvelope, queue_id: str
    ) -> list[tuple[str, str]]:
        headers = [
            ("IP", _peer(session)),
            ("Helo", session.host_name or "unknown"),
            ("From", envelope.mail_from or "<>"),
            *[("Rcpt", rcpt) for rcpt in envelope.rcpt_tos],
            ("Queue-Id", queue_id),
            ("MTA-Name", self._hostname),
        ]
        # No Hostname: the gateway looks up no reverse DNS; without it rspamd does the lookup itself.
        if isinstance(session.auth_data, str):
            headers.append(("User", session.auth_data))
        return headers


class SpamCheck(Protocol):
    async def check(
        self, message: bytes, session: Session, envelope: SMTPEnvelope, queue_id: str
    ) -> SpamVerdict: ...


class _NoFilter:
    """No spam filter configured: every message passes, untouched."""

    async def check(
        self, message: bytes, session: Session, envelope: SMTPEnvelope, queue_id: str
    ) -> SpamVerdict:
        return SpamVerdict()


NO_FILTER: SpamCheck = _NoFilter()


def verdict(result: ScanResult, *, authenticated: bool) -> SpamVerdict:
    action = result.action.lower()
    if action in REFUSE:
        return SpamVerdict(reply=f"550 5.7.1 {_message(result, 'Message rejected as spam')}")
    if action in DEFER:
        return SpamVerdict(reply=f"451 4.7.1 {_message(result, 'Try again later')}")
    if action in JUNK and not authenticated:
        return SpamVerdict(headers=spam_headers(result), junk=True)
    return SpamVerdict()


def spam_headers(result: ScanResult) -> bytes:
    symbols = sorted(result.symbols, key=lambda s: s.name)[:MAX_SYMBOLS]
    parts = [f"default: True [{result.score:.2f} / {result.required_score:.2f}]"]
    for symbol in symbols:
        options = ",".join(_field(option)[:MAX_OPTION] for option in symbol.options)
        parts.append(f"{_field(symbol.name)}({symbol.score:.2f})[{options}]")
    folded = ";\r\n\t".join(parts)  # one symbol a line, as rspamd's own milter_headers folds it
    return (
        _header(HEADER_SPAM, "Yes")
        + _header(HEADER_SCORE, f"{result.score:.2f}")
        + _header(HEADER_RESULT, folded)
    )


def _header(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode()


def _message(result: ScanResult, default: str) -> str:
    """rspamd's message for the reply, without a status code of its own, as printable ASCII."""
    text = _STATUS_PREFIX.sub("", _ascii(result.smtp_message or ""), count=1).strip()
    return text[:MAX_MESSAGE] or default


def _ascii(text: str) -> str:
    # rspamd's texts quote the message (URLs, addresses): nothing may break our header or reply.
    return "".join(char if " " <= char <= "~" else "?" for char in text)


def _field(text: str) -> str:
    """`text` as a piece of X-Spamd-Result: printable ASCII without its separators."""
    return "".join("?" if char in ";[]," else char for char in _ascii(text))


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")
