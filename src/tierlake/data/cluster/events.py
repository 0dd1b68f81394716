"""The cluster's event history, worded as Amazon RDS words its events.

RDS records an event for each step of a failover ("Amazon RDS event categories and event
messages" in the RDS User Guide, category ``failover``; the failover reasons are those of
"Failover process for Amazon RDS", e.g. the reason shown when the primary is impaired).
``DescribeEvents`` returns each as ``SourceIdentifier``, ``SourceType``, ``Message``,
``EventCategories`` and ``Date``; :meth:`ClusterEvent.to_dict` uses those keys so the
operator view and ``tierlake db cluster status`` show what an RDS user knows.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Messages as RDS writes them (category ``failover`` unless noted).
FAILOVER_STARTED = "Multi-AZ instance failover started."
FAILOVER_COMPLETED = "Multi-AZ instance failover completed."
USER_REQUESTED_FAILOVER = "The user requested a failover of the DB instance."
PRIMARY_IMPAIRED = (
    "The Multi-AZ DB instance deployment detected an impaired primary DB instance and "
    "failed over.")
RECOVERY_STARTED = "Recovery of the DB instance has started."  # category ``recovery``
RECOVERY_COMPLETED = "Recovery of the DB instance is complete."  # category ``recovery``
RECOVERY_FAILED = "The DB instance has failed recovery."  # category ``failure``
INSTANCE_RESTARTED = "DB instance restarted"  # category ``availability``
INSTANCE_SHUTDOWN = "DB instance shutdown"  # category ``availability``
REPLICATION_ERROR = "Replication for the Read Replica failed."  # category ``read replica``
FAILOVER_NOT_ATTEMPTED = (
    "Amazon RDS is not attempting a requested failover because no standby DB instance is "
    "available.")

HISTORY_SIZE = 200


@dataclass(frozen=True)
class ClusterEvent:
    """One event (``DescribeEvents``' Event)."""

    source: str  # SourceIdentifier: the cluster or an instance
    source_type: str  # SourceType: "db-cluster" or "db-instance"
    message: str
    categories: tuple[str, ...]
    date: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"SourceIdentifier": self.source, "SourceType": self.source_type,
                "Message": self.message, "EventCategories": list(self.categories),
                "Date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.date))
                + f".{int(self.date % 1 * 1000):03d}Z"}


class EventHistory:
    """The last :data:`HISTORY_SIZE` events, oldest first; each one is also logged."""

    def __init__(self, size: int = HISTORY_SIZE) -> None:
        self._events: deque[ClusterEvent] = deque(maxlen=size)

    def record(self, source: str, message: str, *categories: str,
               source_type: str = "db-instance") -> ClusterEvent:
        event = ClusterEvent(source, source_type, message, categories or ("failover",))
        self._events.append(event)
        log.info("db_cluster.event", source=source, message=message,
                 categories=list(event.categories))
        return event

    def messages(self) -> list[str]:
        return [e.message for e in self._events]

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self._events]
