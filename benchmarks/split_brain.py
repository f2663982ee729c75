"""What the replication wait buys in a split brain: messages lost with it off, next to the chart's defaults.

``tox -e k8s`` asserts that the chart's defaults (and ``raise``) lose no acknowledged message when a Redis
master's node is cut off. This measures the alternative those defaults protect against, in the same run on
the same release: the stock behaviour (``replication_wait_replicas=0``: no WAIT, as kombu's redis transport
and Celery do) loses what the cut-off master acknowledged during the partition and dropped at heal.

Needs a release in KUBECONFIG on a cluster whose nodes this machine can cut off (``../shared/kube`` as root,
or kind with Docker), e.g. after ``scripts/up``: ``tox -e bench -- split_brain``. Skips (exit 0) otherwise.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KUBECTL = REPO_ROOT / ".tools" / "bin" / "kubectl"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks split_brain")
    parser.add_argument("--namespace", default=os.environ.get("AIRFLOW_HA_NAMESPACE", "airflow-ha"))
    parser.add_argument("--release", default=os.environ.get("AIRFLOW_HA_RELEASE", "airflow-ha"))
    args = parser.parse_args(argv)

    from tests.harness.failover import nodes
    from tests.harness.failover.kubernetes import KubernetesBackend
    from tests.harness.failover.report import markdown_table
    from tests.harness.release import admin_password

    try:
        backend = KubernetesBackend(args.namespace, args.release, KUBECTL, admin_password(args.namespace, args.release))
        names = sorted(n.metadata.name for n in backend.core.list_node().items)
    except Exception as exc:  # no cluster, no release: nothing to measure here
        print(f"skipped: no release {args.release} in namespace {args.namespace} answers ({exc})")
        return 0
    control = nodes.node_control(names, REPO_ROOT.parent / "shared" / "kube")
    if control is None or len(names) < 3:
        print(f"skipped: nodes {names} cannot be cut off from here (needs 3, and ../shared/kube as root or kind)")
        return 0
    try:
        results = [
            nodes.split_brain(backend, control, policy=nodes.CHART_DEFAULTS),
            nodes.split_brain(backend, control, policy=None),
        ]
    finally:
        backend.close()
    print(markdown_table(results))
    for result in results:
        for note in result.notes:
            print(f"- {result.scenario}: {note}")
    ours, stock = (r.tasks_lost for r in results)
    print(f"acknowledged messages lost: chart defaults {ours}, stock (no replication wait) {stock}")
    return 0
