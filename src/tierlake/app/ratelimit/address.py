"""The shopper's network address as the app tier can trust it.

The app tier's TCP peer is the web tier (or, later, a load balancer), so the shopper's address
comes from ``X-Forwarded-For``, which each proxy extends with the peer it saw. Only proxies
listed in ``auth.trusted_proxies`` are believed: reading the header from the right, the first
address that is not a trusted proxy is the client (what a client wrote itself further left is
ignored). A request from an untrusted peer is keyed by that peer, whatever it claims.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies)


def _is_trusted(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: Request, proxies: Iterable[str]) -> str:
    """The address to count a shopper's attempts under."""
    networks = trusted_networks(tuple(proxies))
    peer = request.client.host if request.client else ""
    if not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for value in request.headers.getlist("x-forwarded-for")
            for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop[:100]
    return hops[0][:100] if hops else peer
