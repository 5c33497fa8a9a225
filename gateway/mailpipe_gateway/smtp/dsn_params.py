"""The SMTP DSN extension's parameters (RFC 3461): RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT.

aiosmtpd upper-cases every parameter and refuses those it does not know; ENVID and ORCPT
must keep their case (they go back into the DSN as sent), so the protocol takes these four
out of the command first and hands the rest to aiosmtpd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_XTEXT = re.compile(r"^(?:[!-*,-<>-~]|\+[0-9A-F]{2})*$")
_NOTIFY = {"SUCCESS", "FAILURE", "DELAY"}
MAX_ENVID = 100  # RFC 3461 4.4


class DsnSyntaxError(ValueError):
    """A DSN parameter with a bad value (answered with 501 5.5.4)."""


@dataclass(frozen=True)
class MailDsn:
    ret: str | None = None  # FULL or HDRS
    envid: str | None = None  # xtext, as sent


@dataclass(frozen=True)
class RcptDsn:
    notify: tuple[str, ...] | None = None  # ("NEVER",) or some of SUCCESS, FAILURE, DELAY
    orcpt: str | None = None  # "addr-type;xtext", as sent


def split_params(arg: str) -> tuple[str, dict[str, str]]:
    """`arg` without its DSN parameters, and those parameters (names upper-cased, values as sent)."""
    close = arg.find(">")
    head, tail = (arg[: close + 1], arg[close + 1 :]) if close != -1 else (arg, "")
    if close == -1:
        parts = arg.split()
        head, tail = (parts[0] if parts else ""), " ".join(parts[1:])
    kept, dsn = [], {}
    for token in tail.split():
        name, _, value = token.partition("=")
        if name.upper() in ("RET", "ENVID", "NOTIFY", "ORCPT"):
            if name.upper() in dsn:
                raise DsnSyntaxError(f"{name.upper()} given twice")
            dsn[name.upper()] = value
        else:
            kept.append(token)
    return " ".join([head, *kept]), dsn


def mail_dsn(params: dict[str, str]) -> MailDsn:
    if set(params) - {"RET", "ENVID"}:
        raise DsnSyntaxError("NOTIFY and ORCPT belong to RCPT TO")
    ret = params.get("RET")
    if ret is not None and ret.upper() not in ("FULL", "HDRS"):
        raise DsnSyntaxError("RET must be FULL or HDRS")
    envid = params.get("ENVID")
    if envid is not None and (not envid or len(envid) > MAX_ENVID or not _XTEXT.match(envid)):
        raise DsnSyntaxError("ENVID must be 1 to 100 characters of xtext")
    return MailDsn(ret.upper() if ret else None, envid)


def rcpt_dsn(params: dict[str, str]) -> RcptDsn:
    if set(params) - {"NOTIFY", "ORCPT"}:
        raise DsnSyntaxError("RET and ENVID belong to MAIL FROM")
    notify = None
    if "NOTIFY" in params:
        values = tuple(v.upper() for v in params["NOTIFY"].split(","))
        if values != ("NEVER",) and (
            not values or not set(values) <= _NOTIFY or len(set(values)) != len(values)
        ):
            raise DsnSyntaxError("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
        notify = values
    orcpt = params.get("ORCPT")
    if orcpt is not None:
        kind, semicolon, value = orcpt.partition(";")
        if not semicolon or not kind or not value or not _XTEXT.match(value):
            raise DsnSyntaxError("ORCPT must be addr-type;xtext")
    return RcptDsn(notify, orcpt)
