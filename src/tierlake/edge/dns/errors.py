"""Route 53's errors, by the names its API gives them.

``InvalidChangeBatch`` lists every problem of a rejected batch (nothing of the batch is
applied); ``InvalidInput`` is a bad parameter of a single call; ``NoSuchHealthCheck`` names
an unknown health check. All are user mistakes (not transient).
"""

from __future__ import annotations

from tierlake.errors import TierlakeError


class Route53Error(TierlakeError):
    """Base of the DNS server's errors."""


class InvalidInputError(Route53Error, ValueError):
    """A parameter is wrong; the message names it and the allowed values."""


class InvalidChangeBatchError(Route53Error, ValueError):
    """A change batch was refused whole; ``messages`` lists each problem, as Route 53 does."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("InvalidChangeBatch (nothing was changed): " + "; ".join(messages))


class NoSuchHealthCheckError(Route53Error, LookupError):
    """No health check has this id; list them with ``HealthChecks.list_health_checks()``."""


class DnsPortError(Route53Error, OSError):
    """The server cannot bind its port (in use, or not allowed); the message says which
    setting picks another."""
