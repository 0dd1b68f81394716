"""Record sets in Route 53's ``ChangeResourceRecordSets`` vocabulary.

A :class:`ResourceRecordSet` carries Route 53's fields (``Name``, ``Type``, ``TTL``,
``ResourceRecords``, ``SetIdentifier``, ``Weight``, ``Failover``, ``MultiValueAnswer``,
``HealthCheckId``, ``AliasTarget``); its routing policy follows from which of them is set,
as in Route 53 (there is no "policy" field). :meth:`ResourceRecordSet.problems` checks one
record set on its own, with Route 53's rules; the hosted zone checks the rules between
record sets. See
https://docs.aws.amazon.com/Route53/latest/APIReference/API_ResourceRecordSet.html and
https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/resource-record-sets-values.html.

Values are written as in the console and the API: one value per string, in zone-file
syntax (``"10 mail.tierlake.test"`` for MX, ``"0 1 8080 shop.tierlake.test"`` for SRV,
``"\\"text\\""`` for TXT); names in values are always fully qualified.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

# Route 53's supported record types (DS, HTTPS, SSHFP, SVCB, TLSA left out).
SUPPORTED_TYPES = ("A", "AAAA", "CAA", "CNAME", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF",
                   "SRV", "TXT")
RoutingPolicyName = Literal["simple", "weighted", "failover", "multivalue"]
MAX_WEIGHT = 255  # Route 53: Weight is 0-255


def to_name(text: str) -> dns.name.Name:
    """A domain name as Route 53 stores it: absolute and lower case."""
    text = text.strip()
    if not text:
        raise ValueError("a record name cannot be empty")
    return dns.name.from_text(text.lower(), origin=dns.name.root)


@dataclass(frozen=True)
class AliasTarget:
    """Route 53's ``AliasTarget``: the record answers with another resource's addresses.

    ``addresses`` are the resource's own addresses (a load balancer's nodes, one per
    availability zone), and ``target_health`` says whether it has a healthy target. It is
    called on queries, in the server's loop, so it only reads state and never waits.
    Without ``addresses``, ``dns_name`` must be a record of the same hosted zone, whose
    answer the alias returns (Route 53's alias to another record in the hosted zone). With
    ``evaluate_target_health`` the record counts as healthy only while its target is: a
    load balancer while ``target_health()`` says so, a record of the zone while at least
    one record of that name and type is healthy
    (https://docs.aws.amazon.com/Route53/latest/APIReference/API_AliasTarget.html).
    """

    dns_name: str
    evaluate_target_health: bool = False
    addresses: tuple[str, ...] = ()
    target_health: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(self.addresses))


@dataclass(frozen=True)
class ResourceRecordSet:
    """One record set; ``(name, type, set_identifier)`` identifies it within a zone."""

    name: str
    type: str
    ttl: int | None = None
    resource_records: tuple[str, ...] = ()
    set_identifier: str | None = None
    weight: int | None = None
    failover: Literal["PRIMARY", "SECONDARY"] | None = None
    multi_value_answer: bool = False
    health_check_id: str | None = None
    alias_target: AliasTarget | None = None

    def __post_init__(self) -> None:
        if isinstance(self.resource_records, str):
            raise TypeError("resource_records is a sequence of values, e.g. ('127.0.0.1',)")
        object.__setattr__(self, "type", self.type.upper())
        object.__setattr__(self, "resource_records", tuple(self.resource_records))

    @functools.cached_property
    def dns_name(self) -> dns.name.Name:
        return to_name(self.name)

    @property
    def key(self) -> tuple[dns.name.Name, str, str | None]:
        return (self.dns_name, self.type, self.set_identifier)

    @property
    def label(self) -> str:
        """How Route 53's error messages name a record set."""
        ident = f", identifier='{self.set_identifier}'" if self.set_identifier else ""
        return f"[name='{self.name.lower().rstrip('.')}.', type='{self.type}'{ident}]"

    @property
    def routing_policy(self) -> RoutingPolicyName:
        if self.weight is not None:
            return "weighted"
        if self.failover is not None:
            return "failover"
        if self.multi_value_answer:
            return "multivalue"
        return "simple"

    @functools.cached_property
    def rdatas(self) -> tuple[dns.rdata.Rdata, ...]:
        """The parsed values (empty for an alias). Raises on a value that does not parse;
        :meth:`problems` reports that first."""
        rdtype = dns.rdatatype.from_text(self.type)
        return tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype, value,
                                         origin=dns.name.root, relativize=False)
                     for value in self.resource_records)

    @functools.cached_property
    def alias_rdatas(self) -> tuple[dns.rdata.Rdata, ...]:
        """An alias's load-balancer addresses as A or AAAA values (parsed once)."""
        if self.alias_target is None:
            return ()
        return tuple(dns.rdata.from_text(dns.rdataclass.IN, self.type, address)
                     for address in self.alias_target.addresses)

    def problems(self) -> list[str]:
        """Everything wrong with this record set on its own, in Route 53's terms."""
        out: list[str] = []
        try:
            self.dns_name  # noqa: B018 - parsing the name is the check
        except (ValueError, dns.exception.DNSException) as exc:
            return [f"Invalid record name '{self.name}': {exc}"]
        if self.type not in SUPPORTED_TYPES:
            return [f"{self.label}: unsupported type; use one of {', '.join(SUPPORTED_TYPES)}"]
        out += self._policy_problems()
        if self.alias_target is not None:
            out += self._alias_problems(self.alias_target)
        else:
            out += self._value_problems()
        return out

    def _policy_problems(self) -> list[str]:
        out: list[str] = []
        chosen = [p for p, on in (("Weight", self.weight is not None),
                                  ("Failover", self.failover is not None),
                                  ("MultiValueAnswer", self.multi_value_answer)) if on]
        if len(chosen) > 1:
            out.append(f"{self.label}: a record set has one routing policy, not "
                       f"{' and '.join(chosen)}")
        if chosen and not self.set_identifier:
            out.append(f"{self.label}: {chosen[0]} record sets need a SetIdentifier, unique "
                       "among the record sets of this name and type")
        if not chosen and self.set_identifier:
            out.append(f"{self.label}: a SetIdentifier is only for weighted, failover and "
                       "multivalue answer record sets; set Weight, Failover or "
                       "MultiValueAnswer, or leave SetIdentifier out")
        if self.set_identifier is not None and not 1 <= len(self.set_identifier) <= 128:
            out.append(f"{self.label}: SetIdentifier must be 1 to 128 characters")
        if self.weight is not None and not 0 <= self.weight <= MAX_WEIGHT:
            out.append(f"{self.label}: Weight {self.weight} is out of range; use 0 to "
                       f"{MAX_WEIGHT}")
        if self.failover is not None and self.failover not in ("PRIMARY", "SECONDARY"):
            out.append(f"{self.label}: Failover must be PRIMARY or SECONDARY, not "
                       f"{self.failover!r}")
        if self.health_check_id is not None and not chosen:
            out.append(f"{self.label}: a simple record set cannot have a health check; use "
                       "multivalue answer (one record set per value) to leave out unhealthy "
                       "values")
        if self.multi_value_answer and self.type in ("CNAME", "NS"):
            out.append(f"{self.label}: multivalue answer record sets cannot be {self.type}")
        return out

    def _alias_problems(self, alias: AliasTarget) -> list[str]:
        out: list[str] = []
        if self.ttl is not None or self.resource_records:
            out.append(f"{self.label}: an alias record set has no TTL and no "
                       "ResourceRecords (it answers with its target's)")
        if self.multi_value_answer:
            out.append(f"{self.label}: multivalue answer record sets cannot be aliases")
        if self.type not in ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NAPTR", "PTR",
                             "SPF"):
            out.append(f"{self.label}: an alias cannot be of type {self.type}")
        try:
            to_name(alias.dns_name)
        except (ValueError, dns.exception.DNSException) as exc:
            out.append(f"{self.label}: AliasTarget DNSName '{alias.dns_name}' is invalid: "
                       f"{exc}")
        if alias.addresses:
            want = {"A": ipaddress.IPv4Address, "AAAA": ipaddress.IPv6Address}.get(self.type)
            if want is None:
                out.append(f"{self.label}: an alias to a load balancer's addresses is of "
                           "type A or AAAA")
            for value in alias.addresses:
                try:
                    parsed = ipaddress.ip_address(value)
                except ValueError:
                    parsed = None
                if want is not None and not isinstance(parsed, want):
                    out.append(f"{self.label}: alias target address '{value}' is not an "
                               f"{'IPv4' if self.type == 'A' else 'IPv6'} address")
        if alias.evaluate_target_health and alias.addresses and alias.target_health is None:
            out.append(f"{self.label}: EvaluateTargetHealth needs target_health, the callable "
                       "that says whether the load balancer has a healthy target")
        return out

    def _value_problems(self) -> list[str]:
        out: list[str] = []
        if self.ttl is None:
            out.append(f"{self.label}: TTL is required (seconds, 0 to 2147483647)")
        elif not 0 <= self.ttl <= 2**31 - 1:
            out.append(f"{self.label}: TTL {self.ttl} is out of range; use 0 to 2147483647")
        if not self.resource_records:
            out.append(f"{self.label}: ResourceRecords needs at least one value")
        if self.type == "CNAME" and len(self.resource_records) > 1:
            out.append(f"{self.label}: a CNAME has exactly one value")
        if self.multi_value_answer and len(self.resource_records) > 1:
            out.append(f"{self.label}: each multivalue answer record set has one value; "
                       "create one record set per value")
        for value in self.resource_records:
            try:
                dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(self.type),
                                    value, origin=dns.name.root,
                                    relativize=False)
            except (dns.exception.DNSException, ValueError) as exc:
                out.append(f"{self.label}: value '{value}' is not a valid {self.type} "
                           f"value ({exc})")
        return out


@dataclass(frozen=True)
class Change:
    """One change of a batch: ``CREATE`` (fails if the record set exists), ``DELETE`` (its
    values must match exactly) or ``UPSERT`` (creates or replaces)."""

    action: Literal["CREATE", "DELETE", "UPSERT"]
    record_set: ResourceRecordSet
