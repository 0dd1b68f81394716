"""Where the load goes: the shop's DNS name resolved through the system's own DNS server.

A shopper reaches the store by its name, ``shop.<zone>``, so ``tierlake load`` does the
same: it asks the system's authoritative DNS server (the Route 53 part, on
``127.0.0.1:<dns.port>``) for the name's A record and for the SRV record
``_http._tcp.shop.<zone>`` that gives the load balancer's port, then sends every request
to that address with ``Host: shop.<zone>``. When no DNS server answers (the system runs
without one, or it is not up yet) the web tier's configured address is used and the
summary says so. Only loopback targets are accepted unless the user allows remote ones:
a load generator pointed at someone else's server by mistake is a denial of service.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.rdatatype
import dns.resolver

from tierlake.errors import TierlakeError

__all__ = ["EntryPoint", "LoadTargetError", "check_target", "resolve_entry_point"]


class LoadTargetError(TierlakeError, ValueError):
    """The load's target is unusable or not allowed (e.g. not on this machine)."""


@dataclass(frozen=True)
class EntryPoint:
    url: str  # where requests are sent: http://ip:port
    host_header: str  # the Host header to send ("" keeps the URL's)
    note: str  # how it was found, for the user


def resolve_entry_point(zone: str, dns_port: int, *, fallback_host: str, fallback_port: int,
                        dns_host: str = "127.0.0.1", timeout: float = 0.5,
                        rnd: random.Random | None = None) -> EntryPoint:
    """``shop.<zone>`` by the system's DNS server (A record; SRV for the port), or the web
    tier's address when no DNS server answers."""
    name = f"shop.{zone.rstrip('.')}"
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_host]
    resolver.port = dns_port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    fallback = f"http://{_host_literal(fallback_host)}:{fallback_port}"
    try:
        addresses = [r.to_text() for r in resolver.resolve(name, "A")]
    except (dns.exception.DNSException, OSError) as exc:
        return EntryPoint(fallback, "", f"no answer for {name} from the DNS server at "
                          f"{dns_host}:{dns_port} ({type(exc).__name__}); using the web "
                          f"tier's address {fallback}")
    # Multivalue or weighted answers: a client takes one of them, as a browser would.
    address = (rnd or random.Random()).choice(addresses)
    try:
        srv = resolver.resolve(f"_http._tcp.{name}", dns.rdatatype.SRV)
        port = int(sorted(srv, key=lambda r: (r.priority, -r.weight))[0].port)
        how = f"{name} -> {address} (A), port {port} (SRV _http._tcp.{name})"
    except (dns.exception.DNSException, OSError):
        port = fallback_port
        how = f"{name} -> {address} (A); no SRV record, so the web port {port}"
    return EntryPoint(f"http://{_host_literal(address)}:{port}", name, how)


def check_target(url: str, *, allow_remote: bool) -> None:
    """Refuse a URL that is not http(s) on a loopback address unless ``allow_remote``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTargetError(f"--host {url!r} is not an http:// or https:// URL with a host; "
                              "give one like http://127.0.0.1:8000")
    if allow_remote or _loopback(parts.hostname):
        return
    raise LoadTargetError(
        f"{parts.hostname} is not a loopback address: tierlake load only drives this machine "
        "(127.0.0.0/8, ::1, localhost). Pass --allow-remote if you own that server and mean it.")


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: where it points is not ours to promise


def _host_literal(host: str) -> str:
    return f"[{host}]" if ":" in host else host
