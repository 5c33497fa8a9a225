"""Deliver one message to the recipients of one domain over SMTP: RFC 5321's client, played as Postfix does.

`deliver` never raises for a delivery problem; it returns one `RecipientResult` per recipient
(see `transports`): 2xx delivered, 4xx to be retried, 5xx to be bounced.

Hosts and what is final
-----------------------
`transports.route_targets` gives the hosts in order (MX preference, or the one smarthost);
each address of each host is tried in turn, at most `max_addresses` of them (Postfix's
`smtp_mx_address_limit`). A recipient is *final* once a server gave it a 2xx after the data
or any 5xx. A 4xx, or a session that broke before the recipient was final (connection
refused or timed out, a greeting other than 220, EHLO/HELO refused, 4xx to MAIL or DATA, a
dropped connection, a timeout, a 421 anywhere, failed TLS or AUTH), leaves it for the next
host: a backup MX often takes what a busy or greylisting primary defers, and Postfix likewise
defers a soft error only at the last server. A 5xx to the greeting or to HELO says nothing
about the message, so it is made a 4xx (as Postfix's `smtp_skip_5xx_greeting`). Whatever is
left after the last host gets the last temporary status it saw. A 5xx at MAIL FROM, a
message over the server's SIZE, a greeting naming one of `local_hosts` (a mail loop,
`554 5.4.6`) fail every recipient left at once.

One exception to "try the next host": the connection lost, or a timeout, *after the end of
the data was sent*. The server may have taken the message, so no other host gets it (that
could deliver it twice); it is deferred with a text that says so, and the retry may produce
a duplicate, the lesser evil (RFC 1047).

The session
-----------
- EHLO, then HELO if EHLO gets a 5xx (a server without ESMTP: no extension is used then).
- STARTTLS by `tls` (Postfix's security levels). `opportunistic` (`may`): used when offered,
  the certificate not checked unless `tls_context` says so (unauthenticated encryption beats
  plaintext, and MX certificates rarely match their names); a refused STARTTLS goes on in
  plaintext, a failed handshake reconnects to the same address once without STARTTLS.
  `required` (`encrypt`/`verify`): not offered is `451 4.7.4` ("security features not
  supported", Postfix's code), refused or failed is `451 4.7.5` ("cryptographic failure"); by
  default the certificate is verified against the host's name (an MX name, or the smarthost's
  name or IP address). Both are temporary: a broken TLS setup is fixed within the days the
  retry schedule allows, and is no reason to bounce mail. `none`: never STARTTLS.
- AUTH PLAIN (else LOGIN) when `auth` is set, and only inside TLS: credentials are never sent
  in clear. No TLS, no usable mechanism, or rejected credentials are `454 4.7.0`, temporary
  like Postfix's `smtp_sasl_auth_soft_bounce`: a wrong password in our configuration must not
  bounce the users' mail.
- MAIL FROM with `SIZE=` when offered (and `552 5.3.4` at once if the message exceeds the
  advertised limit), `BODY=8BITMIME` when the message has 8-bit bytes and the server offers it
  (when it does not, the message is sent unchanged rather than converted, as Postfix does with
  `disable_mime_output_conversion`), `SMTPUTF8` when an envelope address needs it and the
  server offers it, `RET`/`ENVID` when the server advertises DSN.
- An address with a non-ASCII local part needs SMTPUTF8; when the server does not offer it
  that recipient fails with `553 5.6.7` (the sender: every recipient). A non-ASCII *domain*
  with an ASCII local part is sent in its IDNA (xn--) form instead.
- RCPT TO per recipient, with NOTIFY/ORCPT when the server advertises DSN: 2xx accepted, 4xx
  deferred, 5xx failed; a 552 counts as 452 (RFC 5321 4.5.3.1.10: "too many recipients" in
  old servers). DATA only if one was accepted; its replies apply to all accepted recipients.

Replies and texts
-----------------
A server's reply becomes the recipient's status as it is (code, enhanced code, text; `x.0.0`
when the server sent no enhanced code, as Postfix reports) with `diagnostic_type="smtp"`. Our
own texts ("connect to mx[192.0.2.1]:25: Connection refused") use `X-mailpipe`. Texts are
one line (multi-line replies joined with spaces, control characters dropped) of at most
`MAX_REPLY_TEXT` characters: they end up in DSNs and DynamoDB items.

The message bytes
-----------------
The message is sent exactly as given. Dots are doubled at the start of the message and after
every CR or LF, the terminator added (with a CRLF before it when the message does not end in
one), nothing else. For a CRLF message that is the RFC 5321 4.5.2 transparency, undone by the
receiver, so the bytes arrive unchanged. smtplib's own `sendmail`/`data` would also leave bytes
unchanged (it rewrites line ends of `str` messages only) but doubles dots only after LF; a
bare CR or LF is invalid in SMTP (RFC 5321 2.3.8), and doubling after both means no receiver,
whether it ends lines at CRLF only or at a bare LF or CR too, can see an end of data inside the
message (the "SMTP smuggling" of CVE-2023-51764). The price is only for broken messages: a
receiver that ends lines at CRLF only keeps a dot doubled after a bare LF or CR. Bare LFs
themselves are passed on; Postfix's smtpd since 3.9 normalises or refuses them, so the place to
make messages CRLF is where they enter (the gateway), not here.

smtplib supplies the wire (reply parsing, EHLO features, the TLS upgrade); the dialogue is
driven command by command here because `sendmail` hides what this needs: which stage failed,
per-recipient replies with their parameters, the bytes sent as they are. A Lambda function
runs it synchronously, one destination per call.
"""

