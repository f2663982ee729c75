"""The chart's MySQL Group Replication: a per-member agent (bootstrap, join, reboot after a full outage,
the proxy's primary check) around a pure planner (:mod:`airflow_ha.mysql_ops.planner`)."""
