"""Fixtures for the chart on a real Kubernetes cluster, and the k8s stage's timings.

The cluster: the one in KUBECONFIG when it answers. Otherwise, with ``AIRFLOW_HA_K8S_UP=1`` (the default of
``tox -e k8s``; 0 turns it off), the session starts one with ``scripts/up --cluster-only``
(``../shared/kube`` with 3 nodes as root, else kind) and stops it with ``scripts/down`` at the end. No
cluster to be had -> every test here is SKIPPED with the reason (never an error, never "no tests").

The release (AIRFLOW_HA_RELEASE/NAMESPACE, default airflow-ha/airflow-ha): the session runs ``scripts/up``
(build the images, load them, ``helm upgrade --install``, wait until every pod is Ready and the migration
Job Complete), so what is tested is this checkout; ``AIRFLOW_HA_K8S_REUSE=1`` tests a deployed release as
it is instead. A release the session installed is uninstalled at the end, also when a test or the install
failed; ``AIRFLOW_HA_K8S_KEEP=1`` keeps the release and the cluster for a look.

At the end, "k8s measurements" lists every phase: cluster start, image build, image load, install to all
Ready, each test's seconds and outcome.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.harness import release as release_access
from tests.harness import setup_budget
from tests.harness.failover import scenarios
from tests.harness.failover.api import AirflowAPI
from tests.harness.failover.kubernetes import KubernetesBackend, PortForward
from tests.harness.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBECTL = REPO_ROOT / ".tools" / "bin" / "kubectl"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
RELEASE = os.environ.get("AIRFLOW_HA_RELEASE", "airflow-ha")
NAMESPACE = os.environ.get("AIRFLOW_HA_NAMESPACE", "airflow-ha")
RESULTS: list[tuple[str, str]] = []  # (what, measured) printed at the end of the session
# "[07:16:26] build-images: phase 'airflow' took 6 s" (scripts/lib.sh phase())
PHASE_LINE = re.compile(r"\] (?P<script>[\w-]+): phase '(?P<phase>[^']+)' took (?P<seconds>\d+) s")


def record(what: str, value: str) -> None:
    RESULTS.append((what, value))
    _live(f"[k8s] {what}: {value}\n")


def _keep() -> bool:
    return os.environ.get("AIRFLOW_HA_K8S_KEEP") == "1"


def pytest_runtest_logreport(report):
    """Each test's seconds (setup + call + teardown) and outcome, in the measurements."""
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "skipped" if report.skipped else report.outcome
        record(f"test {report.nodeid.split('::', 1)[-1]}", f"{outcome} in {report.duration:.0f} s")


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.section("k8s measurements")
        for what, value in RESULTS:
            terminalreporter.write_line(f"{what:<60} {value}")


# The session fixtures' own budgets (their scripts are killed past them); the first test that sets one up gets
# its timeout raised by it (tests/harness/setup_budget.py).
CLUSTER_UP_BUDGET = 900  # scripts/up --cluster-only
RELEASE_UP_BUDGET = 1800  # scripts/up: build and load the images, install, wait until Ready


@pytest.hookimpl(trylast=True)  # after the suite's skip markers
def pytest_collection_modifyitems(config, items):
    setup_budget.extend_first_users(
        items, float(config.getini("timeout") or 0), {"kube": CLUSTER_UP_BUDGET, "release": RELEASE_UP_BUDGET}
    )


_CONFIG: list = []  # the pytest config, for its capture manager (see _live)


def pytest_configure(config):
    _CONFIG[:] = [config]


def _live(text: str) -> None:
    """Write past pytest's capture (it redirects fd 1 and 2), so a CI log shows progress as it happens."""
    capman = _CONFIG[0].pluginmanager.getplugin("capturemanager") if _CONFIG else None
    if capman is None:
        sys.stderr.write(text)
        return
    with capman.global_and_fixture_disabled():
        sys.stderr.write(text)
        sys.stderr.flush()


