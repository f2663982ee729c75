"""The agent's thin I/O: reading a member's report from its server's answers, the settings it applies, the
CLI's configuration (no server: a fake cursor)."""

from __future__ import annotations

import argparse

import pytest

from airflow_ha.mysql_ops import cli
from airflow_ha.mysql_ops.agent import CLONE_THRESHOLD_OFF, Address, Agent, AgentConfig, read_report

U = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


class FakeCursor:
    def __init__(self, answers: dict[str, list[tuple]]):
        self.answers = answers
        self.rows: list[tuple] = []
        self.executed: list[str] = []

    def execute(self, sql: str, *args) -> None:
        self.executed.append(sql)
        for key, rows in self.answers.items():
            if key in sql:
                self.rows = rows
                return
        self.rows = []

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return list(self.rows)


class FakeConn:
    def __init__(self, answers):
        self.cur = FakeCursor(answers)

    def cursor(self):
        return self.cur


def answers(members, received=None, executed=f"{U}:1-10", sro=1):
    return {
        "@@server_uuid": [("uuid-0", executed, sro, "m0.example", 3306)],
        "replication_group_members": members,
        "replication_connection_status": [(received,)] if received is not None else [],
    }


def test_report_of_an_online_primary():
    rows = [
        ("uuid-0", "m0.example", 3306, "ONLINE", "PRIMARY"),
        ("uuid-1", "m1.example", 3306, "ONLINE", "SECONDARY"),
        ("uuid-2", "m2.example", 3306, "UNREACHABLE", "SECONDARY"),
    ]
    r = read_report(FakeConn(answers(rows, sro=0)), 0)
    assert (r.state, r.role, r.super_read_only, r.address) == ("ONLINE", "PRIMARY", False, "m0.example:3306")
    assert len(r.view) == 3 and r.quorate


def test_report_counts_received_but_unapplied_transactions():
    r = read_report(FakeConn(answers([("uuid-0", "m0", 3306, "OFFLINE", "")], received=f"{U}:11-15")), 0)
    assert len(r.gtids) == 15
    assert r.state == "OFFLINE" and r.view == () and r.role == ""


def test_report_without_group_replication_rows_is_offline():
    r = read_report(FakeConn(answers([])), 2)
    assert (r.index, r.state, r.reachable) == (2, "OFFLINE", True)
    # an empty MEMBER_ID row (the plugin installed, never started) is ignored too
    r = read_report(FakeConn(answers([("", "", None, "OFFLINE", "")])), 2)
    assert r.state == "OFFLINE"


def config(**kw) -> AgentConfig:
    base = dict(
        index=1,
        mysql=[Address("m0", 3306), Address("m1", 3306), Address("m2", 3306)],
        group=[Address("m0", 33061), Address("m1", 33061), Address("m2", 33061)],
        group_name="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        user="root",
        password="pw",
        recovery_user="gr_recovery",
        recovery_password="rpw",
    )
    base.update(kw)
    return AgentConfig(**base)


def test_settings():
    s = Agent(config(clone_threshold=1000, ip_allowlist="10.0.0.0/8")).settings()
    assert s["group_replication_local_address"] == "'m1:33061'"
    assert s["group_replication_group_seeds"] == "'m0:33061,m1:33061,m2:33061'"
    assert s["group_replication_single_primary_mode"] == "ON"
    assert s["group_replication_enforce_update_everywhere_checks"] == "OFF"
    assert s["group_replication_clone_threshold"] == "1000"
    assert s["group_replication_autorejoin_tries"] == "0"
    assert s["group_replication_ip_allowlist"] == "'10.0.0.0/8'"
    assert Agent(config()).settings()["group_replication_clone_threshold"] == str(CLONE_THRESHOLD_OFF)