from __future__ import annotations

import base64
import functools
import random
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import dns.resolver

from mailpipe.outbound.dsn import xtext_encode
from mailpipe.outbound.mta_sts import MtaSts
from mailpipe.outbound.mx import Target
from mailpipe.outbound.status import DeliveryError, SmtpStatus
from mailpipe.outbound.transport_map import Route
from mailpipe.outbound.transports import (
    LOCAL_DIAGNOSTIC,
    MAX_TEXT,
    Recipient,
    RecipientResult,
    ascii_address,
    one_line,
    route_targets,
)

__all__ = [
    "MAX_REPLY_TEXT",
    "DeliveryOptions",
    "DsnParams",
    "Recipient",
    "RecipientResult",
    "data_payload",
    "deliver",
]

MAX_REPLY_TEXT = MAX_TEXT
MAX_ENVID = 100  # RFC 3461 4.4, in its xtext form
QUIT_TIMEOUT = 5.0
TlsMode = Literal["opportunistic", "required", "none"]
_T = TypeVar("_T")

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_DOTS = re.compile(rb"(?:\A|(?<=[\r\n]))\.")
_BAD_PATH = re.compile(r"[\x00-\x1f\x7f<>]")  # what would break the command line or the <path>


@dataclass(frozen=True)
class DsnParams:
    """The DSN parameters of MAIL FROM (RFC 3461): `ret` FULL or HDRS, `envid` xtext-decoded."""

    ret: str | None = None
    envid: str | None = None

    def __post_init__(self) -> None:
        for name in ("ret", "envid"):
            if getattr(self, name) == "":  # an absent parameter, however the envelope spelled it
                object.__setattr__(self, name, None)
        if self.ret is not None:
            if self.ret.upper() not in ("FULL", "HDRS"):
                raise ValueError(f"RET is FULL or HDRS, not {self.ret!r}")
            object.__setattr__(self, "ret", self.ret.upper())
        if self.envid is not None and not 0 < len(xtext_encode(self.envid)) <= MAX_ENVID:
            raise ValueError(f"ENVID must be 1 to {MAX_ENVID} characters as xtext")


@dataclass(frozen=True)
class DeliveryOptions:
    """How to talk to the servers; every field is explained in the module docstring.

    `timeout` bounds each read and write (RFC 5321 4.5.3.2 suggests minutes; a Lambda function
    has 15 minutes in all), `connect_timeout` each connection. `budget` (seconds) caps the
    whole call: no new connection is started after it and socket waits are cut to what is
    left, so a Lambda function can report before it is stopped. `port_override` replaces the
    port of every host (tests: MX hosts on loopback listen on a high port). `local_hosts` are
    this MTA's own names, for mail loop detection (MX lists and server greetings).
    """

    timeout: float = 120.0
    connect_timeout: float = 30.0
    port_override: int | None = None
    tls: TlsMode = "opportunistic"
    tls_context: ssl.SSLContext | None = None
    auth: tuple[str, str] | None = field(default=None, repr=False)
    dsn: DsnParams | None = None
    local_hosts: tuple[str, ...] = ()
    ip_versions: tuple[int, ...] = (4, 6)
    max_addresses: int = 5
    budget: float | None = None
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.tls not in ("opportunistic", "required", "none"):
            raise ValueError(f"tls is opportunistic, required or none, not {self.tls!r}")
        if self.max_addresses < 1:
            raise ValueError("max_addresses must be at least 1")


