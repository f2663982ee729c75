"""The Celery workers: StatefulSet, log server, readiness on the broker."""

from __future__ import annotations

import pytest

from tests.chart.components import R, pod, ports, queues_served, worker_sets
from tests.chart.conftest import NAMESPACE, RenderError, container, env_of, helm_template

pytestmark = pytest.mark.chart


def test_workers_statefulset_and_log_server(default):
    sts = default.get("StatefulSet", f"{R}-worker")
    assert sts["spec"]["serviceName"] == f"{R}-worker"
    spec = sts["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 600
    c = container(spec, "worker")
    assert ports(c) == {8793}
    assert c["readinessProbe"]["exec"]["command"] == ["airflow-ha", "broker-check"]
    svc = default.get("Service", f"{R}-worker")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["port"] == 8793
    # Task hostnames are pod names: every Airflow pod resolves them through the workers' domain.
    api = pod(default, "Deployment", f"{R}-api-server")
    assert f"{R}-worker.{NAMESPACE}.svc.cluster.local" in api["dnsConfig"]["searches"]
    assert env_of(c)["AIRFLOW__CORE__HOSTNAME_CALLABLE"]["value"] == "socket.gethostname"


GROUPS = (
    "workers.groups[0].name=etl",
    "workers.groups[0].queues={default,etl}",
    "workers.groups[1].name=ml",
    "workers.groups[1].queues={ml}",
    "workers.groups[1].replicas=3",
    "workers.groups[1].concurrency=2",
    "workers.groups[1].resources.limits.memory=8Gi",
)


def _group_selector(group: str) -> dict:
    return {"app.kubernetes.io/name": R, "app.kubernetes.io/instance": R, "component": "worker",
            "airflow-ha/worker-group": group}  # fmt: skip


def test_worker_groups_are_each_a_statefulset_service_and_pdb_on_their_own_queues(render):
    rendered = render(None, *GROUPS, "workers.resources.requests.memory=1Gi")
    assert not rendered.has("StatefulSet", f"{R}-worker")  # the groups replace the single set
    expected = {"etl": ("default,etl", 2, "8"), "ml": ("ml", 3, "2")}
    for group, (queues, replicas, concurrency) in expected.items():
        name = f"{R}-worker-{group}"
        sts = rendered.get("StatefulSet", name)
        assert sts["spec"]["replicas"] == replicas
        assert sts["spec"]["serviceName"] == name
        assert sts["spec"]["selector"]["matchLabels"] == _group_selector(group)
        assert sts["spec"]["template"]["metadata"]["labels"]["airflow-ha/worker-group"] == group
        spec = sts["spec"]["template"]["spec"]
        c = container(spec, "worker")
        assert c["args"] == ["airflow", "celery", "worker", "--queues", queues]
        assert env_of(c)["AIRFLOW__CELERY__WORKER_CONCURRENCY"]["value"] == concurrency
        # a group's pods avoid each other's nodes: a lost node leaves each group a pod
        term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == _group_selector(group)
        svc = rendered.get("Service", name)
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"] == _group_selector(group)
        assert rendered.get("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == _group_selector(group)
    # a group's resources replace the workers' whole (no merge of requests into the group's limits)
    ml = container(pod(rendered, "StatefulSet", f"{R}-worker-ml"), "worker")
    etl = container(pod(rendered, "StatefulSet", f"{R}-worker-etl"), "worker")
    assert ml["resources"] == {"limits": {"memory": "8Gi"}}
    assert etl["resources"] == {"requests": {"memory": "1Gi"}}
    # task hostnames of every group resolve from every Airflow pod (the api-server fetches logs by them)
    searches = pod(rendered, "Deployment", f"{R}-api-server")["dnsConfig"]["searches"]
    assert searches == [f"{R}-worker-etl.{NAMESPACE}.svc.cluster.local", f"{R}-worker-ml.{NAMESPACE}.svc.cluster.local"]
    # the watcher and the NetworkPolicies select workers by component: every group's pods are workers
    assert {s["metadata"]["name"] for s in worker_sets(rendered)} == {f"{R}-worker-etl", f"{R}-worker-ml"}


def test_kubeone_profile_serves_the_probe_queues_with_two_groups(render):
    from tests.harness.failover.scenarios import PROBE_QUEUES

    rendered = render("kubeone.yaml")
    groups = worker_sets(rendered)
    assert len(groups) == 2 and all("airflow-ha/worker-group" in s["metadata"]["labels"] for s in groups)
    assert all(s["spec"]["replicas"] >= 2 for s in groups), "a one-pod group stops its queues with its node"
    assert queues_served(rendered) == set(PROBE_QUEUES)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("workers.groups[0].name=ml", "workers.groups[0].queues={ml}"),
         'no group consumes the default queue "default"'),
        (("workers.groups[0].name=ml", "workers.groups[0].queues={ml}", "config.operators.default_queue=ml"), None),
        (("workers.groups[0].name=a", "workers.groups[0].queues={default}",
          "workers.groups[1].name=a", "workers.groups[1].queues={x}"), 'the name "a" is used twice'),
        (("workers.groups[0].name=a", "workers.groups[0].queues={default}",
          "workers.args={airflow,celery,worker,--queues,x}"), "workers.args names --queues while workers.groups"),
        (("workers.groups[0].name=Big_Group", "workers.groups[0].queues={default}"), "/workers/groups/0/name"),
        (("workers.groups[0].name=a", "workers.groups[0].queues={}"), "/workers/groups/0/queues"),
        (("workers.groups[0].name=a",), "missing property 'queues'"),
        (("workers.groups[0].name=a", "workers.groups[0].queues={default}", "workers.groups[0].replica=2"),
         "replica"),
    ],
)  # fmt: skip
def test_bad_worker_groups_fail_with_a_message_naming_the_problem(helm_binary, render, sets, message):
    if message is None:  # the default queue renamed: a group serving it is enough
        assert render(None, *sets).has("StatefulSet", f"{R}-worker-ml")
        return
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *[a for s in sets for a in ("--set", s)])
    assert message in err.value.stderr, err.value.stderr
