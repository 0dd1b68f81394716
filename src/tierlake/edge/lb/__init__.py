"""The load balancer, modelled on AWS's Application Load Balancer.

``model`` is the shared vocabulary (target states, reason codes, health-check profiles,
the access-log record); ``targets`` holds target groups and their health checks; the
listeners, rules and the HTTP proxy build on them.
"""
