"""RDS Multi-AZ for MariaDB on one machine: a primary, a semi-synchronous standby, writer
and reader endpoints, automatic and planned failover (see :mod:`.cluster`)."""

from tierlake.data.cluster.cluster import DBCluster
from tierlake.data.cluster.control import CONTROL_SOCKET, request, serve_control
from tierlake.data.cluster.endpoint import Endpoint
from tierlake.data.cluster.events import ClusterEvent, EventHistory
from tierlake.data.cluster.instance import DBClusterError, MariaDBInstance

__all__ = ["CONTROL_SOCKET", "ClusterEvent", "DBCluster", "DBClusterError", "Endpoint",
           "EventHistory", "MariaDBInstance", "request", "serve_control"]
