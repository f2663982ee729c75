"""dags.*: the DAG bundles every Airflow pod gets (the image's folder, a git repository), the git connection
built from the credentials Secret without its values, the clone and ssh volumes, and the schema's refusals.
tests/integration/test_dags_from_git.py runs the rendered bundle through Airflow against a real git server;
tests/k8s/test_dags_from_git.py pushes a DAG and runs it on the cluster."""

from __future__ import annotations

import json

import pytest

from tests.chart.components import AIRFLOW_WORKLOADS, expanded_env, pod
from tests.chart.conftest import RELEASE as R
from tests.chart.conftest import RenderError, helm_template

pytestmark = pytest.mark.chart

IMAGE_BUNDLE = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}}
GIT = ("dags.git.enabled=true", "dags.git.repoUrl=https://git.example.com/data/dags.git")


def _airflow_containers(rendered):
    for kind, name in AIRFLOW_WORKLOADS:
        spec = pod(rendered, kind, name)
        for c in spec.get("initContainers", []) + spec["containers"]:
            if any(e["name"] == "AIRFLOW__CORE__EXECUTOR" for e in c.get("env", [])):  # Airflow runs there
                yield f"{name}/{c['name']}", spec, c


def test_by_default_the_image_folder_is_the_one_bundle_and_nothing_of_git_is_rendered(default):
    for where, spec, c in _airflow_containers(default):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]) == [IMAGE_BUNDLE], where
        assert not {"AIRFLOW_CONN_AIRFLOW_HA_GIT", "AIRFLOW_HA_GIT_TOKEN"} & set(env), where
        assert not {v["name"] for v in spec["volumes"]} & {"dag-bundles", "git-ssh"}, where


def test_git_with_a_token_reaches_every_airflow_container_from_the_secret(render):
    rendered = render(None, *GIT, "dags.git.ref=release", "dags.git.subdir=airflow/dags",
                      "dags.git.refreshIntervalSeconds=45", "dags.git.credentialsSecret.name=git-creds")  # fmt: skip
    seen = 0
    for where, spec, c in _airflow_containers(rendered):
        seen += 1
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        assert refs["AIRFLOW_HA_GIT_USERNAME"] == {"name": "git-creds", "key": "username"}, where
        assert refs["AIRFLOW_HA_GIT_TOKEN"] == {"name": "git-creds", "key": "token"}, where
        env = expanded_env(rendered, c)  # as the kubelet expands $(VAR): the Secret is not rendered
        assert json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]) == [
            IMAGE_BUNDLE,
            {"name": "git", "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
             "kwargs": {"tracking_ref": "release", "subdir": "airflow/dags", "refresh_interval": 45,
                        "repo_url": "https://git.example.com/data/dags.git", "git_conn_id": "airflow_ha_git"}},
        ], where  # fmt: skip
        conn = json.loads(env["AIRFLOW_CONN_AIRFLOW_HA_GIT"])
        assert conn == {"conn_type": "git", "host": "https://git.example.com/data/dags.git",
                        "login": "from_git_creds_username", "password": "from_git_creds_token"}, where  # fmt: skip
        names = [e["name"] for e in c["env"]]  # the kubelet expands only variables defined earlier
        assert names.index("AIRFLOW_HA_GIT_TOKEN") < names.index("AIRFLOW_CONN_AIRFLOW_HA_GIT"), where
        assert env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] == "/opt/airflow/dag-bundles"
        volume = next(v for v in spec["volumes"] if v["name"] == "dag-bundles")
        assert volume == {"name": "dag-bundles", "emptyDir": {"sizeLimit": "1Gi"}}, where
        assert {"name": "dag-bundles", "mountPath": "/opt/airflow/dag-bundles"} in c["volumeMounts"], where
    assert seen >= len(AIRFLOW_WORKLOADS) * 2  # main containers and wait-for-migrations


