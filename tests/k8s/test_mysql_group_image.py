"""The chart's Group Replication members on the built MySQL image (images/mysql), without Kubernetes.

Three containers run exactly the mysql container the chart renders for mysql.mode groupReplication (its
`bash -ec ... docker-entrypoint.sh mysqld --server-id=... --report-host=...` args, the MYSQL_* env, the
initdb ConfigMap that empties the GTIDs of a new volume), each with its pod's hostname and, as a network
alias, its stable DNS name, on a Docker network with fixed addresses. One ``airflow-ha mysql-agent`` per
member runs on the host (in the cluster it is a sidecar from the Airflow image) with the chart's arguments,
except that it reaches each server by address. Checked: the group forms with every member's report host the
chart's DNS name, and a member whose volume is replaced comes back by CLONE, including the server restart a
clone needs (the container's restart policy standing in for the kubelet).

It lives with the k8s tests because it needs the image the session builds (``scripts/up`` runs
``scripts/build-images``, which also runs ``images/smoke-test`` on every image it builds): under CI a
missing image or Docker daemon fails it; elsewhere (a reused release, another machine's images) it skips.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.harness.failover.backend import fetch_all
from tests.harness.servers.process import free_port, stop_process
from tests.harness.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
IMAGE = os.environ.get("AIRFLOW_HA_MYSQL_IMAGE", "airflow-ha/mysql:9.7")
RELEASE = NAMESPACE = "airflow-ha"

# extended: the release's own group is formed in every k8s run and loses its primary in test_node_lost
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900), pytest.mark.extended]


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr[-2000:]}")
    return proc


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):  # the session built the images: their absence is a broken pipeline
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def rendered(release) -> dict:  # `release`: the session's scripts/up has built this checkout's images
    if shutil.which("docker") is None or docker("info", check=False, timeout=60).returncode != 0:
        _unavailable("no Docker daemon answers")
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        _unavailable(f"{IMAGE} is not built (scripts/build-images mysql)")
    if not HELM.is_file():
        _unavailable(f"{HELM} is missing (python tools/bootstrap.py)")
    out = subprocess.run(
        [
            str(HELM),
            "template",
            RELEASE,
            str(REPO_ROOT / "chart"),
            "-n",
            NAMESPACE,
            "--set",
            "mysql.mode=groupReplication",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out) if o}
    sts = objects[("StatefulSet", f"{RELEASE}-mysql-gr")]
    pod = sts["spec"]["template"]["spec"]
    return {
        "mysql": next(c for c in pod["containers"] if c["name"] == "mysql"),
        "agent": next(c for c in pod["containers"] if c["name"] == "agent"),
        "initdb": objects[("ConfigMap", f"{RELEASE}-mysql-gr-initdb")]["data"],
    }


class Members:
    def __init__(self, rendered: dict, base: Path):
        self.tag = uuid.uuid4().hex[:6]
        self.net = f"gr-{self.tag}"
        self.subnet = f"172.31.{secrets.randbelow(200) + 20}"
        self.base = base
        self.root_pw, self.app_pw, self.recovery_pw = (secrets.token_hex(10) for _ in range(3))
        self.rendered = rendered
        self.agents: list[subprocess.Popen] = []
        self.http_ports = [free_port() for _ in range(3)]
        self.initdb = base / "initdb"
        self.initdb.mkdir()
        for name, text in rendered["initdb"].items():
            (self.initdb / name).write_text(text)
        os.chmod(self.initdb, 0o755)
        for f in self.initdb.iterdir():
            os.chmod(f, 0o644)

    def ip(self, i: int) -> str:
        return f"{self.subnet}.{10 + i}"

    def fqdn(self, i: int) -> str:
        return f"{RELEASE}-mysql-gr-{i}.{RELEASE}-mysql-gr.{NAMESPACE}.svc.cluster.local"

    def name(self, i: int) -> str:
        return f"{self.tag}-mysql-gr-{i}"

    def run_member(self, i: int) -> None:
        data = self.base / f"data-{i}"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        os.chmod(data, 0o777)  # a root-owned local-path volume
        env = {"MYSQL_ROOT_PASSWORD": self.root_pw, "MYSQL_PASSWORD": self.app_pw}
        for e in self.rendered["mysql"]["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
        args = ["run", "-d", "--name", self.name(i), "--hostname", f"{RELEASE}-mysql-gr-{i}"]
        args += ["--network", self.net, "--ip", self.ip(i), "--network-alias", self.fqdn(i), "--restart", "always"]
        args += ["-v", f"{data}:/var/lib/mysql", "-v", f"{self.initdb}:/docker-entrypoint-initdb.d:ro"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        docker(*args, IMAGE, *self.rendered["mysql"]["args"])

    def start(self) -> None:
        docker("network", "create", "--subnet", f"{self.subnet}.0/24", self.net)
        for i in range(3):
            self.run_member(i)
        for i in range(3):
            self.start_agent(i)

    def start_agent(self, i: int) -> None:
        chart = dict(a[2:].split("=", 1) for a in self.rendered["agent"]["args"][2:])
        argv = [sys.executable, "-m", "airflow_ha.cli", "mysql-agent", f"--index={i}"]
        argv += [f"--members={','.join(f'{self.ip(j)}:3306' for j in range(3))}"]  # by address from the host
        argv += [f"--group-members={chart['group-members']}", f"--group-name={chart['group-name']}"]
        argv += [f"--ip-allowlist={self.subnet}.0/24,127.0.0.1/8", "--clone-threshold=1", "--interval=0.5"]
        argv += ["--http-host=127.0.0.1", f"--http-port={self.http_ports[i]}"]
        env = dict(os.environ, MYSQL_ROOT_PASSWORD=self.root_pw, AIRFLOW_HA_MYSQL_RECOVERY_PASSWORD=self.recovery_pw)
        log = open(self.base / f"agent-{i}.log", "a")  # noqa: SIM115 - the process keeps it
        self.agents.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))

    def sql(self, i: int, query: str) -> list[tuple]:
        import MySQLdb

        conn = MySQLdb.connect(host=self.ip(i), user="root", passwd=self.root_pw, connect_timeout=2, autocommit=True)
        return fetch_all(conn, query)

    def view(self, i: int) -> list[tuple]:
        try:
            return self.sql(
                i,
                "SELECT MEMBER_HOST, MEMBER_STATE, MEMBER_ROLE FROM performance_schema.replication_group_members "
                "ORDER BY MEMBER_HOST",
            )
        except Exception:
            return []

    def all_online(self) -> bool:
        views = [self.view(i) for i in range(3)]
        return all(len(v) == 3 and all(s == "ONLINE" for _, s, _ in v) for v in views)

    def diagnostics(self) -> str:
        out = []
        for i in range(3):
            out.append(f"--- {self.name(i)}: {docker('logs', '--tail', '15', self.name(i), check=False).stderr}")
            out.append(f"--- agent {i}: {(self.base / f'agent-{i}.log').read_text(errors='replace')[-1500:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.agents:
            stop_process(p, timeout=10)
        for i in range(3):
            docker("rm", "-f", self.name(i), check=False)
        docker("network", "rm", self.net, check=False)


@pytest.fixture
def members(rendered):
    base = Path(tempfile.mkdtemp(prefix="gr-image-"))
    m = Members(rendered, base)
    try:
        m.start()
        yield m
    finally:
        m.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_chart_members_form_a_group_and_a_new_volume_rejoins_by_clone(members):
    started = time.monotonic()
    try:
        wait_until(members.all_online, 300, "3 members ONLINE", interval=1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{members.diagnostics()}") from exc
    formed = time.monotonic() - started
    view = members.view(0)
    assert [h for h, _, _ in view] == [members.fqdn(i) for i in range(3)]  # report host = the pod's DNS name
    assert sorted(r for _, _, r in view) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert members.sql(0, "SELECT @@server_id")[0][0] == 1 and members.sql(2, "SELECT @@server_id")[0][0] == 3
    [(primary,)] = [(i,) for i in range(3) if members.sql(i, "SELECT @@super_read_only")[0][0] == 0]
    members.sql(primary, "CREATE TABLE airflow.probe (id INT PRIMARY KEY)")
    members.sql(primary, "INSERT INTO airflow.probe VALUES (1), (2), (3)")

    victim = next(i for i in range(3) if i != primary)
    docker("rm", "-f", members.name(victim))
    replaced = time.monotonic()
    members.run_member(victim)  # a new, empty volume
    try:
        wait_until(members.all_online, 300, f"member {victim} back ONLINE", interval=1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{members.diagnostics()}") from exc
    back = time.monotonic() - replaced
    assert members.sql(victim, "SELECT COUNT(*) FROM airflow.probe")[0][0] == 3
    restarts = int(docker("inspect", "-f", "{{.RestartCount}}", members.name(victim)).stdout.strip())
    logs = docker("logs", members.name(victim), check=False).stderr
    assert restarts >= 1 or "clone" in logs.lower(), "the member was not provisioned by CLONE"
    print(
        f"\n[gr-image] 3 containers of the chart's mysql spec ONLINE {formed:.1f} s after start (initialise + "
        f"bootstrap + joins); a replaced volume back ONLINE by CLONE in {back:.1f} s ({restarts} container restart)"
    )
