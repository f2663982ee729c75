"""`airflow-ha redis-reconcile`: the plan/apply/verify loop against an in-memory Redis Cluster model
(the real one is exercised on Kubernetes by tests/k8s), and its argument handling."""

from __future__ import annotations

import pytest

from airflow_ha.cli import main
from airflow_ha.redis_ops import cli
from airflow_ha.redis_ops.cluster_nodes import parse_cluster_nodes
from airflow_ha.redis_ops.placement import colocated_pairs, topology


class FakeCluster:
    """Pods on Kubernetes nodes, each a Redis Cluster node; CLUSTER REPLICATE changes a replica's master.

    ``migrate_back``: Redis' replica migration undoes the first re-pair once (a replica returns to the
    master it left), as it may when a master is briefly orphaned between two commands.
    """

    port = 6379

    def __init__(self, layout: dict[str, tuple[str, str | None]], pod_nodes: dict[str, str], migrate_back=False):
        self.layout = dict(layout)  # pod -> (role, master pod)
        self.pod_nodes = pod_nodes
        self.ips = {p: f"10.0.0.{i}" for i, p in enumerate(sorted(layout))}  # pod -> its IP now
        self.listed: dict[tuple[str, str], str] = {}  # (viewer, peer) -> the IP viewer lists peer at, if not now
        self.dials: dict[str, str] = {}  # replica -> the master IP its replication link dials, if not now
        self.sent: list[tuple[str, str]] = []
        self.migrate_back = migrate_back
        self.unsettled_reads = 0

    def pods(self):
        if self.unsettled_reads:
            self.unsettled_reads -= 1
            raise cli.NotSettled("pod redis-9 is Pending")
        return [cli.Pod(p, self.ips[p], self.pod_nodes[p]) for p in sorted(self.layout)]

    def restart_everything(self) -> None:
        """Every pod back with a new IP; each nodes.conf still lists every peer at its old one."""
        for viewer in self.layout:
            for peer in self.layout:
                if peer != viewer:  # its own line Redis corrects from what its peers see (MYIP)
                    self.listed[(viewer, peer)] = self.ips[peer]
        self.ips = {p: f"10.0.1.{i}" for i, p in enumerate(sorted(self.layout))}

    def meet(self, pod, ip: str, port: int) -> None:
        """Redis updates a known node's address from the handshake's reply."""
        self.sent.append((pod.name, f"MEET {ip}"))
        peer = next(p for p, now in self.ips.items() if now == ip)
        self.listed.pop((pod.name, peer), None)

    def cluster_nodes(self, pod) -> str:
        lines = []
        for name, (role, master) in sorted(self.layout.items()):
            flags = ("myself," if name == pod.name else "") + ("master" if role == "master" else "slave")
            ip = self.listed.get((pod.name, name), self.ips[name])
            if ip != self.ips[name] and name != pod.name:
                flags += ",fail?"  # nobody answers at the old address
            slots = " 0-100" if role == "master" else ""
            of = f"id-{master}" if master else "-"
            lines.append(f"id-{name} {ip}:6379@16379,{name}.h {flags} {of} 0 0 1 connected{slots}")
        return "\n".join(lines)

    def master_host(self, pod) -> str:
        role, master = self.layout[pod.name]
        return "" if role == "master" else self.dials.get(pod.name, self.ips[master])

    def replicate(self, pod, master_id: str) -> None:
        assert self.layout[pod.name][0] == "replica", f"REPLICATE sent to master {pod.name}"
        self.dials.pop(pod.name, None)  # replication re-pointed at the master's address the bus has
        old = self.layout[pod.name][1]
        self.sent.append((pod.name, master_id.removeprefix("id-")))
        self.layout[pod.name] = ("replica", master_id.removeprefix("id-"))
        if self.migrate_back:
            self.migrate_back = False
            self.layout[pod.name] = ("replica", old)

    def failover(self, pod) -> None:
        """CLUSTER FAILOVER on a replica: it and its master swap roles (other replicas follow the new one)."""
        role, master = self.layout[pod.name]
        assert role == "replica", f"FAILOVER sent to master {pod.name}"
        self.sent.append((pod.name, "FAILOVER"))
        for name, (r, m) in list(self.layout.items()):
            if r == "replica" and m == master:
                self.layout[name] = ("replica", pod.name)
        self.layout[pod.name] = ("master", None)
        self.layout[master] = ("replica", pod.name)

    def colocated(self):
        views = {p.name: parse_cluster_nodes(self.cluster_nodes(p)) for p in self.pods()}
        return colocated_pairs(topology(views, self.pod_nodes))


BOOTSTRAP = {
    "redis-0": ("master", None),
    "redis-1": ("master", None),
    "redis-2": ("master", None),
    "redis-3": ("replica", "redis-2"),
    "redis-4": ("replica", "redis-0"),
    "redis-5": ("replica", "redis-1"),
}
NODES = {"redis-0": "k3", "redis-1": "k2", "redis-2": "k1", "redis-3": "k2", "redis-4": "k3", "redis-5": "k1"}


def test_reconcile_repairs_the_bootstrap_placement(capsys):
    fake = FakeCluster(BOOTSTRAP, NODES)
    assert fake.colocated() == [("redis-0", "redis-4", "k3")]
    assert cli.reconcile(fake, rounds=3, wait=0, settle=0, dry_run=False) == 0
    assert fake.colocated() == [] and len(fake.sent) == 2
    out = capsys.readouterr().out
    assert "co-located: redis-0+redis-4 on k3" in out and "no master shares a node with its replica" in out


