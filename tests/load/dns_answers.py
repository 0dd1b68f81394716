"""A small authoritative DNS server for tests: real UDP on loopback, dnspython's wire format,
answers from a dict ("name. TYPE" -> values), NXDOMAIN otherwise."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@contextmanager
def dns_server() -> Iterator[tuple[int, dict[str, list[str]]]]:
    records: dict[str, list[str]] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            answer = dns.message.make_response(query)
            question = query.question[0]
            key = f"{question.name.to_text().lower()} {dns.rdatatype.to_text(question.rdtype)}"
            if key in records:
                answer.answer.append(dns.rrset.from_text_list(
                    question.name, 5, "IN", question.rdtype, records[key]))
            else:
                answer.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(answer.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], records
    finally:
        stop.set()
        thread.join(5)
        sock.close()
