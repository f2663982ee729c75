"""`helm upgrade` from the previous chart while DAGs run, and DAGs from git, on a second, small release.

The release is installed from the chart of the last landed submission (``PREVIOUS``, taken from this
repository's history with ``git archive``), then upgraded to this chart while the failover probe's runs are
in flight; the upgrade also turns on ``dags.git``, as a team adopting the feature would. Checked after it:
every run succeeds, the generated secrets and the data (a Variable, encrypted with the Fernet key) are
kept. Then the git bundle: the repository's DAG runs, a DAG pushed afterwards appears and runs pinned to
its commit, and the time from the push to its first successful run is recorded.

The git server is a pod of the Airflow image (it has git and Python) running tests/harness/git_http.py:
smart HTTP with basic auth, the user and token from a Secret that the release's credentialsSecret names.

What is not the user's path: both chart versions run this checkout's images (the image of the previous
submission is not rebuilt); the image tag is the same, so this is what `helm upgrade` of the chart alone does.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time

import pytest
import yaml

from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.kubernetes import PortForward
from tests.harness.release import delete_namespace
from tests.harness.waiting import wait_until
from tests.k8s.conftest import (
    HELM,
    KUBECTL,
    NAMESPACE,
    REPO_ROOT,
    Kube,
    Release,
    _keep,
    admin_password,
    record,
    run,
)

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(3600)]

# The chart of the last landed submission; AIRFLOW_HA_UPGRADE_FROM names another commit.
PREVIOUS = os.environ.get("AIRFLOW_HA_UPGRADE_FROM", "f90953b")
UP_NAMESPACE = f"{NAMESPACE}-upgrade"
UP_RELEASE = "airflow-ha-up"
GIT_USER, GIT_SECRET = "dags-bot", "git-credentials"
PROBE_QUEUES = "default,q1,q2,q3,q4,q5"  # dags/ha_probe.py
SECRETS_KEPT = ("fernet-key", "api-secrets", "redis-password", "mysql-passwords", "admin-password")

GIT_DAG = """from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule=None, tags=["git"])
def from_git():
    @task
    def hello():
        return "{dag_id}"

    hello()


