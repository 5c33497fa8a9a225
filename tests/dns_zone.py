"""A DNS server on loopback for the tests (dnslib): a zone in master-file text, answered as a
recursive server would answer. Tests never use real DNS; point code at it with MAILPIPE_DNS_SERVER
("127.0.0.1:PORT") or a resolver of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import DNSLogger, DNSServer

SERVFAIL_SUFFIX = "servfail.test."


class ZoneResolver:
    """Answers like a recursive server would: records, CNAME chains followed within the answer,
    NXDOMAIN for unknown names, SERVFAIL for every name under servfail.test."""

    def __init__(self, zone: str) -> None:
        self.records: dict[str, list[RR]] = {}
        for rr in RR.fromZone(zone):
            self.records.setdefault(str(rr.rname).lower(), []).append(rr)
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype))
        if qname.endswith(SERVFAIL_SUFFIX):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        for _hop in range(8):
            records = self.records.get(qname)
            if records is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            cnames = [rr for rr in records if rr.rtype == QTYPE.CNAME]
            if cnames and qtype != "CNAME":
                reply.add_answer(cnames[0])
                qname = str(cnames[0].rdata.label).lower()
                continue
            for rr in records:
                if QTYPE[rr.rtype] == qtype:
                    reply.add_answer(rr)
            return reply
        reply.header.rcode = RCODE.SERVFAIL
        return reply


@contextlib.contextmanager
def serving(zone_text: str, *, tcp: bool = False) -> Iterator[tuple[int, ZoneResolver]]:
    """A server for `zone_text` on 127.0.0.1 (UDP, or TCP with tcp=True): (port, its resolver)."""
    zone = ZoneResolver(zone_text)
    server = DNSServer(
        zone, address="127.0.0.1", port=0, tcp=tcp, logger=DNSLogger("-request,-reply,-truncated,-error")
    )
    server.start_thread()
    try:
        yield server.server.server_address[1], zone
    finally:
        server.stop()
        server.server.server_close()