def deliver(
    message: bytes,
    mail_from: str,
    recipients: Sequence[Recipient],
    route: Route,
    *,
    resolver: dns.resolver.Resolver | None,
    helo: str,
    options: DeliveryOptions | None = None,
    mta_sts: MtaSts | None = None,
) -> list[RecipientResult]:
    """Deliver `message` from `mail_from` ("" or "<>": the null sender) to `recipients`, all of one domain.

    Returns one result per recipient, in order. Raises ValueError only for a misuse (mixed
    domains, a `ses` route, an invalid HELO name). With `mta_sts`, the recipient domain's
    MTA-STS policy applies when the route is its MX (never to a smarthost; see mta_sts.py).
    """
    options = options or DeliveryOptions()
    if not recipients:
        return []
    if route.transport != "smtp":
        raise ValueError(f"route {route} is not SMTP (ses routes go to ses.deliver_ses)")
    domains = {r.domain.lower().rstrip(".") for r in recipients}
    if len(domains) != 1:
        raise ValueError(f"recipients of one domain only, got {sorted(domains)}")
    if not helo.isascii() or helo.split() != [helo] or _BAD_PATH.search(helo):
        raise ValueError(f"not a HELO name: {helo!r}")
    job = _Delivery(message, mail_from, list(recipients), helo, options)
    if job.pending():
        domain = domains.pop()
        try:
            targets = route_targets(
                route,
                domain,
                resolver,
                rng=options.rng,
                ip_versions=options.ip_versions,
                local_hosts=options.local_hosts,
            )
            if mta_sts is not None and route.nexthop is None and route.mx_lookup:
                targets, job.options = mta_sts.apply(domain, targets, options)
        except DeliveryError as exc:
            job.finish_all(exc.status, None, LOCAL_DIAGNOSTIC)
        else:
            job.run(targets, options.port_override or route.port)
    return job.results()


def data_payload(message: bytes) -> bytes:
    """What goes on the wire after `354`: the message dot-stuffed, then CRLF.CRLF (see the docstring)."""
    stuffed = _DOTS.sub(b"..", message)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class _HostFailed(Exception):
    """This host cannot take the message now: recipients it did not answer try the next one."""

    def __init__(self, status: SmtpStatus, diagnostic_type: str = LOCAL_DIAGNOSTIC) -> None:
        super().__init__(status.reply)
        self.status = status
        self.diagnostic_type = diagnostic_type


class _TlsFailed(_HostFailed):
    """The TLS handshake (or the STARTTLS exchange) broke the connection."""


class _MessageRefused(_HostFailed):
    """The message itself is refused: every recipient left fails permanently."""


