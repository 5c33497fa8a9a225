"""A DNS server on loopback for the tests (dnslib): a zone in master-file text, answered as a
recursive server would answer. Tests never use real DNS; point code at it with MAILPIPE_DNS_SERVER
("127.0.0.1:PORT") or a resolver of their own."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

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


class ClassicUDPHandler(DNSHandler):
    """Truncates UDP answers over 512 bytes (RFC 1035 without EDNS), so clients must retry on TCP."""

    def get_reply(self, data: bytes) -> bytes:
        reply = super().get_reply(data)
        if self.protocol == "udp" and len(reply) > 512:
            # dnslib's own truncate() drops the question, which resolvers rightly refuse.
            request = DNSRecord.parse(data)
            truncated = request.reply()
            truncated.header.tc = 1
            return truncated.pack()
        return reply


def txt_strings(text: str) -> str:
    """A TXT value in zone-file form, cut into the 255-byte strings DNS carries (RFC 7208 3.3)."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


@contextlib.contextmanager
def serving(zone_text: str, *, tcp: bool = False, both: bool = False) -> Iterator[tuple[int, ZoneResolver]]:
    """A server for `zone_text` on 127.0.0.1 (UDP, or TCP with tcp=True; with both=True UDP that
    truncates past 512 bytes and TCP on the same port, as a real server): (port, its resolver)."""
    zone = ZoneResolver(zone_text)
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
    handler = ClassicUDPHandler if both else DNSHandler
    servers = _bound(zone, quiet, handler, tcp=tcp, both=both)
    port = servers[0].server.server_address[1]
    for each in servers:
        each.start_thread()
    try:
        yield port, zone
    finally:
        for each in servers:
            each.stop()
            each.server.server_close()


def _bound(zone: ZoneResolver, quiet: DNSLogger, handler: type, *, tcp: bool, both: bool) -> list[DNSServer]:
    """The server(s), bound: with both=True the UDP port the system chose may already be taken for
    TCP by another process (another test run on the machine), so a taken pair is let go and another
    port tried."""
    for _attempt in range(50):
        server = DNSServer(zone, address="127.0.0.1", port=0, tcp=tcp, logger=quiet, handler=handler)
        if not both:
            return [server]
        port = server.server.server_address[1]
        try:
            return [server, DNSServer(zone, address="127.0.0.1", port=port, tcp=True, logger=quiet)]
        except OSError as exc:
            server.server.server_close()
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP on 127.0.0.1")


@contextlib.contextmanager
def silent() -> Iterator[int]:
    """A "DNS server" that reads nothing and answers nothing: every lookup runs out of time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
