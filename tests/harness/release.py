"""A release of the chart on a cluster, as the k8s tests and the cluster benchmarks both reach it: its admin
login, and its namespace deleted for good."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.harness.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBECTL = REPO_ROOT / ".tools" / "bin" / "kubectl"


def admin_password(namespace: str, release: str, user: str = "admin", kubectl: Path = KUBECTL) -> str:
    """The simple-auth-manager password of ``user``: AIRFLOW_HA_ADMIN_PASSWORD when set, else the release's
    Secret (``scripts/admin-password`` knows where the chart keeps it). Raises RuntimeError saying why not."""
    if os.environ.get("AIRFLOW_HA_ADMIN_PASSWORD"):
        return os.environ["AIRFLOW_HA_ADMIN_PASSWORD"]
    argv = [REPO_ROOT / "scripts" / "admin-password", "--namespace", namespace, "--release", release]
    proc = subprocess.run(
        ["python3", *map(str, argv), "--kubectl", str(kubectl), "--user", user],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"no admin password for release {release} in {namespace}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def delete_namespace(namespace: str, kubectl: Path = KUBECTL, timeout: float = 300) -> None:
    """``namespace`` gone for good, so it can be made again: its pods go first without their grace period (a
    worker's warm shutdown would hold the namespace for its 600 s)."""

    def kube(*args: str, wait: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(kubectl), *args], capture_output=True, text=True, timeout=wait)

    kube("-n", namespace, "delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false")
    kube("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", f"--timeout={timeout:.0f}s",
         wait=timeout + 30)  # fmt: skip
    wait_until(lambda: kube("get", "namespace", namespace).returncode != 0, timeout, f"namespace {namespace} deleted",
               interval=3)  # fmt: skip
