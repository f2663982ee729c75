"""Every ``airflow-ha`` command a rendered pod runs (container, init container, probe; every values file)
is one the package registers: a renamed or dropped command fails here, not in a crash-looping pod."""

from __future__ import annotations

import re

import pytest

from airflow_ha.cli import build_parser
from tests.chart.conftest import VALUES_FILES

pytestmark = pytest.mark.chart

IN_SHELL = re.compile(r"(?:^|[\s;&|(])airflow-ha\s+([a-z][a-z-]*)")


def registered() -> set[str]:
    return set(next(a for a in build_parser()._actions if a.dest == "command").choices)


def commands_of(argv: list[str]) -> set[str]:
    if len(argv) >= 2 and argv[0] == "airflow-ha":
        return {argv[1]}
    return {m for part in argv for m in IN_SHELL.findall(part)}  # sh -c "... airflow-ha <command> ..."


def airflow_ha_commands(rendered) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, spec in rendered.pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            argvs = [c.get("command", []) + c.get("args", [])]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                argvs.append(c.get(probe, {}).get("exec", {}).get("command", []))
            for argv in argvs:
                for command in commands_of(argv):
                    found.setdefault(command, set()).add(f"{name}/{c['name']}")
    return found


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_every_airflow_ha_command_a_pod_runs_is_registered(render, values_file):
    used = airflow_ha_commands(render(values_file))
    unknown = {command: sorted(where) for command, where in used.items() if command not in registered()}
    assert not unknown, f"pods run airflow-ha commands the package does not register: {unknown}"


def test_the_kubeone_release_runs_each_of_its_commands(render):
    # kubeone.yaml turns on what the default leaves off (the Redis reconciler, the replicated database)
    used = set(airflow_ha_commands(render("kubeone.yaml")))
    expected = {"broker-check", "sensor-shard", "redis-reconcile", "wait-for-migrations", "worker-watch", "mysql-agent"}
    assert expected <= used, expected - used
