"""TXT and address lookups for the authentication checks, with DNS failures sorted as RFC 7208 and
RFC 7489 need them: a name with no records is an empty answer, a timeout or SERVFAIL is TempError."""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdata
import dns.resolver


class TempError(Exception):
    """The DNS could not answer now (timeout, SERVFAIL): a temporary result, never a hang."""


class Lookup:
    """Counts nothing and decides nothing: answers or TempError (callers count and decide)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver

    async def records(self, name: str, rdtype: str) -> list[dns.rdata.Rdata] | None:
        """The records, or None when the name does not exist (NXDOMAIN); [] when it has none of rdtype."""
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoNameservers as exc:  # every server said SERVFAIL or refused
            raise TempError(f"{name}/{rdtype}: SERVFAIL") from exc
        except dns.exception.Timeout as exc:
            raise TempError(f"{name}/{rdtype}: timed out") from exc
        except (dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel):
            return None  # a name that cannot exist has no records
        except dns.exception.DNSException as exc:
            raise TempError(f"{name}/{rdtype}: {type(exc).__name__}") from exc
        return list(answer.rrset) if answer.rrset is not None else []

    async def txt(self, name: str) -> list[bytes] | None:
        """Each TXT record with its strings joined (RFC 7208 3.3: no spaces between them)."""
        found = await self.records(name, "TXT")
        if found is None:
            return None
        return [b"".join(r.strings) for r in found]