class _Delivery:
    """The state of one `deliver` call across hosts: a result per recipient, final or deferred."""

    def __init__(
        self, message: bytes, mail_from: str, recipients: list[Recipient], helo: str, options: DeliveryOptions
    ) -> None:
        self.message = message
        self.recipients = recipients
        self.helo = helo
        self.options = options
        self.sender = _sender(mail_from)
        self.final: list[RecipientResult | None] = [None] * len(recipients)
        self.deferred: list[RecipientResult | None] = [None] * len(recipients)
        self.deadline = None if options.budget is None else time.monotonic() + options.budget
        if _BAD_PATH.search(self.sender):
            self.finish_all(_status(553, "5.1.7", f"Bad sender address syntax: {self.sender!r}"))
        for index, recipient in enumerate(recipients):
            local, at, domain = recipient.address.rpartition("@")
            if not (local and at and domain) or _BAD_PATH.search(recipient.address):
                text = f"Bad recipient address syntax: {recipient.address!r}"
                self.finish(index, _status(553, "5.1.3", text), None, LOCAL_DIAGNOSTIC)

    def pending(self) -> list[int]:
        return [i for i, result in enumerate(self.final) if result is None]

    def finish(
        self, index: int, status: SmtpStatus, remote: str | None, diagnostic: str, remote_dsn: bool = False
    ) -> None:
        address = self.recipients[index].address
        self.final[index] = RecipientResult(address, status, remote, diagnostic, remote_dsn)

    def defer(self, index: int, status: SmtpStatus, remote: str | None, diagnostic: str) -> None:
        self.deferred[index] = RecipientResult(self.recipients[index].address, status, remote, diagnostic)

    def finish_all(
        self, status: SmtpStatus, remote: str | None = None, diagnostic: str = LOCAL_DIAGNOSTIC
    ) -> None:
        for index in self.pending():
            self.finish(index, status, remote, diagnostic)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def run(self, targets: Sequence[Target], port: int) -> None:
        tried = 0
        for target in targets:
            for address in target.addresses:
                left = self.remaining()
                if (
                    not self.pending()
                    or tried >= self.options.max_addresses
                    or (left is not None and left <= 0)
                ):
                    break
                tried += 1
                tls = self.options.tls != "none"
                if self._attempt(target.host, address, port, tls) and self.options.tls == "opportunistic":
                    self._attempt(target.host, address, port, False)
        for index in self.pending():
            deferred = self.deferred[index]
            if deferred is None:
                status = _status(451, "4.4.1", "Delivery not attempted: time budget exhausted")
                self.finish(index, status, None, LOCAL_DIAGNOSTIC)
            else:
                self.final[index] = deferred

    def _attempt(self, host: str, address: str, port: int, starttls: bool) -> bool:
        """One session; True when TLS failed and a plaintext retry may follow."""
        session = _Session(self, host, address, port, starttls)
        try:
            session.run()
        except _MessageRefused as refused:
            self.finish_all(refused.status, session.remote, refused.diagnostic_type)
        except _HostFailed as failed:
            remote = session.remote if session.reached else None
            for index in self.pending():
                if index not in session.answered:
                    self.defer(index, failed.status, remote, failed.diagnostic_type)
            return isinstance(failed, _TlsFailed) and bool(self.pending())
        finally:
            session.close()
        return False

    def results(self) -> list[RecipientResult]:
        done = [result for result in self.final if result is not None]
        assert len(done) == len(self.final), "every recipient has a result"
        return done

    @functools.cached_property
    def eight_bit(self) -> bool:
        return not self.message.isascii()


class _Client(smtplib.SMTP):
    """smtplib's client connected to a chosen address while TLS checks the host's name.

    smtplib resolves the host it is given; we resolved it already (and tried each address in
    turn), so `_get_socket` connects to `address`, and STARTTLS still sends and verifies the
    name `host` (smtplib uses the host given to the constructor).
    """

    def __init__(
        self, host: str, address: str, port: int, *, helo: str, timeout: float, connect_timeout: float
    ) -> None:
        self._address = address
        self._connect_timeout = connect_timeout
        self.greeting = b""
        super().__init__(host, port, local_hostname=helo, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((self._address, port), self._connect_timeout)
        sock.settimeout(timeout)
        return sock

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: object = None
    ) -> tuple[int, bytes]:
        code, reply = super().connect(host, port, source_address)
        self.greeting = reply
        return code, reply


