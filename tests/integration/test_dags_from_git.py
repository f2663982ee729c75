"""dags.git through Airflow's own bundle code: the DAG processor's environment as the chart renders it (the
bundle list, the git connection with the user and token the kubelet would expand from the credentials
Secret), Airflow's DagBundlesManager building the GitDagBundle from it, and a real git server asking for
basic auth (git http-backend behind tests/harness/git_http.py). The clone, a push seen on refresh, and a
wrong token refused with the cause. The whole path on the cluster (processor, scheduler, a run on a worker)
is tests/k8s/test_dags_from_git.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import helm_template
from tests.harness.git_http import serve_in_thread

pytestmark = pytest.mark.integration

USER, TOKEN = "dags-bot", "glpat-Xy7_secret.token"

BUNDLE = r"""
import json, os, sys
from airflow.dag_processing.bundles.manager import DagBundlesManager
out = {}
def version(bundle):  # a BundleVersion (its commit) from Airflow 3.3 on
    v = bundle.get_current_version()
    return getattr(v, "version", v)
try:
    bundle = DagBundlesManager().get_bundle(sys.argv[1])
    bundle.initialize()
    out["version"] = version(bundle)
    out["files"] = sorted(p.name for p in bundle.path.iterdir() if p.suffix == ".py")
    if len(sys.argv) > 2:  # refresh, as the DAG processor does every refresh_interval
        bundle.refresh()
        out["refreshed_version"] = version(bundle)
        out["refreshed_files"] = sorted(p.name for p in bundle.path.iterdir() if p.suffix == ".py")
except Exception as exc:
    chain = []  # what the DAG processor's log shows: the exception and its causes
    while exc is not None:
        chain.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    out["error"] = " <- ".join(chain)
print("RESULT " + json.dumps(out), flush=True)
"""


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _commit(work: Path, name: str, dag_id: str) -> str:
    (work / "dags").mkdir(exist_ok=True)
    (work / "dags" / name).write_text(
        f"from airflow.sdk import dag, task\n\n@dag(dag_id={dag_id!r}, schedule=None)\ndef d():\n"
        "    @task\n    def hello():\n        return 1\n    hello()\n\nd()\n"
    )
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", f"add {name}")
    _git(work, "push", "-q", "origin", "HEAD:main")
    return _git(work, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path):
    """A bare repository dags.git served over HTTP with basic auth, and a work tree that pushes to it."""
    root = tmp_path / "srv"
    root.mkdir()
    _git(root, "init", "-q", "--bare", "-b", "main", "dags.git")
    work = tmp_path / "work"
    _git(tmp_path, "clone", "-q", str(root / "dags.git"), str(work))
    _git(work, "checkout", "-q", "-b", "main")
    server = serve_in_thread(str(root), USER, TOKEN)
    try:
        yield work, f"http://127.0.0.1:{server.server_address[1]}/dags.git", server
    finally:
        server.shutdown()


def _dag_processor_env(helm_binary, url: str) -> dict[str, str]:
    text = helm_template(
        helm_binary, "--set", "dags.git.enabled=true", "--set", f"dags.git.repoUrl={url}",
        "--set", "dags.git.subdir=dags", "--set", "dags.git.credentialsSecret.name=git-credentials",
    )  # fmt: skip
    for obj in yaml.safe_load_all(text):
        if obj and obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-dag-processor"):
            return {e["name"]: e.get("value") for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}
    raise AssertionError("no dag-processor Deployment rendered")


def _run_bundle(rendered: dict[str, str], home: Path, token: str, *refresh: str) -> dict:
    """Airflow's bundle manager in a process with the rendered bundle variables, the Secret's values where
    the kubelet puts them, and the storage path moved under ``home``."""
    env = {k: v for k, v in rendered.items() if k.startswith(("AIRFLOW__DAG_PROCESSOR__", "AIRFLOW_CONN_"))}
    env["AIRFLOW_CONN_AIRFLOW_HA_GIT"] = (
        env["AIRFLOW_CONN_AIRFLOW_HA_GIT"]
        .replace("$(AIRFLOW_HA_GIT_USERNAME)", USER)
        .replace("$(AIRFLOW_HA_GIT_TOKEN)", token)
    )
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] = str(home / "bundles")
    full = {"PATH": "/usr/bin:/bin", "HOME": str(home), "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **env}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", BUNDLE, "git", *refresh], env=full, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, f"no result (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line.removeprefix("RESULT "))


def test_the_rendered_git_bundle_clones_with_the_secrets_token_and_follows_pushes(repo, helm_binary, tmp_path):
    work, url, server = repo
    first = _commit(work, "first.py", "git_first")
    rendered = _dag_processor_env(helm_binary, url)
    bundles = json.loads(rendered["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert [b["name"] for b in bundles] == ["dags-folder", "git"]
    assert TOKEN not in json.dumps(rendered)  # the token stays in the Secret

    got = _run_bundle(rendered, tmp_path / "home", TOKEN)
    assert got == {"version": first, "files": ["first.py"]}, got
    assert server.requests_refused >= 1 and server.requests_served >= 2  # git asked, then sent the token

    second = _commit(work, "second.py", "git_second")
    got = _run_bundle(rendered, tmp_path / "home", TOKEN, "refresh")
    assert got["refreshed_version"] == second and got["refreshed_files"] == ["first.py", "second.py"], got


def test_a_wrong_token_is_refused_with_the_cause_and_the_token_never_shown(repo, helm_binary, tmp_path):
    work, url, _server = repo
    _commit(work, "first.py", "git_first")
    got = _run_bundle(_dag_processor_env(helm_binary, url), tmp_path / "home", "not-the-token")
    assert "error" in got, got
    print(f"\nwrong token: {got['error'][:800]}")
    assert "Authentication failed" in got["error"] or "401" in got["error"], got
    assert "not-the-token" not in got["error"]