def test_git_over_ssh_mounts_the_key_and_known_hosts_readable_by_the_airflow_group(render):
    rendered = render(None, "dags.git.enabled=true", "dags.git.repoUrl=git@git.example.com:data/dags.git",
                      "dags.git.sshKeySecret.name=git-ssh-key", "dags.imageBundle=false")  # fmt: skip
    spec = pod(rendered, "Deployment", f"{R}-dag-processor")
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert [b["name"] for b in json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])] == ["git"]
    conn = json.loads(env["AIRFLOW_CONN_AIRFLOW_HA_GIT"])
    assert conn["extra"] == {"key_file": "/opt/airflow/secrets/git-ssh/key", "strict_host_key_checking": "yes",
                             "known_hosts_file": "/opt/airflow/secrets/git-ssh/known_hosts"}  # fmt: skip
    assert "login" not in conn and "AIRFLOW_HA_GIT_TOKEN" not in env
    volume = next(v for v in spec["volumes"] if v["name"] == "git-ssh")["secret"]
    assert volume["defaultMode"] == 0o440 and volume["items"] == [
        {"key": "ssh-privatekey", "path": "key"},
        {"key": "known_hosts", "path": "known_hosts"},
    ]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "git-ssh")
    assert mount == {"name": "git-ssh", "mountPath": "/opt/airflow/secrets/git-ssh", "readOnly": True}

    tofu = render(None, "dags.git.enabled=true", "dags.git.repoUrl=ssh://git@git.example.com/dags.git",
                  "dags.git.sshKeySecret.name=k", "dags.git.sshKeySecret.knownHostsKey=",
                  "dags.git.sshStrictHostKeyChecking=accept-new")  # fmt: skip
    env = {e["name"]: e.get("value") for e in pod(tofu, "Deployment", f"{R}-dag-processor")["containers"][0]["env"]}
    assert json.loads(env["AIRFLOW_CONN_AIRFLOW_HA_GIT"])["extra"] == {
        "key_file": "/opt/airflow/secrets/git-ssh/key", "strict_host_key_checking": "accept-new"}  # fmt: skip


def test_a_bundle_list_set_in_config_is_left_as_the_user_wrote_it(render):
    mine = '[{"name": "mine", "classpath": "x.Y", "kwargs": {}}]'
    rendered = render(None, "config.dag_processor.dag_bundle_config_list=" + mine.replace(",", "\\,"))
    env = pod(rendered, "Deployment", f"{R}-dag-processor")["containers"][0]["env"]
    assert [e.get("value") for e in env if e["name"] == "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] == [mine]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("dags.git.enabled=true",), "at '/dags/git/repoUrl': '' does not match pattern"),
        (("dags.git.enabled=true", "dags.git.repoUrl=/srv/dags"), "at '/dags/git/repoUrl': '/srv/dags' does not"),
        ((*GIT, "dags.git.subdir=/abs"), "at '/dags/git/subdir': '/abs' does not match pattern"),
        ((*GIT, "dags.git.bundleName=my dags"), "at '/dags/git/bundleName': 'my dags' does not match pattern"),
        ((*GIT, "dags.git.sshStrictHostKeyChecking=maybe"), "at '/dags/git/sshStrictHostKeyChecking': value must"),
        ((*GIT, "dags.git.refreshIntervalSeconds=0"), "at '/dags/git/refreshIntervalSeconds': minimum: got 0"),
        ((*GIT, "dags.git.token=x"), "additional properties 'token' not allowed"),
        (("dags.imageBundle=false",), "dags.imageBundle is false and dags.git.enabled is not true: Airflow needs"),
        ((*GIT, "dags.git.bundleName=dags-folder"), 'dags.git.bundleName "dags-folder" is the image\'s bundle'),
    ],
)
def test_bad_dags_values_fail_with_a_message_naming_them(helm_binary, sets, message):
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, *[a for s in sets for a in ("--set", s)])
    assert message in err.value.stderr, err.value.stderr
