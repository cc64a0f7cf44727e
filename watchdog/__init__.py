"""crdb-watchdog: alerting for CockroachDB clusters through the Cluster API v2."""

__version__ = "0.1.0"
