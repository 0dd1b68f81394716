"""The authoritative DNS server: UDP and TCP on one port, answering from a hosted zone.

Wire format is dnspython's. Kept from Route 53's name servers: the AA flag on every answer
from the zone, no recursion (RA clear; names outside the zone are REFUSED), NOTIMP for
opcodes other than QUERY, REFUSED for zone transfers (Route 53 does not offer them) and for
classes other than IN, FORMERR for packets that do not parse or ask other than one
question, EDNS(0) answered with a 1232-byte payload and BADVERS for a higher version. UDP
answers larger than 512 bytes (or the client's EDNS payload size) are truncated at a
record-set boundary with TC set, so the client asks again over TCP (RFC 1035, RFC 7766);
over TCP a connection carries any number of length-prefixed queries until it is idle for
``tcp_idle_seconds``. Names are case-insensitive and the question's case is echoed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import structlog

from tierlake.edge.dns.errors import DnsPortError
from tierlake.edge.dns.zone import Answer, HostedZone

log = structlog.get_logger(__name__)

UDP_DEFAULT_PAYLOAD = 512  # RFC 1035: without EDNS a UDP answer holds at most 512 bytes
OUR_EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: no fragmentation
TCP_MAX = 65535


@dataclass
class QueryCounters:
    """Queries answered, by question type, response code and transport, for the metrics."""

    by_type: Counter[str] = field(default_factory=Counter)
    by_rcode: Counter[str] = field(default_factory=Counter)
    by_transport: Counter[str] = field(default_factory=Counter)
    truncated: int = 0  # UDP answers sent with TC set
    dropped: int = 0  # packets too short to answer, or responses sent to us

    def snapshot(self) -> dict[str, object]:
        return {"by_type": dict(self.by_type), "by_rcode": dict(self.by_rcode),
                "by_transport": dict(self.by_transport), "truncated": self.truncated,
                "dropped": self.dropped}


def _bare_response(wire: bytes, rcode: int) -> bytes:
    """A header-only response to a query we could not or would not parse: its id, QR, its
    opcode and RD, and ``rcode``."""
    qid, qflags = struct.unpack("!HH", wire[:4])
    flags = dns.flags.QR | (qflags & (0x7800 | dns.flags.RD)) | (rcode & 0xF)
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


class DnsServer:
    """Route 53's name server for one hosted zone, on ``host``:``port`` (UDP and TCP).

    ``port=0`` binds a free port, the same for UDP and TCP; read it from :attr:`port`
    after :meth:`start`.
    """

    def __init__(self, host: str, port: int, zone: HostedZone, *,
                 tcp_idle_seconds: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.zone = zone
        self.tcp_idle_seconds = tcp_idle_seconds
        self.counters = QueryCounters()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._debug = True  # whether the query log is on; read again at start()

    async def start(self) -> None:
        """Bind UDP and TCP on one port (with port 0, a port free for both)."""
        loop = asyncio.get_running_loop()
        # The query log is at DEBUG: asked once, not per query, as it is the hot path.
        self._debug = log.is_enabled_for(logging.DEBUG)
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(self.host, self.port))
            except OSError as exc:
                raise self._port_error("UDP", self.port, exc) from exc
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port,
                                                       reuse_address=True)
            except OSError as exc:
                transport.close()
                if attempt == attempts - 1:
                    raise self._port_error("TCP", port, exc) from exc
                continue  # port 0: UDP's free port is taken for TCP; draw another
            self._udp = transport
            self.port = port
            break
        log.info("dns.started", host=self.host, port=self.port,
                 zone=self.zone.origin.to_text())

    def status(self) -> dict[str, object]:
        """What an operator view shows: where the server listens, the zone's record sets
        with their health, the health checks' reports, and the query counters."""
        checks = self.zone.health_checks
        return {
            "zone": self.zone.origin.to_text(),
            "listen": f"{self.host}:{self.port}",
            "record_sets": self.zone.describe(),
            "health_checks": ([c.status_report() for c in checks.list_health_checks()]
                              if checks is not None else []),
            "queries": self.counters.snapshot(),
        }

    def _port_error(self, protocol: str, port: int, exc: OSError) -> DnsPortError:
        return DnsPortError(
            f"the DNS server cannot listen on {self.host}:{port}/{protocol.lower()} "
            f"({exc.strerror or exc}); free the port or set another with the dns.port "
            "setting (TIERLAKE_DNS__PORT; 0 picks a free port)")

    async def stop(self) -> None:
        """Stop listening, close open TCP connections, and wait for them."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None
        log.info("dns.stopped", port=self.port)

    # -- transports ------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            while True:
                async with asyncio.timeout(self.tcp_idle_seconds):
                    try:
                        (length,) = struct.unpack("!H", await reader.readexactly(2))
                        wire = await reader.readexactly(length)
                    except asyncio.IncompleteReadError:
                        return
                answer = self.respond(wire, transport="tcp", client=peer)
                if answer is None:
                    return  # nothing sensible to say: RFC 7766 lets the server close
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    # -- answering -------------------------------------------------------------------

    def respond(self, wire: bytes, *, transport: str,
                client: tuple[str, int] | None = None) -> bytes | None:
        """The response to one query's wire bytes; None when there is nothing to answer
        (too short to hold a header, or itself a response)."""
        if len(wire) < 12 or struct.unpack("!H", wire[2:4])[0] & dns.flags.QR:
            self.counters.dropped += 1
            return None
        opcode = dns.opcode.from_flags(struct.unpack("!H", wire[2:4])[0])
        if opcode != dns.opcode.QUERY:
            return self._count(transport, "-", dns.rcode.NOTIMP,
                               _bare_response(wire, dns.rcode.NOTIMP))
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return self._count(transport, "-", dns.rcode.FORMERR,
                               _bare_response(wire, dns.rcode.FORMERR))
        if len(query.question) != 1:
            return self._count(transport, "-", dns.rcode.FORMERR,
                               _bare_response(wire, dns.rcode.FORMERR))
        question = query.question[0]
        qtype = dns.rdatatype.to_text(question.rdtype)
        response = dns.message.make_response(query, our_payload=OUR_EDNS_PAYLOAD)
        limit = TCP_MAX
        if transport == "udp":  # RFC 6891: the smaller of the client's size and ours
            asked = query.payload if query.edns >= 0 else 0
            limit = max(UDP_DEFAULT_PAYLOAD, min(asked, OUR_EDNS_PAYLOAD))
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        elif question.rdclass != dns.rdataclass.IN or question.rdtype in (
                dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            response.set_rcode(dns.rcode.REFUSED)
        else:
            try:
                result = self.zone.resolve(question.name, question.rdtype)
            except Exception:  # one bad answer must not stop the server; logged with its traceback
                log.exception("dns.resolve_failed", qname=question.name.to_text(), qtype=qtype)
                result = Answer(dns.rcode.SERVFAIL, authoritative=False)
            response.set_rcode(result.rcode)
            if result.authoritative:
                response.flags |= dns.flags.AA
            response.answer = result.answer
            response.authority = result.authority
            response.additional = result.additional
        wire_out = response.to_wire(max_size=limit, prefer_truncation=True)
        truncated = bool(struct.unpack("!H", wire_out[2:4])[0] & dns.flags.TC)
        if truncated:
            self.counters.truncated += 1
        rcode = response.rcode()
        if self._debug:
            log.debug("dns.query", transport=transport, client=client,
                      qname=question.name.to_text(), qtype=qtype,
                      rcode=dns.rcode.to_text(rcode), answers=sum(len(r) for r in response.answer),
                      truncated=truncated, size=len(wire_out))
        return self._count(transport, qtype, rcode, wire_out)

    def _count(self, transport: str, qtype: str, rcode: dns.rcode.Rcode, wire: bytes) -> bytes:
        self.counters.by_type[qtype] += 1
        self.counters.by_rcode[dns.rcode.to_text(rcode)] += 1
        self.counters.by_transport[transport] += 1
        return wire


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        answer = self.server.respond(data, transport="udp",
                                     client=(str(addr[0]), int(addr[1])))
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)