def stream(cmd: list[str | Path], timeout: float, env: dict | None = None) -> tuple[int, str]:
    """Run a long script with its output shown live (past pytest's capture, so a CI log shows progress)
    and returned; its phase lines are recorded."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        _live(f"  | {line}")
        if phase := PHASE_LINE.search(line):
            record(f"{phase['script']}: {phase['phase']}", f"{phase['seconds']} s")
        if time.monotonic() - start > timeout:
            proc.kill()
            lines.append(f"[killed after {timeout:.0f} s]\n")
            break
    return proc.wait(), "".join(lines)


def run(cmd: list[str | Path], timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def _reachable() -> str | None:
    """None when the cluster in KUBECONFIG answers, else the reason it does not."""
    try:
        from kubernetes import client, config
    except ImportError as exc:
        return f"the kubernetes Python client is not installed ({exc})"
    try:
        # Pass KUBECONFIG explicitly: the client fixes its default path at import time, before the session
        # may start a cluster and set KUBECONFIG.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    except Exception as exc:
        return f"no usable kubeconfig (KUBECONFIG={os.environ.get('KUBECONFIG', '<unset>')}): {exc}"
    try:
        client.VersionApi().get_code(_request_timeout=10)
    except Exception as exc:
        where = os.environ.get("KUBECONFIG", "~/.kube/config")
        return f"the cluster in KUBECONFIG={where} does not answer: {type(exc).__name__}: {str(exc)[:200]}"
    return None


@dataclass
class Kube:
    core: object
    batch: object
    apps: object
    started_here: bool = False  # the cluster was started for this run (and is stopped after it)


def _auto_start() -> bool:
    return os.environ.get("AIRFLOW_HA_K8S_UP", "0").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    reason = _reachable()
    started = False
    try:
        if reason and _auto_start():
            t0 = time.monotonic()
            code, out = stream([REPO_ROOT / "scripts" / "up", "--cluster-only"], timeout=CLUSTER_UP_BUDGET)
            # scripts/up records what it started (~/.cache/airflow-ha/up.state); scripts/down undoes it.
            started = True
            if code == 0:
                os.environ["KUBECONFIG"] = out.strip().splitlines()[-1]
                reason = _reachable()
                record("cluster (scripts/up --cluster-only)", f"{time.monotonic() - t0:.0f} s")
            else:
                reason = f"{reason}; scripts/up --cluster-only: {out.strip().splitlines()[-1] if out.strip() else code}"
        elif reason:
            reason += " (AIRFLOW_HA_K8S_UP=1 would start one)"
        if reason:
            pytest.skip(reason)
        from kubernetes import client

        yield Kube(core=client.CoreV1Api(), batch=client.BatchV1Api(), apps=client.AppsV1Api(), started_here=started)
    finally:
        if started and not _keep():
            t0 = time.monotonic()
            stream([REPO_ROOT / "scripts" / "down"], timeout=900)
            record("teardown: cluster down (scripts/down)", f"{time.monotonic() - t0:.0f} s")


def helm(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        run(["python3", REPO_ROOT / "tools" / "bootstrap.py"])
    return run([HELM, *args], timeout=timeout, check=check)


@dataclass
class Release:
    name: str
    namespace: str
    installed_here: bool
    install_seconds: float | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"


@pytest.fixture(scope="session")
def release(kube: Kube) -> Iterator[Release]:
    if not (REPO_ROOT / "chart" / "Chart.yaml").is_file():
        pytest.skip("chart/Chart.yaml does not exist yet")
    status = helm("status", RELEASE, "-n", NAMESPACE, "-o", "json", check=False)
    deployed = status.returncode == 0 and json.loads(status.stdout).get("info", {}).get("status") == "deployed"
    if deployed and os.environ.get("AIRFLOW_HA_K8S_REUSE") == "1":
        yield Release(RELEASE, NAMESPACE, installed_here=False)
        return
    start = time.monotonic()
    env = dict(os.environ, AIRFLOW_HA_CLUSTER="kubeconfig", AIRFLOW_HA_RELEASE=RELEASE, AIRFLOW_HA_NAMESPACE=NAMESPACE)
    rel = Release(RELEASE, NAMESPACE, installed_here=not deployed)
    try:
        code, out = stream([REPO_ROOT / "scripts" / "up"], timeout=RELEASE_UP_BUDGET, env=env)
        if code != 0:
            pytest.fail(f"scripts/up failed (exit {code}):\n{out[-6000:]}")
        rel.install_seconds = time.monotonic() - start
        for line in out.splitlines():
            if "install -> every pod Ready" in line:
                record("helm install -> all pods Ready + migration Complete", line.split(": ", 2)[-1])
        record("scripts/up (build/load images, install, wait)", f"{rel.install_seconds:.0f} s")
        yield rel
    finally:
        if rel.installed_here and not _keep() and kube.started_here:
            # the cluster itself goes next: waiting minutes for the namespace to terminate first buys nothing
            record("teardown: helm uninstall", "skipped (the cluster started for the run is stopped next)")
        elif rel.installed_here and not _keep():
            t0 = time.monotonic()
            stream([REPO_ROOT / "scripts" / "down", "--keep-cluster"], timeout=900)
            record("teardown: helm uninstall (scripts/down --keep-cluster)", f"{time.monotonic() - t0:.0f} s")


def api_server_service(kube: Kube, rel: Release) -> str:
    svcs = kube.core.list_namespaced_service(rel.namespace, label_selector=f"{rel.selector},component=api-server").items
    if svcs:
        return svcs[0].metadata.name
    return f"{rel.name}-api-server"


@pytest.fixture(scope="session")
def port_forward(kube: Kube, release: Release) -> Iterator[PortForward]:
    """`kubectl port-forward svc/<api-server> PORT:8080`, as the README tells users to reach the UI;
    started again whenever it dies (its pod may be deleted)."""
    service = api_server_service(kube, release)
    pf = PortForward(KUBECTL, release.namespace, lambda: f"svc/{service}", 8080)

    def answers() -> bool:
        try:
            return requests.get(f"{pf.url()}/api/v2/monitor/health", timeout=5).ok
        except (requests.RequestException, TimeoutError):
            pf.close()
            return False

    try:
        wait_until(answers, 300, f"the api-server through kubectl port-forward svc/{service}", interval=2)
        yield pf
    finally:
        pf.close()


def admin_password(kube: Kube, rel: Release) -> tuple[str, str]:
    """(username, password) of the simple-auth-manager admin: AIRFLOW_HA_ADMIN_USER (default admin) and its
    password (tests/harness/release.py)."""
    user = os.environ.get("AIRFLOW_HA_ADMIN_USER", "admin")
    try:
        return user, release_access.admin_password(rel.namespace, rel.name, user, KUBECTL)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def api(kube: Kube, release: Release, port_forward: PortForward) -> AirflowAPI:
    """The REST API as the failover suite uses it: JWT login, retried through a replaced forward."""
    user, password = admin_password(kube, release)
    return AirflowAPI("", base_url_for=port_forward.url, reconnect=port_forward.close, username=user, password=password)


@contextmanager
def probe_backend(kube: Kube, rel: Release) -> Iterator[KubernetesBackend]:
    """The release as the failover suite drives it: settled (recovered, every pod healthy), the probe DAGs
    parsed and ``ha_probe`` unpaused; closed (its port-forwards) afterwards."""
    _user, password = admin_password(kube, rel)
    backend = KubernetesBackend(rel.namespace, rel.name, KUBECTL, password)
    try:
        backend.recover()
        backend.wait_healthy(600)
        wait_until(
            lambda: {scenarios.PROBE_DAG, scenarios.SENSOR_PROBE_DAG} <= backend.api.dag_ids(),
            600,
            "the probe DAGs to be parsed",
            interval=5,
        )
        backend.api.unpause(scenarios.PROBE_DAG)
        yield backend
    finally:
        backend.close()