def test_reconcile_survives_a_replica_migrating_back_in_between():
    fake = FakeCluster(BOOTSTRAP, NODES, migrate_back=True)
    assert cli.reconcile(fake, rounds=3, wait=0, settle=0, dry_run=False) == 0
    assert fake.colocated() == [] and len(fake.sent) > 2


def test_dry_run_sends_nothing(capsys):
    fake = FakeCluster(BOOTSTRAP, NODES)
    assert cli.reconcile(fake, rounds=3, wait=0, settle=0, dry_run=True) == 0
    assert fake.sent == [] and fake.colocated() != []
    assert "would send redis-" in capsys.readouterr().out


def test_reconcile_waits_for_a_settled_cluster_then_acts():
    fake = FakeCluster(BOOTSTRAP, NODES)
    fake.unsettled_reads = 2
    assert cli.reconcile(fake, rounds=3, wait=5, settle=0.01, dry_run=False) == 0
    assert fake.colocated() == []


def test_reconcile_gives_up_on_an_unsettled_cluster():
    fake = FakeCluster(BOOTSTRAP, NODES)
    fake.unsettled_reads = 10**6
    with pytest.raises(cli.NotSettled, match="Pending"):
        cli.reconcile(fake, rounds=3, wait=0.05, settle=0.01, dry_run=False)
    assert fake.sent == []


def test_one_node_is_reported_and_left_alone(capsys):
    fake = FakeCluster(BOOTSTRAP, dict.fromkeys(NODES, "only"))
    assert cli.reconcile(fake, rounds=3, wait=0, settle=0, dry_run=False) == 0
    assert fake.sent == [] and "one Kubernetes node" in capsys.readouterr().out


def test_still_colocated_after_every_round_fails():
    class Stubborn(FakeCluster):
        def replicate(self, pod, master_id):  # the command is accepted but nothing changes
            self.sent.append((pod.name, master_id))

    fake = Stubborn(BOOTSTRAP, NODES)
    assert cli.reconcile(fake, rounds=2, wait=0, settle=0, dry_run=False) == 1
    assert len(fake.sent) == 4


def test_cli_needs_a_selector(monkeypatch, capsys):
    monkeypatch.delenv(cli.ENV_SELECTOR, raising=False)
    assert main(["redis-reconcile"]) == 2
    assert "no pod selector" in capsys.readouterr().err


def test_password_from_the_broker_url(monkeypatch):
    monkeypatch.delenv(cli.ENV_PASSWORD, raising=False)
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", "rediscluster://:s%40cret@h-0:6379,h-1:6379")
    assert cli._password(None) == "s@cret"
    monkeypatch.setenv(cli.ENV_PASSWORD, "explicit")
    assert cli._password(None) == "explicit"


def test_masters_crowded_on_one_node_are_spread_first(capsys):
    """Two of three masters on k3 (failovers can do that): k3's loss would leave one master, no majority to
    promote a replica. A replica elsewhere takes over one of them (CLUSTER FAILOVER); then pairs are fixed."""
    layout = {
        "redis-0": ("master", None),
        "redis-1": ("master", None),
        "redis-2": ("master", None),
        "redis-3": ("replica", "redis-0"),
        "redis-4": ("replica", "redis-1"),
        "redis-5": ("replica", "redis-2"),
    }
    nodes = {"redis-0": "k3", "redis-1": "k3", "redis-2": "k1", "redis-3": "k2", "redis-4": "k1", "redis-5": "k2"}
    fake = FakeCluster(layout, nodes)
    assert cli.reconcile(fake, rounds=4, wait=0, settle=0, dry_run=False) == 0
    assert fake.sent[0] == ("redis-3", "FAILOVER")  # k2 had no master; redis-3 replicated a k3 master
    masters = [p for p, (role, _) in fake.layout.items() if role == "master"]
    assert sorted(nodes[m] for m in masters) == ["k1", "k2", "k3"]
    assert fake.colocated() == []
    assert "CLUSTER FAILOVER" in capsys.readouterr().out


def test_a_cluster_whose_pods_all_restarted_with_new_ips_is_met_again_then_reconciled(capsys):
    fake = FakeCluster(BOOTSTRAP, NODES)
    fake.restart_everything()
    assert cli.reconcile(fake, rounds=3, wait=5, settle=0.01, dry_run=False) == 0
    meets = [s for s in fake.sent if s[1].startswith("MEET")]
    assert len(meets) == 6 * 5  # each pod learns each peer's new address once
    assert fake.listed == {} and fake.colocated() == []
    out = capsys.readouterr().out
    assert "CLUSTER MEET 10.0.1.1 6379 to redis-0 (it lists redis-1 at 10.0.0.1)" in out


def test_dry_run_names_the_stale_addresses_and_sends_nothing(capsys):
    fake = FakeCluster(BOOTSTRAP, NODES)
    fake.restart_everything()
    with pytest.raises(cli.NotSettled, match="stale"):
        cli.reconcile(fake, rounds=3, wait=0.05, settle=0.01, dry_run=True)
    assert fake.sent == [] and "would send CLUSTER MEET" in capsys.readouterr().out


def test_a_replica_dialling_its_masters_old_ip_is_repointed(capsys):
    # the bus healed through gossip, which leaves a replica's replication link at the old address
    fake = FakeCluster(BOOTSTRAP, NODES)
    fake.dials["redis-3"] = "10.0.9.9"
    assert cli.reconcile(fake, rounds=3, wait=5, settle=0.01, dry_run=False) == 0
    assert ("redis-3", "redis-2") in fake.sent and fake.dials == {}
    out = capsys.readouterr().out
    assert "to redis-3: its replication dials 10.0.9.9, redis-2 is at 10.0.0.2" in out
