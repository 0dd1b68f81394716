"""The edge of the system: the load balancers (ALB) and the DNS server (Route 53)."""
