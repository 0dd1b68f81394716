"""Route 53, as an authoritative DNS server for the store's hosted zone.

``records`` holds the record sets in ``ChangeResourceRecordSets``' vocabulary and their
validation; ``routing`` the routing policies (simple, weighted, failover, multivalue
answer), one small class each; ``zone`` the hosted zone (change batches, answers);
``health`` the health checks (``CreateHealthCheck``); ``server`` the DNS server on UDP and
TCP. Only loopback is served and the zone is a name under ``.test``: nothing leaks to the
internet.
"""

from tierlake.edge.dns.errors import (
    DnsPortError,
    InvalidChangeBatchError,
    InvalidInputError,
    NoSuchHealthCheckError,
    Route53Error,
)
from tierlake.edge.dns.health import HealthCheck, HealthCheckConfig, HealthChecks
from tierlake.edge.dns.records import AliasTarget, Change, ResourceRecordSet
from tierlake.edge.dns.server import DnsServer, QueryCounters
from tierlake.edge.dns.zone import ChangeInfo, HostedZone

__all__ = [
    "AliasTarget",
    "Change",
    "ChangeInfo",
    "DnsPortError",
    "DnsServer",
    "HealthCheck",
    "HealthCheckConfig",
    "HealthChecks",
    "HostedZone",
    "InvalidChangeBatchError",
    "InvalidInputError",
    "NoSuchHealthCheckError",
    "QueryCounters",
    "ResourceRecordSet",
    "Route53Error",
]
