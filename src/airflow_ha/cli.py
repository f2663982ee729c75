"""``airflow-ha``: the commands the chart's pods and operators run.

Each subcommand lives with the module it belongs to and registers itself through ``register(subparsers)``;
this file only dispatches, so adding a command never touches another concern's code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module path -> provides register(subparsers). Each imports its heavy dependencies inside its commands,
# so `airflow-ha --help` stays fast.
COMMAND_MODULES = (
    "airflow_ha.sensors.cli",
    "airflow_ha.broker.cli",
    "airflow_ha.broker.probe",
    "airflow_ha.redis_ops.cli",
    "airflow_ha.mysql_ops.cli",
    "airflow_ha.worker_watch",
    "airflow_ha.migrations",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-ha", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_path in COMMAND_MODULES:
        importlib.import_module(module_path).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
