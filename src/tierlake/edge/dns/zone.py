"""A Route 53 public hosted zone: its record sets, change batches and answers.

A new zone holds what Route 53 creates with ``CreateHostedZone``: an SOA and an NS record
set at the apex (here one name server, ``ns1.<zone>``, with an A record for the server's
address), with Route 53's TTLs (SOA 900 s with minimum 86400 s, NS 172800 s). Changes come
as ``ChangeResourceRecordSets`` batches, applied whole or not at all, with Route 53's
validation (``InvalidChangeBatch`` lists every problem). :meth:`HostedZone.resolve` answers
a question as the authoritative server: REFUSED outside the zone, NXDOMAIN for a name that
does not exist (not even as the parent of another), NODATA for a name without that type,
CNAMEs followed inside the zone, alias records answered with their target's values, and
the routing policy of the name's record sets choosing the values. The zone is meant to be
used from one asyncio loop (a change replaces the whole table at once). See
https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html
and https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/SOA-NSrecords.html.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import structlog

from tierlake.edge.dns.errors import InvalidChangeBatchError, InvalidInputError
from tierlake.edge.dns.health import HealthChecks
from tierlake.edge.dns.records import Change, ResourceRecordSet, to_name
from tierlake.edge.dns.routing import POLICIES

log = structlog.get_logger(__name__)

# Top-level names that never resolve on the internet (RFC 2606, RFC 6761, RFC 8375).
SPECIAL_USE_SUFFIXES = ("test", "localhost", "invalid", "example", "home.arpa", "internal")
MAX_CHAIN = 8  # CNAMEs followed and aliases nested before giving up
Key = tuple[dns.name.Name, str, str | None]


@dataclass(frozen=True)
class ChangeInfo:
    """``ChangeInfo`` of ``ChangeResourceRecordSets``; a local change is in sync at once."""

    id: str
    status: str
    submitted_at: float


@dataclass
class Answer:
    """What the server puts in a response to one question."""

    rcode: dns.rcode.Rcode
    authoritative: bool = True
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)


class HostedZone:
    """The store's hosted zone (``zone`` must be a special-use name such as ``tierlake.test``).

    ``health_checks`` resolves the ``HealthCheckId`` of record sets; ``ns_address`` is the
    address of the zone's name server (this server); ``seed`` pins the weighted and
    multivalue choices (tests).
    """

    def __init__(self, name: str, *, health_checks: HealthChecks | None = None,
                 ns_address: str = "127.0.0.1", alias_ttl: int = 60,
                 seed: int | None = None) -> None:
        try:
            origin = to_name(name)
        except ValueError as exc:
            raise InvalidInputError(f"hosted zone name {name!r}: {exc}") from exc
        suffix = origin.to_text(omit_final_dot=True)
        if not any(suffix == s or suffix.endswith("." + s) for s in SPECIAL_USE_SUFFIXES):
            raise InvalidInputError(
                f"hosted zone {suffix!r} could shadow a real domain; use a name under one of "
                f"the special-use domains {', '.join('.' + s for s in SPECIAL_USE_SUFFIXES)} "
                "(e.g. tierlake.test)")
        self.origin = origin
        self.health_checks = health_checks
        self.alias_ttl = alias_ttl  # Route 53 answers an alias to a load balancer with 60 s
        self._rng = random.Random(seed)
        apex = origin.to_text()
        ns = f"ns1.{apex}"
        self._sets: dict[Key, ResourceRecordSet] = {}
        self._by_name: dict[dns.name.Name, dict[str, list[ResourceRecordSet]]] = {}
        self._existing: set[dns.name.Name] = set()
        self.change([
            Change("CREATE", ResourceRecordSet(
                apex, "SOA", 900, (f"{ns} hostmaster.{apex} 1 7200 900 1209600 86400",))),
            Change("CREATE", ResourceRecordSet(apex, "NS", 172800, (ns,))),
            Change("CREATE", ResourceRecordSet(ns, "A", 172800, (ns_address,))),
        ])

    # -- changes ---------------------------------------------------------------------

    def change(self, batch: Sequence[Change]) -> ChangeInfo:
        """Apply a change batch atomically (``ChangeResourceRecordSets``): every change is
        checked against the zone as the batch leaves it, and on any problem nothing is
        applied and :class:`InvalidChangeBatchError` lists them all."""
        if not batch:
            raise InvalidChangeBatchError(["the change batch is empty; give at least one "
                                           "CREATE, DELETE or UPSERT"])
        sets = dict(self._sets)
        problems: list[str] = []
        touched: set[tuple[dns.name.Name, str]] = set()
        for item in batch:
            record = item.record_set
            own = record.problems()
            if own:
                problems += own
                continue
            problems += self._zone_problems(record)
            key = record.key
            touched.add((key[0], key[1]))
            if item.action == "CREATE":
                if key in sets:
                    problems.append(f"Tried to create resource record set {record.label} "
                                    "but it already exists")
                sets[key] = record
            elif item.action == "UPSERT":
                sets[key] = record
            elif item.action == "DELETE":
                if sets.get(key) != record:
                    problems.append(f"Tried to delete resource record set {record.label} but "
                                    "it was not found (the values must match exactly)")
                elif key[0] == self.origin and record.type in ("SOA", "NS"):
                    problems.append(f"{record.label}: the hosted zone's SOA and NS records "
                                    "cannot be deleted; UPSERT them instead")
                sets.pop(key, None)
            else:
                problems.append(f"Unknown action {item.action!r}; use CREATE, DELETE or "
                                "UPSERT")
        problems += self._group_problems(sets, touched)
        if problems:
            raise InvalidChangeBatchError(problems)
        self._install(sets)
        info = ChangeInfo(f"/change/C{uuid.uuid4().hex[:20].upper()}", "INSYNC", time.time())
        log.info("dns.change", zone=self.origin.to_text(), change_id=info.id,
                 changes=[(c.action, c.record_set.label) for c in batch])
        return info

    def _zone_problems(self, record: ResourceRecordSet) -> list[str]:
        out: list[str] = []
        name = record.dns_name
        if not name.is_subdomain(self.origin):
            out.append(f"{record.label}: the name is not in the hosted zone "
                       f"{self.origin.to_text()} (RRSet with DNS name "
                       f"{name.to_text()} is not permitted in zone {self.origin.to_text()})")
        if record.type == "SOA" and name != self.origin:
            out.append(f"{record.label}: an SOA record is only at the zone apex")
        if record.type == "CNAME" and name == self.origin:
            out.append(f"{record.label}: a CNAME cannot be at the zone apex; use an alias "
                       "record")
        hc = record.health_check_id
        if hc is not None and (self.health_checks is None or not self.health_checks.exists(hc)):
            out.append(f"{record.label}: health check {hc} does not exist; create it with "
                       "HealthChecks.create_health_check() first")
        alias = record.alias_target
        if alias is not None and not alias.addresses \
                and not to_name(alias.dns_name).is_subdomain(self.origin):
            out.append(f"{record.label}: alias target {alias.dns_name} is neither a record of "
                       "this hosted zone nor given with its addresses")
        return out

    @staticmethod
    def _group_problems(sets: dict[Key, ResourceRecordSet],
                        touched: set[tuple[dns.name.Name, str]]) -> list[str]:
        out: list[str] = []
        names = {name for name, _ in touched}
        for name, rtype in sorted(touched):
            group = [r for (n, t, _), r in sets.items() if n == name and t == rtype]
            policies = sorted({r.routing_policy for r in group})
            if len(policies) > 1:
                out.append(f"[name='{name}', type='{rtype}']: record sets of one name and "
                           f"type share one routing policy, found {', '.join(policies)}")
            for role in ("PRIMARY", "SECONDARY"):
                if sum(r.failover == role for r in group) > 1:
                    out.append(f"[name='{name}', type='{rtype}']: only one {role} failover "
                               "record set per name and type")
        for name in sorted(names):
            types = {t for (n, t, _) in sets if n == name}
            if "CNAME" in types and len(types) > 1:
                out.append(f"[name='{name}']: a CNAME cannot coexist with other record types "
                           f"at the same name (found {', '.join(sorted(types))})")
        return out

    def _install(self, sets: dict[Key, ResourceRecordSet]) -> None:
        by_name: dict[dns.name.Name, dict[str, list[ResourceRecordSet]]] = {}
        existing: set[dns.name.Name] = set()
        for (name, rtype, _), record in sorted(sets.items(), key=lambda kv: str(kv[0])):
            by_name.setdefault(name, {}).setdefault(rtype, []).append(record)
            parent = name
            while parent != self.origin and parent not in existing:
                existing.add(parent)
                parent = parent.parent()
        existing.add(self.origin)
        self._sets, self._by_name, self._existing = sets, by_name, existing

    def list_resource_record_sets(self) -> list[ResourceRecordSet]:
        return [self._sets[k] for k in sorted(self._sets, key=str)]

    def describe(self) -> list[dict[str, object]]:
        """The record sets as ``ListResourceRecordSets`` names their fields, each with its
        routing policy and whether it counts as healthy now (for status views)."""
        out: list[dict[str, object]] = []
        for record in self.list_resource_record_sets():
            item: dict[str, object] = {"Name": record.dns_name.to_text(), "Type": record.type,
                                       "RoutingPolicy": record.routing_policy}
            if record.set_identifier is not None:
                item["SetIdentifier"] = record.set_identifier
            if record.weight is not None:
                item["Weight"] = record.weight
            if record.failover is not None:
                item["Failover"] = record.failover
            if record.health_check_id is not None:
                item["HealthCheckId"] = record.health_check_id
            if record.alias_target is not None:
                item["AliasTarget"] = {
                    "DNSName": record.alias_target.dns_name,
                    "EvaluateTargetHealth": record.alias_target.evaluate_target_health,
                    "Addresses": list(record.alias_target.addresses)}
            else:
                item["TTL"] = record.ttl
                item["ResourceRecords"] = [{"Value": v} for v in record.resource_records]
            item["Healthy"] = self._healthy(record)
            out.append(item)
        return out

    # -- answers ---------------------------------------------------------------------

    def resolve(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Answer:
        """The answer to one question (class IN), as an authoritative server gives it."""
        if not qname.is_subdomain(self.origin):
            return Answer(dns.rcode.REFUSED, authoritative=False)
        result = Answer(dns.rcode.NOERROR)
        owner = qname
        for _ in range(MAX_CHAIN):
            types = self._by_name.get(owner)
            if not types:
                if owner not in self._existing:
                    result.rcode = dns.rcode.NXDOMAIN
                return self._negative(result)
            if rdtype == dns.rdatatype.ANY:
                for rtype in types:
                    self._add(result, owner, dns.rdatatype.from_text(rtype))
                return result
            wanted = dns.rdatatype.to_text(rdtype)
            if "CNAME" in types and wanted != "CNAME":
                cname = self._rrset(owner, dns.rdatatype.CNAME)
                if cname is None:
                    return self._negative(result)
                result.answer.append(cname)
                target = next(iter(cname)).target
                if not target.is_subdomain(self.origin):
                    return result
                owner = target
                continue
            if not self._add(result, owner, rdtype):
                return self._negative(result)
            return result
        return result  # a CNAME loop: what was followed so far

    def _add(self, result: Answer, owner: dns.name.Name,
             rdtype: dns.rdatatype.RdataType) -> bool:
        rrset = self._rrset(owner, rdtype)
        if rrset is None:
            return False
        result.answer.append(rrset)
        for rdata in rrset:  # addresses of in-zone names an NS, MX or SRV answer points to
            target = getattr(rdata, "target", None) or getattr(rdata, "exchange", None)
            if isinstance(target, dns.name.Name) and target.is_subdomain(self.origin):
                for kind in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    extra = self._rrset(target, kind)
                    if extra is not None and extra not in result.additional:
                        result.additional.append(extra)
        return True

    def _negative(self, result: Answer) -> Answer:
        """SOA in the authority section; its TTL is the negative-caching TTL (RFC 2308)."""
        soa_set = self._by_name[self.origin]["SOA"][0]
        soa = soa_set.rdatas[0]
        ttl = min(soa_set.ttl or 0, getattr(soa, "minimum", 0))
        result.authority.append(dns.rrset.from_rdata_list(self.origin, ttl, [soa]))
        return result

    def _rrset(self, owner: dns.name.Name, rdtype: dns.rdatatype.RdataType,
               depth: int = 0) -> dns.rrset.RRset | None:
        """The values the routing policy chooses for one name and type, under ``owner``."""
        found = self._values(owner, dns.rdatatype.to_text(rdtype), depth)
        if not found:
            return None
        ttl, rdatas = found
        return dns.rrset.from_rdata_list(owner, ttl, rdatas)

    def _values(self, name: dns.name.Name, rtype: str,
                depth: int) -> tuple[int, list[dns.rdata.Rdata]] | None:
        group = self._by_name.get(name, {}).get(rtype)
        if not group or depth >= MAX_CHAIN:
            return None
        chosen = POLICIES[group[0].routing_policy].choose(
            group, lambda r: self._healthy(r, depth), self._rng)
        ttls: list[int] = []
        rdatas: list[dns.rdata.Rdata] = []
        for record in chosen:
            alias = record.alias_target
            if alias is None:
                ttls.append(record.ttl or 0)
                values: Sequence[dns.rdata.Rdata] = record.rdatas
            elif alias.addresses:
                ttls.append(self.alias_ttl)
                values = record.alias_rdatas
            else:
                inner = self._values(to_name(alias.dns_name), rtype, depth + 1)
                if inner is None:
                    continue
                ttls.append(inner[0])
                values = inner[1]
            rdatas += [v for v in values if v not in rdatas]
        if not rdatas:
            return None
        return min(ttls), rdatas

    def _healthy(self, record: ResourceRecordSet, depth: int = 0) -> bool:
        """A record's health: its health check's status, and with EvaluateTargetHealth its
        target's (a load balancer with a healthy target, or a healthy record of the zone)."""
        hc = record.health_check_id
        if hc is not None and self.health_checks is not None \
                and not self.health_checks.is_healthy(hc):
            return False
        alias = record.alias_target
        if alias is None or not alias.evaluate_target_health:
            return True
        if alias.addresses:
            assert alias.target_health is not None  # checked by ResourceRecordSet.problems
            try:
                return bool(alias.target_health())
            except Exception as exc:  # noqa: BLE001 - a failing callable means unhealthy
                log.warning("dns.alias_target_health_failed", record=record.label,
                            error=repr(exc))
                return False
        group = self._by_name.get(to_name(alias.dns_name), {}).get(record.type, [])
        return depth < MAX_CHAIN and any(self._healthy(r, depth + 1) for r in group)