from_git()
"""

# The git server's start: a bare repository with one DAG, pushed from a work tree the test pushes from again.
GIT_SERVER_START = """set -e
mkdir -p /srv/git /srv/work
git init -q --bare -b main /srv/git/dags.git
git clone -q /srv/git/dags.git /srv/work 2>/dev/null
cd /srv/work && git checkout -q -b main && mkdir dags && cp /etc/git-server/git_hello.py dags/
git add -A && git commit -qm "git_hello" && git push -q origin HEAD:main
exec python /etc/git-server/git_http.py --root /srv/git --port 8080
"""


def _images() -> dict:
    return yaml.safe_load((REPO_ROOT / "values" / "kubeone.yaml").read_text())["images"]


NEW_IMAGES = ("logStore",)  # images the previous chart does not know (its schema refuses them)


def _small_values() -> dict:
    """One of each Airflow component and the smallest broker and database: this release proves the upgrade
    and the git path; the first one proves failover. Valid for both chart versions."""
    images = {name: image for name, image in _images().items() if name not in NEW_IMAGES}
    small = {"resources": {"requests": {"cpu": "10m", "memory": "256Mi"}}}
    # The api-server and the database answer the test: they get the first release's CPU weight (50m, as
    # values/kubeone.yaml), not 10m. Under a busy first release on 2 cores, a 10m api-server answered nothing
    # within 10 s for 90 s, twice (stop 31's CI and this session's), through a new port-forward too.
    answering = {"resources": {"requests": {"cpu": "50m", "memory": "256Mi"}}}
    return {
        "images": images,
        "apiServer": {"replicas": 1, **answering},
        "scheduler": {"replicas": 1, **small},
        "dagProcessor": small,
        "triggerer": small,
        "workers": {"replicas": 1, "concurrency": 6, **small,
                    "args": ["airflow", "celery", "worker", "--queues", PROBE_QUEUES]},
        "sensorShards": {"enabled": False},
        "workerWatcher": {"enabled": False},
        "redis": {"masters": 3, "replicasPerMaster": 0, "persistence": {"size": "256Mi"},
                  "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}},
        "mysql": {"mode": "single", "persistence": {"size": "1Gi"},
                  "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}}},
    }  # fmt: skip


def _upgrade_values() -> dict:
    """What the upgrade adds: dags.git, and the images of components the previous chart did not have."""
    return {"images": {name: _images()[name] for name in NEW_IMAGES}, "dags": {"git": {
        "enabled": True, "repoUrl": f"http://git-server.{UP_NAMESPACE}.svc.cluster.local:8080/dags.git",
        "ref": "main", "subdir": "dags", "credentialsSecret": {"name": GIT_SECRET},
    }}}  # fmt: skip


def _apply(objects: list[dict]) -> None:
    run([KUBECTL, "apply", "-f", "-"], input=yaml.safe_dump_all(objects))


def _git_server(image: str, token: str) -> list[dict]:
    meta = {"namespace": UP_NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": GIT_SECRET, **meta},
         "stringData": {"username": GIT_USER, "token": token}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "git-server", **meta}, "data": {
            "git_http.py": (REPO_ROOT / "tests" / "harness" / "git_http.py").read_text(),
            "git_hello.py": GIT_DAG.format(dag_id="git_hello")}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "git-server", "labels": {"app": "git-server"}, **meta},
         "spec": {"containers": [{
             "name": "git", "image": image, "imagePullPolicy": "IfNotPresent",
             "command": ["sh", "-c", GIT_SERVER_START],
             "env": [{"name": "GIT_HTTP_USER", "valueFrom": {"secretKeyRef": {"name": GIT_SECRET, "key": "username"}}},
                     {"name": "GIT_HTTP_TOKEN", "valueFrom": {"secretKeyRef": {"name": GIT_SECRET, "key": "token"}}},
                     *({"name": f"GIT_{who}_{what}", "value": value} for who in ("AUTHOR", "COMMITTER")
                       for what, value in (("NAME", "t"), ("EMAIL", "t@example.com")))],
             "ports": [{"containerPort": 8080}],
             "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
             "volumeMounts": [{"name": "code", "mountPath": "/etc/git-server"}, {"name": "srv", "mountPath": "/srv"}],
             "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}}}],
             "volumes": [{"name": "code", "configMap": {"name": "git-server"}}, {"name": "srv", "emptyDir": {}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "git-server", **meta},
         "spec": {"selector": {"app": "git-server"}, "ports": [{"port": 8080, "targetPort": 8080}]}},
    ]  # fmt: skip


def _secret_data() -> dict[str, dict[str, str]]:
    out = {}
    for name in SECRETS_KEPT:
        got = run([KUBECTL, "-n", UP_NAMESPACE, "get", "secret", f"{UP_RELEASE}-{name}", "-o", "json"])
        out[name] = json.loads(got.stdout)["data"]
    return out


def _wait_ready() -> None:
    run(["python3", REPO_ROOT / "scripts" / "wait-ready", "--namespace", UP_NAMESPACE, "--release", UP_RELEASE,
         "--timeout", "900", "--kubectl", KUBECTL], timeout=960)  # fmt: skip


def _previous_chart(tmp) -> str:
    known = subprocess.run(["git", "-C", REPO_ROOT, "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {PREVIOUS} (the previous chart) is not in this clone's history (shallow clone?)")
    archive = subprocess.run(["git", "-C", REPO_ROOT, "archive", PREVIOUS, "chart"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
    return str(tmp / "chart")


@pytest.fixture(scope="module")
def upgraded(kube: Kube, release: Release, tmp_path_factory):
    """The small release installed from PREVIOUS's chart, probe runs in flight, upgraded to this chart with
    dags.git on. Yields (release, api, what was seen before the upgrade)."""
    tmp = tmp_path_factory.mktemp("upgrade")
    old_chart = _previous_chart(tmp)
    delete_namespace(UP_NAMESPACE)  # a leftover of an earlier run
    run([KUBECTL, "create", "namespace", UP_NAMESPACE])
    small = tmp / "small.yaml"
    small.write_text(yaml.safe_dump(_small_values()))
    git = tmp / "git.yaml"
    git.write_text(yaml.safe_dump(_upgrade_values()))
    rel = Release(UP_RELEASE, UP_NAMESPACE, installed_here=True)
    pf = PortForward(KUBECTL, UP_NAMESPACE, lambda: f"svc/{UP_RELEASE}-api-server", 8080)
    try:
        images = _small_values()["images"]
        tag = yaml.safe_load((REPO_ROOT / "chart" / "Chart.yaml").read_text())["appVersion"]
        _apply(_git_server(f"{images['airflow']['repository']}:{tag}", secrets.token_urlsafe(24)))
        t0 = time.monotonic()
        # 25 min: the previous chart's Redis bootstrap may lose 300 s per try to a resolver hiccup (fixed since)
        run(
            [HELM, "install", UP_RELEASE, old_chart, "-n", UP_NAMESPACE, "-f", small, "--timeout", "1500s"],
            timeout=1560,
        )
        _wait_ready()
        record(f"small release, previous chart ({PREVIOUS}): install -> Ready", f"{time.monotonic() - t0:.0f} s")

        user, password = admin_password(kube, rel)
        # a small release next to the busy first one: its install took 201-537 s in CI, so its answers get
        # 30 s each and 5 minutes in all, not the failover suite's 10 s and 90 s
        api = AirflowAPI("", base_url_for=pf.url, reconnect=pf.close, username=user, password=password,
                         timeout=30.0, unavailable_for=300.0)  # fmt: skip
        wait_until(api.is_up, 300, "the small release's api-server", interval=3)
        wait_until(lambda: "ha_probe" in api.dag_ids(), 300, "ha_probe parsed", interval=5)
        api.unpause("ha_probe")
        marker = secrets.token_hex(8)
        api.set_variable("upgrade_marker", marker)
        before = {"secrets": _secret_data(), "marker": marker, "runs": []}
        # 2 runs x 24 tasks of 15 s on 6 slots (~2 min of work): they are running when the upgrade replaces
        # every pod (the worker's warm shutdown lets its tasks finish; the rest run on the new worker)
        for i in range(2):
            before["runs"].append(api.trigger("ha_probe", f"upgrade_{i}_{secrets.token_hex(3)}", conf={"seconds": 15}))

        def running() -> bool:
            return any(ti["state"] == "running" for r in before["runs"] for ti in api.task_instances("ha_probe", r))

        wait_until(running, 300, "a probe task running before the upgrade", interval=2)

        before["unfinished"] = sum(
            1 for r in before["runs"] for ti in api.task_instances("ha_probe", r) if ti["state"] != "success"
        )
        t0 = time.monotonic()
        run([HELM, "upgrade", UP_RELEASE, REPO_ROOT / "chart", "-n", UP_NAMESPACE, "-f", small, "-f", git,
             "--timeout", "900s"], timeout=960)  # fmt: skip
        _wait_ready()
        before["upgrade_seconds"] = time.monotonic() - t0
        record("helm upgrade to this chart (dags.git on) -> Ready", f"{before['upgrade_seconds']:.0f} s")
        yield rel, api, before
    finally:
        pf.close()
        if kube.started_here and not _keep():
            record("teardown: upgrade release", "skipped (the cluster started for the run is stopped next)")
        elif not _keep():
            run([HELM, "uninstall", UP_RELEASE, "-n", UP_NAMESPACE, "--wait=false"], check=False)
            delete_namespace(UP_NAMESPACE)


def test_upgrade_from_the_previous_chart_keeps_runs_secrets_and_data(upgraded):
    _rel, api, before = upgraded
    states = api.wait_for_runs([("ha_probe", r) for r in before["runs"]], 900)
    assert set(states.values()) == {"success"}, states
    tis = [ti for r in before["runs"] for ti in api.task_instances("ha_probe", r)]
    assert tis and all(ti["state"] == "success" for ti in tis), [(ti["task_id"], ti["state"]) for ti in tis]
    assert before["unfinished"] > 0, "every probe task had finished before the upgrade: nothing ran through it"
    assert _secret_data() == before["secrets"], "a generated Secret changed in the upgrade"
    assert api.variable("upgrade_marker") == before["marker"]  # decrypted with the kept Fernet key
    retried = sum(1 for ti in tis if ti.get("try_number", 1) > 1)
    record("upgrade while DAGs ran", f"{len(before['runs'])} ha_probe runs, {len(tis)} tasks "
           f"({before['unfinished']} not finished when `helm upgrade` started): all success "
           f"({retried} retried); {len(SECRETS_KEPT)} Secrets and the Variable kept")  # fmt: skip


def _push(dag_id: str) -> str:
    script = (f"cd /srv/work && cat > dags/{dag_id}.py && git add -A && git commit -qm {dag_id} "
              "&& git push -q origin HEAD:main && git rev-parse HEAD")  # fmt: skip
    out = run([KUBECTL, "-n", UP_NAMESPACE, "exec", "-i", "git-server", "--", "sh", "-c", script],
              input=GIT_DAG.format(dag_id=dag_id))  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def test_dags_from_git_run_and_a_pushed_dag_runs_without_an_image_rebuild(upgraded):
    _rel, api, _before = upgraded
    wait_until(lambda: "git_hello" in api.dag_ids(), 300, "git_hello from the git bundle", interval=3)
    dag = api.request("GET", "/api/v2/dags/git_hello").json()
    assert dag["bundle_name"] == "git", dag
    api.unpause("git_hello")
    first = api.trigger("git_hello", f"git_{secrets.token_hex(3)}")
    assert api.wait_for_runs([("git_hello", first)], 600)[("git_hello", first)] == "success"

    dag_id = f"git_pushed_{secrets.token_hex(3)}"
    pushed_at = time.monotonic()
    commit = _push(dag_id)
    wait_until(lambda: dag_id in api.dag_ids(), 300, f"{dag_id} after the push", interval=1)
    listed = time.monotonic() - pushed_at
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, "first")
    state = api.wait_for_runs([(dag_id, run_id)], 600)[(dag_id, run_id)]
    succeeded = time.monotonic() - pushed_at
    assert state == "success", f"{dag_id}/{run_id} ended {state}"
    dag_run = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
    assert dag_run["bundle_version"] == commit, dag_run  # the run is pinned to the pushed commit
    record("DAGs from git: push -> DAG listed / first run success",
           f"{listed:.0f} s / {succeeded:.0f} s (refreshIntervalSeconds 30, the chart's default); "
           f"run pinned to {commit[:12]}")  # fmt: skip


def test_the_git_token_reaches_git_only_through_the_secret(upgraded):
    """No Airflow pod spec or ConfigMap of the release carries the token; the git server refused requests
    without it, and the DAG processor's clone came with it."""
    secret = json.loads(run([KUBECTL, "-n", UP_NAMESPACE, "get", "secret", GIT_SECRET, "-o", "json"]).stdout)
    token = base64.b64decode(secret["data"]["token"]).decode()
    manifest = run([HELM, "get", "manifest", UP_RELEASE, "-n", UP_NAMESPACE]).stdout
    assert token not in manifest and GIT_SECRET in manifest
    log = run([KUBECTL, "-n", UP_NAMESPACE, "logs", "git-server"]).stdout
    assert '"GET /dags.git/info/refs?service=git-upload-pack HTTP/1.1" 401' in log, log[-2000:]
    assert '"POST /dags.git/git-upload-pack HTTP/1.1" 200' in log, log[-2000:]
