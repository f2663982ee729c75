"""Extension points, under the official Airflow chart's names: chart-wide labels, a priority class, extra
volumes/mounts/envFrom on every Airflow pod, and per component extra (init) containers, volumes, mounts,
priority class and topology spread. Each reaches exactly the pods it names; the defaults add nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.components import AIRFLOW_WORKLOADS, R, pod
from tests.chart.conftest import Rendered, RenderError, container, helm_template, validate_all

pytestmark = pytest.mark.chart

EXTENDED = {
    "labels": {"team": "data-platform"},
    "priorityClassName": "airflow-normal",
    "volumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
    "volumeMounts": [{"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
    "envFrom": [{"secretRef": {"name": "airflow-extra-env"}}],
    "workers": {
        "extraContainers": [
            {"name": "{{ .Release.Name }}-log-shipper", "image": "busybox:1.36", "args": ["sleep", "inf"]}
        ],
        "extraInitContainers": [{"name": "warm-cache", "image": "busybox:1.36", "args": ["true"]}],
        "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    },
    "scheduler": {
        "priorityClassName": "airflow-critical",
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"component": "scheduler"}},
            }
        ],
    },
    "redis": {
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
        ]
    },
}


def _render_with(helm_binary, tmp_path: Path, values: dict) -> Rendered:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    objects = [o for o in yaml.safe_load_all(helm_template(helm_binary, "-f", str(path))) if o]
    validate_all(objects)
    return Rendered(objects)


@pytest.fixture(scope="module")
def extended(helm_binary, tmp_path_factory) -> Rendered:
    return _render_with(helm_binary, tmp_path_factory.mktemp("extended"), EXTENDED)


def test_defaults_add_nothing(default):
    for name, spec in default.pod_specs():
        assert "priorityClassName" not in spec and "topologySpreadConstraints" not in spec, name
        for c in spec["containers"] + spec.get("initContainers", []):
            assert "envFrom" not in c, f"{name}/{c['name']}"
    for obj in default.objects:
        assert "team" not in obj["metadata"].get("labels", {})


def test_labels_reach_every_object_and_pod_but_no_selector(extended):
    for obj in extended.objects:
        assert obj["metadata"]["labels"]["team"] == "data-platform", f"{obj['kind']}/{obj['metadata']['name']}"
        template = obj.get("spec", {}).get("template")
        if template:
            assert template["metadata"]["labels"]["team"] == "data-platform", obj["metadata"]["name"]
        selector = obj.get("spec", {}).get("selector")
        if isinstance(selector, dict):
            assert "team" not in selector.get("matchLabels", selector), obj["metadata"]["name"]


def test_priority_class_global_and_per_component(extended):
    for name, spec in extended.pod_specs():
        expected = "airflow-critical" if name == f"Deployment/{R}-scheduler" else "airflow-normal"
        assert spec["priorityClassName"] == expected, name


def test_every_airflow_pod_gets_the_global_volume_mount_and_env_from(extended):
    for (kind, name), _component in AIRFLOW_WORKLOADS.items():
        spec = pod(extended, kind, name)
        assert {"name": "corp-ca", "configMap": {"name": "corp-ca"}} in spec["volumes"], name
        main = spec["containers"][0]
        assert {"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True} in main["volumeMounts"], name
        assert main["envFrom"] == [{"secretRef": {"name": "airflow-extra-env"}}], name
    redis = pod(extended, "StatefulSet", f"{R}-redis")
    assert "corp-ca" not in {v["name"] for v in redis.get("volumes", [])}  # Airflow pods only


def test_component_extras_reach_only_that_component(extended):
    worker = pod(extended, "StatefulSet", f"{R}-worker")
    assert [c["name"] for c in worker["containers"]] == ["worker", f"{R}-log-shipper"]  # main first, tpl'd
    assert worker["initContainers"][-1]["name"] == "warm-cache"  # after the chart's own
    assert {"name": "scratch", "emptyDir": {}} in worker["volumes"]
    assert {"name": "scratch", "mountPath": "/scratch"} in container(worker, "worker")["volumeMounts"]
    assert "scratch" not in {m["name"] for m in container(worker, f"{R}-log-shipper").get("volumeMounts", [])}
    for (kind, name), component in AIRFLOW_WORKLOADS.items():
        if component == "worker":
            continue
        spec = pod(extended, kind, name)
        assert len(spec["containers"]) == 1, name
        assert "scratch" not in {v["name"] for v in spec["volumes"]}, name
    scheduler = pod(extended, "Deployment", f"{R}-scheduler")
    assert scheduler["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    redis = pod(extended, "StatefulSet", f"{R}-redis")
    assert redis["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topologySpreadConstraints" not in pod(extended, "StatefulSet", f"{R}-worker")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"labels": {"component": "x"}}, "invalid propertyName 'component'"),  # the chart's own label
        (
            {"workers": {"extraContainers": [{"image": "busybox"}]}},
            "at '/workers/extraContainers/0': missing property 'name'",
        ),
        ({"volumeMounts": [{"name": "ca"}]}, "at '/volumeMounts/0': missing property 'mountPath'"),
        ({"scheduler": {"priorityClassName": 3}}, "at '/scheduler/priorityClassName': got number, want string"),
    ],
)
def test_bad_extension_values_fail_with_the_schema_message(helm_binary, tmp_path, values, message):
    with pytest.raises(RenderError) as err:
        _render_with(helm_binary, tmp_path, values)
    assert "values don't meet the specifications of the schema" in err.value.stderr, err.value.stderr
    assert message in err.value.stderr, err.value.stderr


@pytest.mark.parametrize("mode", ["single", "groupReplication"])
def test_data_stores_take_sidecars_init_containers_and_volumes(helm_binary, tmp_path, mode):
    """A metrics exporter next to Redis and MySQL, the most common reason to extend them."""
    extras = {
        "extraContainers": [{"name": "exporter", "image": "exporter:1", "args": ["--port={{ .Values.redis.port }}"]}],
        "extraInitContainers": [{"name": "prepare", "image": "busybox:1"}],
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
    }
    rendered = _render_with(helm_binary, tmp_path, {"redis": extras, "mysql": {"mode": mode, **extras}})
    mysql = f"{R}-mysql-gr" if mode == "groupReplication" else f"{R}-mysql"
    for name, main in ((f"{R}-redis", "redis"), (mysql, "mysql")):
        spec = rendered.get("StatefulSet", name)["spec"]["template"]["spec"]
        assert spec["containers"][0]["name"] == main and spec["containers"][-1]["name"] == "exporter", name
        assert spec["containers"][-1]["args"] == ["--port=6379"]  # templated with tpl
        assert [c["name"] for c in spec["initContainers"]][-1] == "prepare", name
        assert "extra" in {v["name"] for v in spec["volumes"]}, name
        assert {"name": "extra", "mountPath": "/extra"} in spec["containers"][0]["volumeMounts"], name
