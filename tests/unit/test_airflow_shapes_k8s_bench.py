"""benchmarks/airflow_shapes_k8s.py without a cluster: its arguments, the figures from the API's task rows,
and finding pods' cgroups in both kubelet layouts (systemd and cgroupfs drivers)."""

from __future__ import annotations

import pytest
from benchmarks import airflow_shapes_k8s as bench

UID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit):
        bench.parse(["--shapes", "ha,huge"])
    with pytest.raises(SystemExit):
        bench.parse(["--wide-tasks", "2000"])
    args = bench.parse(["--shapes", "minimal", "--workloads", "chain"])
    assert (args.shapes, args.workloads) == (["minimal"], ["chain"])


def test_minimal_shape_turns_off_every_ha_part_and_ha_is_the_profile_as_it_is():
    sets = dict(a.split("=", 1) for a in bench.SHAPES["minimal"] if a != "--set")
    assert sets == {
        "scheduler.replicas": "1",
        "apiServer.replicas": "1",
        "triggerer.replicas": "1",
        "mysql.mode": "single",
        "sensorShards.enabled": "false",
        "workerWatcher.enabled": "false",
        "broker.transportOptions.replication_wait_replicas": "0",
    }
    assert bench.SHAPES["ha"] == []


def test_figures_from_api_rows():
    result = {
        "ok": 4,
        "wall_s": 8.0,
        "queued_to_running": [1.0, 2.0, 3.0, 4.0],
        "to_success": [2.0, 3.0, 4.0, 10.0],
        "machine_cpu_s": 6.0,
    }
    s = bench.summarise(result)
    assert s["tasks/s"] == 0.5
    assert (s["q->run p50"], s["->success p99"]) == (3.0, 10.0)
    assert s["machine CPU s/1k"] == 1500.0
    # the API's timestamps are ISO 8601 with a zone; Z and +00:00 are the same instant
    assert bench.when("2026-12-03T12:00:01.5Z") - bench.when("2026-12-03T12:00:00+00:00") == 1.5
    assert bench.when(None) is None


@pytest.mark.parametrize(
    ("layout", "usage_file", "usage"),
    [
        (
            f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice",
            "cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        ),
        (f"kubeone-node-2/kubepods/besteffort/pod{UID}", "cpu.stat", "usage_usec 2500000\n"),
        (f"cpuacct/kubeone-3/kubepods/burstable/pod{UID}", "cpuacct.usage", "2500000000\n"),
    ],
    ids=["v2-systemd", "v2-cgroupfs", "v1-cpuacct"],
)
def test_a_pods_cgroup_is_found_and_its_cpu_read(tmp_path, monkeypatch, layout, usage_file, usage):
    pod = tmp_path / layout
    (pod / "cri-containerd-abc.scope").mkdir(parents=True)
    (pod / usage_file).write_text(usage)
    if layout.startswith("cpuacct/"):  # a hybrid host: the v1 cpu controller's own cpu.stat has no usage
        (tmp_path / "cpu" / layout.removeprefix("cpuacct/")).mkdir(parents=True)
        (tmp_path / "cpu" / layout.removeprefix("cpuacct/") / "cpu.stat").write_text("nr_periods 0\n")
    monkeypatch.setattr(bench, "CGROUP_ROOT", tmp_path)
    assert bench._pod_cgroups() == {UID: pod}
    monkeypatch.setattr(bench, "pod_components", lambda namespace: {UID: "scheduler", "other": "worker"})
    assert bench.cpu_seconds_by_component("ns") == {"scheduler": 2.5}
