"""The chart's replicated metadata database, locally and for real: 3 mysqld 9.7 with Group Replication
(single-primary), one ``airflow-ha mysql-agent`` per member and HAProxy checking each agent's ``/primary``.

The tests run in order on one group (module fixture), each printing what it measured:
bootstrap -> ``airflow db migrate`` through HAProxy -> SIGKILL of the primary under a write loop ->
SIGKILL of every member and a reboot from the most advanced -> a wiped member back by CLONE.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import _unavailable, airflow_env
from tests.harness.servers.debian_root import RootUnavailable
from tests.harness.servers.mysql_group import MySQLGroup
from tests.harness.servers.process import ServerStartError
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    try:
        g = MySQLGroup(base_dir=tmp_path_factory.mktemp("mysql-group"), password=secrets.token_hex(12))
    except RootUnavailable as exc:
        _unavailable(exc)
    try:
        try:
            g.start()
        except ServerStartError as exc:
            if "haproxy is not installed" in str(exc):
                _unavailable(exc)
            raise
        yield g
    finally:
        g.stop()


def proxy_connect(group: MySQLGroup, timeout: int = 2):
    import MySQLdb

    return MySQLdb.connect(
        host="127.0.0.1",
        port=group.proxy_port,
        user="airflow",
        passwd=group.password,
        db="airflow",
        connect_timeout=timeout,
        read_timeout=5,
        write_timeout=5,
        autocommit=True,
    )


def proxy_server_id(group: MySQLGroup) -> int:
    conn = proxy_connect(group)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@server_id")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


@dataclass
class Writer:
    """Inserts rows through HAProxy as fast as one client can, reconnecting after any error. ``acked``: rows
    whose COMMIT returned OK (they must survive anything); a row whose commit raised is in doubt (not counted)."""

    group: MySQLGroup
    acked: list[tuple[int, float]] = field(default_factory=list)  # (seq, time of the OK)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = proxy_connect(self.group, timeout=1)
                seq += 1
                conn.cursor().execute("INSERT INTO ha_writes (seq) VALUES (%s)", (seq,))
                self.acked.append((seq, time.monotonic()))
                time.sleep(0.01)
            except Exception:
                self.errors += 1
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def gap_after(self, t: float) -> float:
        """The longest time without an OK from the last OK before ``t`` on (a write in flight at ``t`` may
        still be acknowledged just after it: the gap is the stall that follows)."""
        times = [at for _, at in self.acked]
        before = [at for at in times if at <= t]
        after = [at for at in times if at > t]
        assert before and after, f"no commits around the event ({len(before)} before, {len(after)} after)"
        window = [max(before), *after]
        return max(b - a for a, b in itertools.pairwise(window))

    def acked_after(self, t: float) -> int:
        return sum(1 for _, at in self.acked if at > t)


def rows_through_proxy(group: MySQLGroup) -> set[int]:
    conn = proxy_connect(group)
    try:
        cur = conn.cursor()
        cur.execute("SELECT seq FROM ha_writes")
        return {int(r[0]) for r in cur.fetchall()}
    finally:
        conn.close()


def wait_proxy_writes(group: MySQLGroup, timeout: float) -> float:
    started = time.monotonic()

    def writable() -> bool:
        try:
            conn = proxy_connect(group, timeout=1)
        except Exception:
            return False
        try:
            conn.cursor().execute("INSERT INTO ha_writes (seq) VALUES (0)")
            return True
        except Exception:
            return False
        finally:
            conn.close()

    wait_until(writable, timeout, "a write through HAProxy", interval=0.2)
    return time.monotonic() - started


def test_first_start_bootstraps_one_group_with_one_primary(group):
    took = group.wait_online(timeout=180)
    states = group.states()
    print(f"\n[gr] first start: 3 members ONLINE {took:.1f} s after the agents started: {states}")
    assert [i for i, (s, r) in states.items() if r == "PRIMARY"] == [0], "first install: ordinal 0 bootstraps"
    # one group: every member sees the same three members ONLINE
    for i in range(group.size):
        rows = group.sql(i, "SELECT MEMBER_STATE FROM performance_schema.replication_group_members")
        assert sorted(r[0] for r in rows) == ["ONLINE"] * 3
    wait_until(lambda: proxy_server_id(group) == 1, 15, "HAProxy routing to member 0", interval=0.2)


def test_airflow_db_migrate_through_haproxy(group, tmp_path):
    group.wait_online(timeout=60)
    env = airflow_env(tmp_path / "home", group.sqlalchemy_url)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=900
    )
    took = time.monotonic() - started
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    check = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "check-migrations", "--migration-wait-timeout=5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    print(f"\n[gr] airflow db migrate through HAProxy: {took:.1f} s")
    # replicated to every member
    for i in range(group.size):
        n = group.sql(i, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'airflow'")[0][0]
        assert n > 50, f"member {i} has {n} Airflow tables"
    conn = proxy_connect(group)
    conn.cursor().execute(
        "CREATE TABLE IF NOT EXISTS ha_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, seq BIGINT NOT NULL, "
        "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))"
    )
    conn.close()


AIRFLOW_CLIENT = """
import sys
from sqlalchemy import text
from airflow import settings
from airflow.utils.session import create_session