def test_group_communication_and_probes_go_by_ip():
    """XCom gets IPs (its own pod IP, its peers' last resolved ones): it resolves names on its one thread,
    and a lookup stalled on a lost CoreDNS pod got a healthy member expelled on the 3-node cluster."""
    agent = Agent(config(pod_ip="10.244.1.6"))
    resolved = {"m0": "10.244.0.5", "m2": "10.244.2.7"}
    agent.addresses._lookup = resolved.__getitem__
    agent.addresses.refresh()
    s = agent.settings()
    assert s["group_replication_local_address"] == "'10.244.1.6:33061'"
    assert s["group_replication_group_seeds"] == "'10.244.0.5:33061,10.244.1.6:33061,10.244.2.7:33061'"
    assert str(agent.dial(Address("m1", 3306))) == "10.244.1.6:3306"  # its own probe: no DNS either
    assert str(agent.dial(Address("m0", 3306))) == "10.244.0.5:3306"
    assert str(Address("fd00::7", 33061)) == "[fd00::7]:33061"


def test_prepare_installs_plugins_and_the_recovery_user_without_binlogging():
    conn = FakeConn({"information_schema.PLUGINS": [], "@@super_read_only, @@read_only": [(1, 1)]})
    Agent(config()).prepare(conn)
    sql = conn.cur.executed
    assert "INSTALL PLUGIN group_replication SONAME 'group_replication.so'" in sql
    assert "INSTALL PLUGIN clone SONAME 'mysql_clone.so'" in sql
    user_stmts = [i for i, q in enumerate(sql) if "USER" in q and "gr_recovery" in q]
    assert (
        sql.index("SET SESSION sql_log_bin = 0")
        < min(user_stmts)
        < max(user_stmts)
        < sql.index("SET SESSION sql_log_bin = 1")
    )
    assert sql.index("SET GLOBAL super_read_only = OFF") < min(user_stmts)
    assert "SET GLOBAL super_read_only = ON" in sql  # restored: GR sets it as it needs
    assert "SET PERSIST group_replication_start_on_boot = OFF" in sql


def test_config_mismatch_is_refused():
    with pytest.raises(ValueError):
        config(group=[Address("m0", 33061)])
    with pytest.raises(ValueError):
        config(index=3)


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [("airflow-ha-mysql-gr-2", 2), ("x-10.headless.ns.svc.cluster.local", 10), ("mysql-gr-0", 0)],
)
def test_ordinal_from_hostname(hostname, ordinal):
    assert cli.ordinal_from_hostname(hostname) == ordinal


def test_ordinal_from_hostname_needs_a_number():
    with pytest.raises(ValueError):
        cli.ordinal_from_hostname("mysql")


def parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    return parser.parse_args(["mysql-agent", *argv])


def test_cli_config(monkeypatch):
    monkeypatch.setenv(cli.ENV_PASSWORD, "root-pw")
    monkeypatch.setenv(cli.ENV_RECOVERY_PASSWORD, "rec-pw")
    args = parse(["--index=2", "--members=a:3306,b,c:3307", "--group-name=g", "--clone-threshold=5"])
    c = cli.config_from_args(args)
    assert [str(a) for a in c.mysql] == ["a:3306", "b:3306", "c:3307"]
    assert [str(a) for a in c.group] == ["a:33061", "b:33061", "c:33061"]
    assert (c.index, c.password, c.recovery_password, c.clone_threshold) == (2, "root-pw", "rec-pw", 5)


def test_cli_pod_ip_comes_from_the_downward_api(monkeypatch):
    monkeypatch.setenv(cli.ENV_PASSWORD, "root-pw")
    monkeypatch.setenv(cli.ENV_RECOVERY_PASSWORD, "rec-pw")
    monkeypatch.setenv("POD_IP", "10.244.2.9")
    assert cli.config_from_args(parse(["--index=0", "--members=a", "--group-name=g"])).pod_ip == "10.244.2.9"


def test_cli_needs_the_passwords_in_the_environment(monkeypatch):
    monkeypatch.delenv(cli.ENV_PASSWORD, raising=False)
    monkeypatch.delenv(cli.ENV_RECOVERY_PASSWORD, raising=False)
    with pytest.raises(SystemExit):
        cli.config_from_args(parse(["--index=0", "--members=a", "--group-name=g"]))