class _Session:
    """One connection to one address: greeting, EHLO, STARTTLS, AUTH, then the mail transaction."""

    def __init__(self, job: _Delivery, host: str, address: str, port: int, starttls: bool) -> None:
        self.job = job
        self.options = job.options
        self.remote = host
        self.name = host if host == address else f"{host}[{address}]"
        self.address = address
        self.port = port
        self.starttls = starttls
        self.client: _Client | None = None
        self.tls = False
        self.broken = False  # the connection is unusable: close it without QUIT
        self.reached = False  # a server answered or hung up: it is the remote MTA of the results
        self.answered: set[int] = set()

    def run(self) -> None:
        self._connect()
        self._hello()
        if self.starttls:
            self._start_tls()
        if self.options.auth is not None:
            self._authenticate(*self.options.auth)
        self._transaction()

    def close(self) -> None:
        client = self.client
        if client is None:
            return
        left = self.job.remaining()
        try:
            if client.sock is not None and not self.broken and (left is None or left > 0):
                client.sock.settimeout(min(QUIT_TIMEOUT, self.options.timeout, left or QUIT_TIMEOUT))
                client.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            client.close()

    # --- the session, step by step

    def _connect(self) -> None:
        timeout = self._timeout("connecting")
        try:
            self.client = _Client(
                self.remote,
                self.address,
                self.port,
                helo=self.job.helo,
                timeout=timeout,
                connect_timeout=min(self.options.connect_timeout, timeout),
            )
        except smtplib.SMTPConnectError as exc:
            self.reached = True
            raise self._refused(exc.smtp_code, exc.smtp_error, "refused to talk to me") from exc
        except smtplib.SMTPServerDisconnected as exc:
            self.reached = True
            raise self._lost(exc, "receiving the initial server greeting") from exc
        except OSError as exc:
            reason = "Connection timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            text = f"connect to {self.name}:{self.port}: {reason}"
            raise _HostFailed(_status(451, "4.4.1", text)) from exc
        self.reached = True
        self._check_loop(self.client.greeting, "greeted me with")

    def _hello(self) -> None:
        client = self._client()
        code, reply = self._call(lambda: client.ehlo(self.job.helo), "sending EHLO")
        if 500 <= code <= 599:
            code, reply = self._call(lambda: client.helo(self.job.helo), "sending HELO")
        if code != 250:
            raise self._refused(code, reply, "refused HELO/EHLO")
        self._check_loop(reply, "replied to HELO/EHLO with")

    def _start_tls(self) -> None:
        client = self._client()
        required = self.options.tls == "required"
        if not client.has_extn("starttls"):
            if required:
                raise _HostFailed(
                    _status(451, "4.7.4", f"TLS is required, but was not offered by host {self.name}")
                )
            return
        context = self.options.tls_context or (_verifying_context() if required else _opportunistic_context())
        self._timeout("sending STARTTLS")
        try:
            client.starttls(context=context)
        except smtplib.SMTPResponseException as exc:
            if not required:
                return  # the server declined; the session goes on in plaintext
            why = f"host {self.name} refused STARTTLS: {_reply_status(exc.smtp_code, exc.smtp_error).reply}"
            raise _HostFailed(_status(451, "4.7.5", why)) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise _TlsFailed(self._lost(exc, "sending STARTTLS").status) from exc
        except OSError as exc:
            self.broken = True
            why = f"Cannot start TLS with host {self.name}: handshake failure ({one_line(str(exc))})"
            raise _TlsFailed(_status(451, "4.7.5", why)) from exc
        self.tls = True
        code, reply = self._call(lambda: client.ehlo(self.job.helo), "sending EHLO after STARTTLS")
        if code != 250:
            raise self._refused(code, reply, "refused EHLO after STARTTLS")

    def _authenticate(self, user: str, password: str) -> None:
        client = self._client()
        if not self.tls:
            why = f"not sending credentials to host {self.name} without TLS"
            raise _HostFailed(_status(454, "4.7.0", why))
        offered = client.esmtp_features.get("auth", "").upper().split()
        if "PLAIN" in offered:
            secret = _b64(f"\0{user}\0{password}")
            code, reply = self._call(lambda: client.docmd("AUTH", f"PLAIN {secret}"), "sending AUTH")
            answers = [secret]
        elif "LOGIN" in offered:
            code, reply = self._call(lambda: client.docmd("AUTH", "LOGIN"), "sending AUTH")
            answers = [_b64(user), _b64(password)]
        else:
            raise _HostFailed(_status(454, "4.7.0", f"host {self.name} offers no AUTH PLAIN or LOGIN"))
        for answer in answers:
            if code != 334:
                break
            code, reply = self._call(lambda answer=answer: client.docmd(answer), "sending AUTH")
        if code in (235, 503):
            return
        if 400 <= code <= 499:
            raise _HostFailed(_reply_status(code, reply), "smtp")
        said = _reply_status(code, reply).reply if 200 <= code <= 599 else f"unexpected reply {code}"
        raise _HostFailed(_status(454, "4.7.0", f"SASL authentication failed; host {self.name} said: {said}"))

    def _transaction(self) -> None:
        client = self._client()
        job = self.job
        features = client.esmtp_features if client.does_esmtp else {}
        utf8 = "smtputf8" in features
        sender = _wire_address(job.sender, utf8)
        if sender is None:
            text = f"SMTPUTF8 is required for sender {job.sender}, but was not offered by host {self.name}"
            raise _MessageRefused(_status(553, "5.6.7", text))
        wanted: list[tuple[int, str]] = []
        for index in job.pending():
            address = job.recipients[index].address
            wire = _wire_address(address, utf8)
            if wire is None:
                text = f"SMTPUTF8 is required for {address}, but was not offered by host {self.name}"
                job.finish(index, _status(553, "5.6.7", text), self.remote, LOCAL_DIAGNOSTIC)
            else:
                wanted.append((index, wire))
        if not wanted:
            return
        dsn = "dsn" in features
        command = f"FROM:<{sender}>" + "".join(
            f" {p}" for p in self._mail_params(features, sender, wanted, dsn)
        )
        code, reply = self._call(lambda: client.docmd("MAIL", command), "sending MAIL FROM")
        if 500 <= code <= 599:
            raise _MessageRefused(_reply_status(code, reply), "smtp")
        if not 200 <= code <= 299:
            raise self._refused(code, reply, "refused MAIL FROM")
        accepted = [index for index, wire in wanted if self._rcpt(index, wire, dsn)]
        if accepted:
            self._data(accepted, dsn)

    def _mail_params(
        self, features: dict[str, str], sender: str, wanted: list[tuple[int, str]], dsn: bool
    ) -> list[str]:
        client = self._client()
        size = len(self.job.message)
        params = []
        if "size" in features:
            limit = _int(features["size"])
            if limit and size > limit:
                text = f"message size {size} exceeds size limit {limit} of host {self.name}"
                raise _MessageRefused(_status(552, "5.3.4", text))
            params.append(f"SIZE={size}")
        if self.job.eight_bit and "8bitmime" in features:
            params.append("BODY=8BITMIME")
        if "smtputf8" in features and not (sender.isascii() and all(w.isascii() for _i, w in wanted)):
            params.append("SMTPUTF8")
            client.command_encoding = "utf-8"
        wished = self.options.dsn
        if dsn and wished is not None:
            if wished.ret:
                params.append(f"RET={wished.ret}")
            if wished.envid:
                params.append(f"ENVID={xtext_encode(wished.envid)}")
        return params

    def _rcpt(self, index: int, wire: str, dsn: bool) -> bool:
        """RCPT TO for one recipient; True when accepted."""
        recipient = self.job.recipients[index]
        params = ""
        if dsn and recipient.notify:
            params += f" NOTIFY={','.join(recipient.notify)}"
        if dsn and recipient.orcpt:
            kind, semicolon, original = recipient.orcpt.partition(";")
            kind, original = (kind.strip(), original.strip()) if semicolon else ("rfc822", kind.strip())
            params += f" ORCPT={kind};{xtext_encode(original)}"
        client = self._client()
        code, reply = self._call(lambda: client.docmd("RCPT", f"TO:<{wire}>{params}"), "sending RCPT TO")
        if 200 <= code <= 299:
            return True
        if not 400 <= code <= 599:
            raise self._refused(code, reply, "sent an unexpected reply to RCPT TO")
        status = _reply_status(code, reply)
        self.answered.add(index)
        if code == 552:
            status = _soften(status)
        if status.permanent:
            self.job.finish(index, status, self.remote, "smtp")
        else:
            self.job.defer(index, status, self.remote, "smtp")
            if code == 421:
                raise _HostFailed(status, "smtp")
        return False

    def _data(self, accepted: list[int], dsn: bool) -> None:
        client = self._client()
        job = self.job
        code, reply = self._call(lambda: client.docmd("DATA"), "sending DATA")
        if code != 354:
            if not 400 <= code <= 599:
                raise self._refused(code, reply, "sent an unexpected reply to DATA")
            self._answer(accepted, _reply_status(code, reply), dsn)
            return
        self._timeout("sending the message")
        try:
            client.send(data_payload(job.message))
        except smtplib.SMTPServerDisconnected as exc:
            raise self._lost(exc, "sending the message") from exc
        try:
            code, reply = self._call(client.getreply, "sending end of data")
        except _HostFailed as lost:
            status = _status(451, "4.4.2", f"{lost.status.text} -- message may be sent more than once")
            for index in accepted:
                job.finish(index, status, self.remote, LOCAL_DIAGNOSTIC)
            return
        if not 200 <= code <= 599:
            raise self._refused(code, reply, "sent an unexpected reply to end of data")
        self._answer(accepted, _reply_status(code, reply), dsn)

    def _answer(self, accepted: list[int], status: SmtpStatus, dsn: bool) -> None:
        """A reply to DATA or to the end of data: it applies to every accepted recipient."""
        for index in accepted:
            self.answered.add(index)
            if status.temporary:
                self.job.defer(index, status, self.remote, "smtp")
            else:
                self.job.finish(index, status, self.remote, "smtp", remote_dsn=dsn and not status.permanent)

    # --- helpers

    def _client(self) -> _Client:
        assert self.client is not None
        return self.client

    def _timeout(self, stage: str) -> float:
        """The timeout for the next wait: `timeout`, cut to what is left of the budget."""
        left = self.job.remaining()
        if left is not None and left <= 0:
            raise _HostFailed(_status(451, "4.4.2", f"time budget exhausted with {self.name} before {stage}"))
        timeout = self.options.timeout if left is None else min(self.options.timeout, left)
        if self.client is not None and self.client.sock is not None:
            self.client.sock.settimeout(timeout)
        return timeout

    def _call(self, step: Callable[[], _T], stage: str) -> _T:
        """Run one command; a dropped connection, a timeout or a garbled reply ends the session."""
        self._timeout(stage)
        try:
            return step()
        except smtplib.SMTPServerDisconnected as exc:
            raise self._lost(exc, stage) from exc
        except smtplib.SMTPResponseException as exc:  # smtplib's "500 Line too long"
            raise _HostFailed(
                _status(451, "4.5.0", f"host {self.name} sent an invalid reply while {stage}")
            ) from exc
        except OSError as exc:
            raise self._lost(exc, stage) from exc

    def _lost(self, exc: BaseException, stage: str) -> _HostFailed:
        if _timed_out(exc):
            return _HostFailed(
                _status(451, "4.4.2", f"conversation with {self.name} timed out while {stage}")
            )
        return _HostFailed(_status(451, "4.4.2", f"lost connection with {self.name} while {stage}"))

    def _refused(self, code: int, reply: bytes, what: str) -> _HostFailed:
        """A host-level refusal: a 4xx reply as it is, a 5xx one made temporary, else a protocol error."""
        if 400 <= code <= 499:
            return _HostFailed(_reply_status(code, reply), "smtp")
        if 500 <= code <= 599:
            status = _reply_status(code, reply)
            return _HostFailed(_soften(status, f"host {self.name} {what}: {status.reply}"))
        shown = _text(reply) or "(nothing)"
        return _HostFailed(_status(451, "4.5.0", f"host {self.name} {what}: unexpected reply {code} {shown}"))

    def _check_loop(self, reply: bytes, how: str) -> None:
        local = {host.strip().rstrip(".").lower() for host in self.options.local_hosts}
        words = reply.decode("utf-8", "replace").split()
        if local and words and words[0].rstrip(".").lower() in local:
            domain = self.job.recipients[0].domain
            text = f"mail for {domain} loops back to myself (host {self.name} {how} my own name)"
            raise _MessageRefused(_status(554, "5.4.6", text))


