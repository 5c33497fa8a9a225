"""Inbound authentication at the end of DATA: run the checks, then decide before the 250.

The decision is DMARC's (RFC 7489 6.6): `reject` is refused in the session (550 5.7.1, so the
sender's server tells its user, and we never bounce to a forged address); `quarantine` is accepted
into the recipients' Junk mailbox. SPF and DKIM failures alone only show in the header: DMARC is
how a domain says that failing mail is not its mail.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass

from mailpipe.mailauth.authenticate import Authenticator
from mailpipe.mailauth.headers import without_our_results
from mailpipe.mailauth.results import Report, header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    message: bytes  # what to spool: our Authentication-Results on top, forged ones gone
    reply: str | None = None  # a refusal to send instead of spooling
    junk: bool = False


def reject_reply(domain: str) -> str:
    return f"550 5.7.1 Message rejected: it fails the DMARC policy of {domain}"


def defer_reply(domain: str) -> str:
    return f"451 4.7.1 Cannot check this message against the DMARC policy of {domain} now, try again later"


class InboundAuthentication:
    def __init__(
        self, authenticator: Authenticator, authserv_id: str, executor: Executor | None = None
    ) -> None:
        self._authenticator = authenticator
        self._authserv_id = authserv_id
        self._executor = executor

    async def decide(
        self, message: bytes, *, client_ip: str, helo: str, mail_from: str, queue: str
    ) -> Decision:
        # A header block can be megabytes of short lines: read it off the event loop.
        cleaned, removed = await asyncio.get_running_loop().run_in_executor(
            self._executor, without_our_results, message, self._authserv_id
        )
        if removed:
            log.info(
                "%s: removed %d Authentication-Results claiming to be %s", queue, removed, self._authserv_id
            )
        try:
            # Checked as received: a forged result is dropped from the copy we keep, but a signer
            # may have covered it.
            report = await self._authenticator.check(
                message, client_ip=client_ip, helo=helo, mail_from=mail_from
            )
        except Exception as exc:
            # A bug of ours must not turn every sender away: deliver, unstamped, and say so.
            log.error("%s: authentication failed internally: %s: %s", queue, type(exc).__name__, exc)
            return Decision(cleaned)
        stamped = header(self._authserv_id, report) + cleaned
        log.info("%s: authentication from %s: %s", queue, client_ip, summary(report))
        dmarc = report.dmarc
        if dmarc is not None and dmarc.result == "temperror" and dmarc.disposition != "none":
            # A DNS failure must not turn genuine mail away for good, nor let a forgery in.
            log.warning(
                "%s: deferred: DMARC %s of %s pending a temporary failure (client %s)",
                queue,
                dmarc.disposition,
                dmarc.from_domain,
                client_ip,
            )
            return Decision(stamped, defer_reply(dmarc.from_domain))
        if dmarc is not None and dmarc.result == "fail":
            if dmarc.disposition == "reject":
                log.warning(
                    "%s: rejected: DMARC p=reject of %s failed (client %s)",
                    queue,
                    dmarc.from_domain,
                    client_ip,
                )
                return Decision(stamped, reject_reply(dmarc.from_domain))
            if dmarc.disposition == "quarantine":
                log.info("%s: to Junk: DMARC quarantine of %s", queue, dmarc.from_domain)
                return Decision(stamped, junk=True)
        return Decision(stamped)


def summary(report: Report) -> str:
    parts = []
    if report.spf_mailfrom:
        parts.append(f"spf={report.spf_mailfrom.result}")
    parts.append("dkim=" + (",".join(r.result for r in report.dkim) or "none"))
    if report.dmarc:
        parts.append(f"dmarc={report.dmarc.result}/{report.dmarc.disposition}")
    if report.arc:
        parts.append(f"arc={report.arc.result}")
    return " ".join(parts)
