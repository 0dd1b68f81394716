"""Route 53's routing policies, one small class each.

Each policy picks, from the record sets of one name and type, the ones whose values answer
a query. Health follows "How Amazon Route 53 chooses records when health checking is
configured"
(https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/health-checks-how-route-53-chooses-records.html):
a record without a health check is always healthy, and **when every record of the group is
unhealthy, Route 53 considers them all healthy** and chooses by the policy alone (it has to
answer something). Each policy here does the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from tierlake.edge.dns.records import ResourceRecordSet, RoutingPolicyName

MULTIVALUE_MAX_ANSWERS = 8  # Route 53 answers with up to eight healthy records

Healthy = Callable[[ResourceRecordSet], bool]


class RoutingPolicy(Protocol):
    """Chooses the record sets that answer one query (never an empty list for a non-empty
    group)."""

    def choose(self, group: Sequence[ResourceRecordSet], healthy: Healthy,
               rng: random.Random) -> list[ResourceRecordSet]: ...


def _healthy_or_all(group: Sequence[ResourceRecordSet],
                    healthy: Healthy) -> list[ResourceRecordSet]:
    """The healthy record sets; all of them when none is (Route 53's rule)."""
    alive = [r for r in group if healthy(r)]
    return alive or list(group)


class Simple:
    """One record set with all its values; no health check (Route 53 allows none)."""

    def choose(self, group: Sequence[ResourceRecordSet], healthy: Healthy,
               rng: random.Random) -> list[ResourceRecordSet]:
        return list(group[:1])


class Weighted:
    """One record set per query, chosen with probability weight / sum of weights.

    All weights 0: equal chances. With health checks, record sets of weight 0 are
    considered only when every record set with a weight above 0 is unhealthy.
    """

    def choose(self, group: Sequence[ResourceRecordSet], healthy: Healthy,
               rng: random.Random) -> list[ResourceRecordSet]:
        alive = [r for r in group if healthy(r)] or list(group)
        positive = [r for r in alive if (r.weight or 0) > 0]
        if positive:
            return rng.choices(positive, weights=[r.weight or 0 for r in positive])
        return [rng.choice(alive)]


class Failover:
    """The PRIMARY while it is healthy, else the SECONDARY; both unhealthy: the PRIMARY
    (all are then considered healthy)."""

    def choose(self, group: Sequence[ResourceRecordSet], healthy: Healthy,
               rng: random.Random) -> list[ResourceRecordSet]:
        ordered = sorted(group, key=lambda r: r.failover != "PRIMARY")
        for record in ordered:
            if healthy(record):
                return [record]
        return ordered[:1]


class MultiValue:
    """Up to eight healthy record sets in random order (with more, a random eight)."""

    def choose(self, group: Sequence[ResourceRecordSet], healthy: Healthy,
               rng: random.Random) -> list[ResourceRecordSet]:
        alive = _healthy_or_all(group, healthy)
        return rng.sample(alive, min(MULTIVALUE_MAX_ANSWERS, len(alive)))


POLICIES: dict[RoutingPolicyName, RoutingPolicy] = {
    "simple": Simple(),
    "weighted": Weighted(),
    "failover": Failover(),
    "multivalue": MultiValue(),
}