@functools.cache
def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _status(code: int, enhanced: str, text: str) -> SmtpStatus:
    return SmtpStatus(code, enhanced, one_line(text))


def _reply_status(code: int, reply: bytes) -> SmtpStatus:
    """A server reply as a status: its enhanced code when it sent one of the right class, else `x.0.0`."""
    klass = str(code)[0]
    enhanced = None
    parts = []
    for line in reply.decode("utf-8", "replace").split("\n"):
        found = _ENHANCED.match(line.strip())
        if found and found.group(1) == klass:
            enhanced = enhanced or found.group(0)
            line = line.strip()[found.end() :]
        parts.append(line)
    return SmtpStatus(code, enhanced or f"{klass}.0.0", one_line(" ".join(parts)))


def _soften(status: SmtpStatus, text: str | None = None) -> SmtpStatus:
    """A 5xx made 4xx (same detail), for refusals that must not bounce mail."""
    if not status.permanent:
        return status
    return SmtpStatus(status.code - 100, "4" + status.enhanced[1:], one_line(text or status.text))


def _text(reply: bytes) -> str:
    return one_line(reply.decode("utf-8", "replace"))


def _timed_out(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _sender(mail_from: str) -> str:
    text = mail_from.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def _wire_address(address: str, smtputf8: bool) -> str | None:
    """The address as it can go to a server with or without SMTPUTF8; None when it cannot."""
    return address if smtputf8 else ascii_address(address)


def _int(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