print("pre_ping", settings.engine.pool._pre_ping, flush=True)
for line in sys.stdin:
    try:
        with create_session() as session:
            print("ok", session.execute(text("SELECT @@server_id")).scalar(), flush=True)
    except Exception as exc:
        print("error", type(exc).__name__, str(exc).replace(chr(10), " ")[:300], flush=True)
"""


def test_switchover_cuts_the_old_primarys_sessions_and_airflow_reconnects(group, tmp_path):
    """A planned primary change (group_replication_set_as_primary): HAProxy marks the old primary down and shuts
    its sessions at once (on-marked-down shutdown-sessions), and a pooled Airflow connection, cut under it, is
    replaced by the pool's pre-ping instead of failing the next query."""
    group.wait_online(timeout=60)
    [old] = group.primaries()
    new = (old + 1) % group.size
    env = airflow_env(tmp_path / "home", group.sqlalchemy_url)
    client = subprocess.Popen(
        [sys.executable, "-c", AIRFLOW_CLIENT],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert client.stdout.readline().split() == ["pre_ping", "True"]
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().split() == ["ok", str(old + 1)]
        raw = proxy_connect(group)
        raw.cursor().execute("SELECT 1")
        new_uuid = group.sql(new, "SELECT @@server_uuid")[0][0]
        switched_at = time.monotonic()
        group.sql(old, f"SELECT group_replication_set_as_primary('{new_uuid}')")

        def cut() -> bool:
            try:
                raw.cursor().execute("SELECT 1")
                return False
            except Exception:
                return True

        wait_until(cut, 15, "HAProxy to shut the session to the old primary", interval=0.05)
        cut_after = time.monotonic() - switched_at
        routed = wait_proxy_writes(group, 15)
        assert proxy_server_id(group) == new + 1
        client.stdin.write("\n")
        client.stdin.flush()
        answer = client.stdout.readline().split()
        assert answer == ["ok", str(new + 1)], f"Airflow's pooled connection: {answer}"
    finally:
        client.kill()
        client.wait()
    print(
        f"\n[gr] switchover {old} -> {new}: the old primary's proxied session cut {cut_after:.1f} s after the "
        f"switch, writes through HAProxy {routed:.1f} s after that; Airflow's pooled connection reconnected by "
        "pre-ping (no error)"
    )


def test_primary_sigkill_elects_a_new_primary_without_losing_a_commit(group):
    group.wait_online(timeout=60)
    [old] = group.primaries()
    writer = Writer(group).start()
    try:
        wait_until(lambda: len(writer.acked) >= 100, 30, "100 writes through HAProxy")
        killed_at = time.monotonic()
        acked_before = [seq for seq, at in writer.acked if at <= killed_at]
        group.members[old].kill()
        wait_until(lambda: len(group.primaries()) == 1, 60, "a new primary", interval=0.1)
        elected = time.monotonic() - killed_at
        [new] = group.primaries()
        wait_until(lambda: writer.acked_after(killed_at) >= 20, 60, "writes through HAProxy after the kill")
        gap = writer.gap_after(killed_at)
    finally:
        writer.stop()
    assert new != old
    assert proxy_server_id(group) == new + 1
    present = rows_through_proxy(group)
    lost = [s for s in acked_before if s not in present]
    lost_any = [s for s, _ in writer.acked if s not in present]
    assert not lost, f"{len(lost)} rows committed before the kill are gone"
    assert not lost_any, f"{len(lost_any)} acknowledged rows are gone"

    restarted_at = time.monotonic()
    group.members[old].restart()
    rejoined = group.wait_online(timeout=120)
    states = group.states()
    assert states[old][0] == "ONLINE" and states[new][1] == "PRIMARY"
    print(
        f"\n[gr] primary {old} SIGKILLed: member {new} PRIMARY after {elected:.1f} s; write gap through HAProxy "
        f"{gap:.1f} s; {len(acked_before)} rows committed before the kill, {len(writer.acked)} acknowledged in all, "
        f"0 lost ({writer.errors} client errors/reconnects); member {old} restarted and ONLINE again "
        f"{rejoined:.1f} s after its restart (server start + recovery {time.monotonic() - restarted_at:.1f} s)"
    )


def test_graceful_primary_shutdown_hands_over_quickly(group):
    """SIGTERM of the primary (a drain, a rolling upgrade): mysqld leaves the group cleanly, so the others elect
    at once instead of waiting for the failure detector; measured like the SIGKILL case."""
    group.wait_online(timeout=60)
    [old] = group.primaries()
    others = [i for i in range(group.size) if i != old]
    writer = Writer(group).start()
    try:
        wait_until(lambda: len(writer.acked) >= 50, 30, "50 writes through HAProxy")
        stopped_at = time.monotonic()
        threading.Thread(target=group.members[old].stop, daemon=True).start()

        def elected() -> bool:
            return any(r == "PRIMARY" and s == "ONLINE" for s, r in group.states_of(others).values())

        wait_until(elected, 60, "a new primary", interval=0.1)
        election = time.monotonic() - stopped_at
        wait_until(lambda: writer.acked_after(stopped_at) >= 20, 60, "writes after the shutdown")
        gap = writer.gap_after(stopped_at)
    finally:
        writer.stop()
    present = rows_through_proxy(group)
    lost = [s for s, _ in writer.acked if s not in present]
    assert not lost, f"{len(lost)} acknowledged rows lost"
    wait_until(lambda: not group.members[old].running, 60, "the old primary's shutdown")
    group.members[old].restart()
    rejoined = group.wait_online(timeout=120)
    print(
        f"\n[gr] primary {old} stopped (SIGTERM): new primary after {election:.1f} s, write gap through HAProxy "
        f"{gap:.1f} s, 0 lost; restarted, ONLINE again {rejoined:.1f} s after its server answered"
    )


def test_frozen_primary_is_replaced_and_rejoins_after_it_thaws(group):
    """SIGSTOP of the primary (a hung server or node): the majority elects another; the frozen member's check
    times out so HAProxy stops using it; after SIGCONT it finds itself expelled (ERROR, read only), and its
    agent stops and rejoins it. Its /primary never answers 200 once thawed."""
    import urllib.request

    group.wait_online(timeout=60)
    [old] = group.primaries()
    others = [i for i in range(group.size) if i != old]
    agent_port = group.agents[old].http_port
    writer = Writer(group).start()
    try:
        wait_until(lambda: len(writer.acked) >= 50, 30, "50 writes through HAProxy")
        stopped_at = time.monotonic()
        os.kill(group.members[old].proc.pid, signal.SIGSTOP)
        try:

            def elected() -> bool:
                states = group.states_of(others)
                return any(r == "PRIMARY" and s == "ONLINE" for s, r in states.values())

            wait_until(elected, 60, "a new primary among the others", interval=0.1)
            election = time.monotonic() - stopped_at
            wait_until(lambda: writer.acked_after(stopped_at) >= 20, 60, "writes after the freeze")
            gap = writer.gap_after(stopped_at)
        finally:
            os.kill(group.members[old].proc.pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        answers: list[int] = []
        while time.monotonic() - thawed_at < 5:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/primary", timeout=2) as r:
                    answers.append(r.status)
            except Exception as exc:
                answers.append(getattr(exc, "code", 0))
            time.sleep(0.1)
    finally:
        writer.stop()
    assert 200 not in answers, f"the thawed old primary's agent answered 200 ({answers.count(200)} times)"
    rejoined = group.wait_online(timeout=120)
    present = rows_through_proxy(group)
    lost = [s for s, _ in writer.acked if s not in present]
    assert not lost, f"{len(lost)} acknowledged rows lost"
    assert old not in group.primaries()
    log = group.agents[old].log_path.read_text(errors="replace")
    print(
        f"\n[gr] primary {old} SIGSTOPped: new primary after {election:.1f} s, write gap through HAProxy {gap:.1f} s, "
        f"0 lost; thawed: never 200 on /primary, ONLINE again {rejoined:.1f} s after SIGCONT "
        f"(agent: {'stop -> stopped' in log and 'join -> joined' in log})"
    )


def test_full_outage_reboots_from_the_most_advanced_member(group):
    group.wait_online(timeout=60)
    [primary] = group.primaries()
    secondaries = [i for i in range(group.size) if i != primary]
    writer = Writer(group).start()
    try:
        wait_until(lambda: len(writer.acked) >= 50, 30, "50 writes through HAProxy")
        # The secondaries first: the primary then goes on alone, but can commit nothing without a majority.
        for i in secondaries:
            group.members[i].kill()
        time.sleep(0.5)
        group.members[primary].kill()
    finally:
        writer.stop()
    acked = [seq for seq, _ in writer.acked]
    killed_at = time.monotonic()
    threads = [threading.Thread(target=m.restart) for m in group.members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    servers_up = time.monotonic() - killed_at
    rebooted = group.wait_online(timeout=180)
    writable = wait_proxy_writes(group, 30)
    present = rows_through_proxy(group)
    lost = [s for s in acked if s not in present]
    assert not lost, f"{len(lost)} acknowledged rows lost in the full outage"
    logs = "\n".join(a.log_path.read_text(errors="replace") for a in group.agents if a is not None)
    assert logs.count("bootstrap -> bootstrapped") == 2, "exactly one bootstrap for the first install + this reboot"
    [new_primary] = group.primaries()
    print(
        f"\n[gr] full outage (all 3 SIGKILLed, {len(acked)} rows acknowledged): servers back {servers_up:.1f} s, "
        f"group rebooted by member {new_primary} and all ONLINE {rebooted:.1f} s after that, writes through "
        f"HAProxy {writable:.1f} s later; 0 rows lost"
    )


def test_wiped_member_rejoins_by_clone(group):
    group.wait_online(timeout=60)
    [primary] = group.primaries()
    victim = next(i for i in range(group.size) if i != primary)
    member = group.members[victim]
    member.kill()
    member.wipe()
    started = time.monotonic()
    member.start()  # a new empty data dir, as on a new volume
    took = group.wait_online(timeout=240)
    total = time.monotonic() - started
    log = member.log_path.read_text(errors="replace")
    assert "Clone" in log or "clone" in log, "no clone in the member's log"
    agent_log = group.agents[victim].log_path.read_text(errors="replace")
    assert "CLONE" in agent_log
    n = group.sql(victim, "SELECT COUNT(*) FROM airflow.ha_writes")[0][0]
    assert n == group.sql(primary, "SELECT COUNT(*) FROM airflow.ha_writes")[0][0]
    print(
        f"\n[gr] member {victim} wiped: back ONLINE by CLONE {total:.1f} s after its empty server started "
        f"(initialise + clone + restart + recovery; {took:.1f} s waiting for ONLINE); {member.restarts} restart(s)"
    )
