"""The per-member Group Replication agent: a thin I/O loop around :func:`airflow_ha.mysql_ops.planner.plan`,
plus the HTTP health endpoint HAProxy checks.

Every ``interval`` seconds it reads every seed member (in parallel, short timeouts), asks the planner what
its own member should do and does it: configure and START GROUP_REPLICATION (join), the same with
``group_replication_bootstrap_group`` (bootstrap; the decision is re-taken on fresh reports right before, so
a member that came up in between is never bootstrapped over), or STOP GROUP_REPLICATION (leave ERROR).
Before a start it makes its server ready for the group: the group_replication and clone plugins installed
(INSTALL PLUGIN is remembered in ``mysql.plugin``), the recovery user with the password of the Secret
(written with ``sql_log_bin=0``: local, no GTID), every ``group_replication_*`` setting, and
``group_replication_start_on_boot`` persisted OFF so that only the agent starts Group Replication.

HTTP (``--http-port``): ``GET /primary`` 200 when the local member is an ONLINE PRIMARY in a view with a
majority, ``super_read_only`` is OFF and no other member ONLINE in a majority sees another primary or a group
without this member (a thawed or healed old primary still sees its old view for seconds), and its server
has answered for ``THAW_HOLD`` seconds since it last stopped answering (:class:`SilenceGuard`), 503 otherwise
(HAProxy's ``option httpchk``; like Percona's clustercheck); ``GET /ready`` 200 when ONLINE in either role
(the pod's readiness); ``GET /status`` JSON. Each check reads the local server afresh (1 s timeouts); the
other members' reports come from the loop's last round (read afresh when older than 3 rounds).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from airflow_ha.mysql_ops.addresses import AddressBook
from airflow_ha.mysql_ops.gtid import GtidSet
from airflow_ha.mysql_ops.planner import (
    OFFLINE,
    Action,
    Decision,
    MemberReport,
    ViewMember,
    plan,
    primary_check,
    ready,
)

log = logging.getLogger("airflow_ha.mysql_agent")

PLUGINS = {"group_replication": "group_replication.so", "clone": "mysql_clone.so"}
RECOVERY_PRIVILEGES = "REPLICATION SLAVE, BACKUP_ADMIN, CLONE_ADMIN, CONNECTION_ADMIN, GROUP_REPLICATION_STREAM"
CLONE_THRESHOLD_OFF = 9223372036854775807
ACTION_TIMEOUT = 300.0  # seconds an action's statement may take (a join's START GROUP_REPLICATION)


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> Address:
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            return cls(text.strip(), default_port)
        return cls(host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{host}:{self.port}"


@dataclass
class AgentConfig:
    index: int
    mysql: list[Address]  # every member's MySQL address, in ordinal order
    group: list[Address]  # every member's group communication (XCom) address, same order
    group_name: str
    user: str
    password: str
    recovery_user: str
    recovery_password: str
    ip_allowlist: str = "AUTOMATIC"
    member_expel_timeout: int = 0
    unreachable_majority_timeout: int = 20
    clone_threshold: int | None = None  # None: only when donors purged what is needed
    interval: float = 1.0
    connect_timeout: float = 2.0
    pod_ip: str = ""  # this member's own IP (the downward API's status.podIP); "" resolves its name
    extra_settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.mysql) != len(self.group):
            raise ValueError("one group address per member")
        if not 0 <= self.index < len(self.mysql):
            raise ValueError(f"member index {self.index} not in 0..{len(self.mysql) - 1}")


def _connect(address: Address, user: str, password: str, timeout: float, read_timeout: float | None = None):
    import MySQLdb

    read = max(1, int(read_timeout if read_timeout is not None else timeout * 2))
    return MySQLdb.connect(
        host=address.host,
        port=address.port,
        user=user,
        passwd=password,
        connect_timeout=max(1, int(timeout)),
        read_timeout=read,
        write_timeout=read,
        autocommit=True,
    )


def read_report(conn, index: int) -> MemberReport:
    """One member's report from an open connection to its server."""
    cur = conn.cursor()
    cur.execute(
        "SELECT @@server_uuid, @@gtid_executed, @@super_read_only, COALESCE(@@report_host, @@hostname), "
        "COALESCE(@@report_port, @@port)"
    )
    uuid, executed, sro, report_host, report_port = cur.fetchone()
    cur.execute(
        "SELECT MEMBER_ID, MEMBER_HOST, MEMBER_PORT, MEMBER_STATE, MEMBER_ROLE "
        "FROM performance_schema.replication_group_members"
    )
    rows = cur.fetchall()
    received = ""
    cur.execute(
        "SELECT RECEIVED_TRANSACTION_SET FROM performance_schema.replication_connection_status "
        "WHERE CHANNEL_NAME = 'group_replication_applier'"
    )
    row = cur.fetchone()
    if row and row[0]:
        received = row[0]
    view = tuple(
        ViewMember(uuid=r[0] or "", host=r[1] or "", port=int(r[2] or 0), state=r[3] or OFFLINE, role=r[4] or "")
        for r in rows
        if r[0]
    )
    own = next((m for m in view if m.uuid == uuid), None)
    state = own.state if own else OFFLINE
    role = own.role if own and state != OFFLINE else ""
    if state == OFFLINE:
        view = ()
    return MemberReport(
        index=index,
        reachable=True,
        uuid=uuid,
        state=state,
        role=role,
        view=view,
        gtids=GtidSet.parse(executed) | GtidSet.parse(received),
        super_read_only=bool(int(sro)),
        address=f"{report_host}:{int(report_port)}",
    )


def probe(address: Address, index: int, user: str, password: str, timeout: float = 2.0) -> MemberReport:
    try:
        conn = _connect(address, user, password, timeout)
    except Exception as exc:  # MySQLdb.OperationalError: down, refused, DNS, auth
        return MemberReport(index=index, reachable=False, error=_short(exc))
    try:
        return read_report(conn, index)
    except Exception as exc:
        return MemberReport(index=index, reachable=False, error=_short(exc))
    finally:
        conn.close()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# A server that stopped answering (SIGSTOP, a hung disk, its node cut off) and answers again still reports its
# old view - ONLINE PRIMARY of a majority - until it learns it was expelled, which took < 0.2 s in the
# integration test. The peers' reports that contradict it can be missing right then (their probes timing out
# on a loaded node: seen once in CI, a single 200 right after the thaw), so /primary holds 503 this long.
THAW_HOLD = 3.0


class SilenceGuard:
    """Says to wait after the local server comes back from a silence of at least ``min_silence`` seconds (a
    single slow probe on a loaded node is not one); a server that never went silent (a secondary just elected
    primary, the agent's own restart) is not held."""

    def __init__(self, hold: float = THAW_HOLD, min_silence: float = 2.0) -> None:
        self.hold, self.min_silence = hold, min_silence
        self._silent_from: float | None = None  # first unanswered probe of the current silence
        self._silent_to = 0.0  # its last unanswered probe
        self._back_at: float | None = None
        self._lock = threading.Lock()

    def observe(self, answered: bool, now: float) -> str | None:
        """The reason to refuse the primary check now, or None."""
        with self._lock:
            if not answered:
                if self._silent_from is None:
                    self._silent_from = now
                self._silent_to, self._back_at = now, None
                return None
            if self._silent_from is not None:
                if self._silent_to - self._silent_from >= self.min_silence:
                    self._back_at = now
                self._silent_from = None
            if self._back_at is not None and now - self._back_at < self.hold:
                return (
                    f"server answers again since {now - self._back_at:.1f}s after a silence: holding "
                    f"{self.hold:g}s for it to learn whether the group expelled it"
                )
            return None


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        # the loop and each proxy's check (two proxies, concurrently) probe the members in parallel
        self.pool = ThreadPoolExecutor(max_workers=4 * len(config.mysql), thread_name_prefix="probe")
        self.last_reports: list[MemberReport] = []
        self.last_reports_at = 0.0  # monotonic time the loop's last round ended
        self.last_decision: Decision | None = None
        self.actions: list[tuple[float, str, str]] = []  # (time, action, outcome), the last 50
        self._stop = threading.Event()
        self.silence = SilenceGuard()
        own = {config.mysql[config.index].host, config.group[config.index].host}
        self.addresses = AddressBook(
            [a.host for a in (*config.mysql, *config.group)], pinned={h: config.pod_ip for h in own}
        )

    def dial(self, address: Address) -> Address:
        """``address`` by IP: neither the agent's probes nor XCom wait on DNS (see ``addresses``)."""
        return Address(self.addresses.ip(address.host), address.port)

    # -- reading -----------------------------------------------------------------------------------
    def probe_all(self) -> list[MemberReport]:
        return self._probe_members(self.config.connect_timeout)

    def _probe_members(self, timeout: float, skip: int | None = None) -> list[MemberReport]:
        """Every member's report (but ``skip``'s), read in parallel."""
        c = self.config
        futures = [
            self.pool.submit(probe, self.dial(addr), i, c.user, c.password, timeout)
            for i, addr in enumerate(c.mysql)
            if i != skip
        ]
        return [f.result() for f in futures]

    def probe_self(self, timeout: float = 1.0) -> MemberReport:
        c = self.config
        return probe(self.dial(c.mysql[c.index]), c.index, c.user, c.password, timeout)

    # -- acting ------------------------------------------------------------------------------------
    def _local(self):
        """The connection actions run on: START GROUP_REPLICATION returns only once the member joined (or
        failed to), which can take a while on a slow network."""
        c = self.config
        return _connect(self.dial(c.mysql[c.index]), c.user, c.password, max(c.connect_timeout, 5.0), ACTION_TIMEOUT)

    def settings(self) -> dict[str, str]:
        """Every group_replication_* value set before a START (SQL literals). XCom's addresses are IPs: it
        resolves names on its one thread, and a stalled lookup there gets a healthy member expelled."""
        c = self.config
        seeds = ",".join(str(self.dial(a)) for a in c.group)
        out = {
            "group_replication_group_name": _quote(c.group_name),
            "group_replication_local_address": _quote(str(self.dial(c.group[c.index]))),
            "group_replication_group_seeds": _quote(seeds),
            "group_replication_ip_allowlist": _quote(c.ip_allowlist),
            "group_replication_single_primary_mode": "ON",
            "group_replication_enforce_update_everywhere_checks": "OFF",
            "group_replication_recovery_use_ssl": "ON",
            "group_replication_recovery_get_public_key": "ON",
            "group_replication_member_expel_timeout": str(int(c.member_expel_timeout)),
            "group_replication_unreachable_majority_timeout": str(int(c.unreachable_majority_timeout)),
            # The agent rejoins at once; GR's own auto-rejoin would only race with it.
            "group_replication_autorejoin_tries": "0",
            "group_replication_exit_state_action": "'READ_ONLY'",
            "group_replication_clone_threshold": str(
                CLONE_THRESHOLD_OFF if c.clone_threshold is None else max(1, int(c.clone_threshold))
            ),
        }
        out.update(c.extra_settings)
        return out

    def prepare(self, conn) -> None:
        """Plugins, recovery user and settings: idempotent, before every START."""
        c = self.config
        cur = conn.cursor()
        cur.execute("SELECT PLUGIN_NAME, PLUGIN_STATUS FROM information_schema.PLUGINS")
        have = {name.lower(): status for name, status in cur.fetchall()}
        for name, soname in PLUGINS.items():
            if name not in have:
                log.info("INSTALL PLUGIN %s SONAME '%s'", name, soname)
                cur.execute(f"INSTALL PLUGIN {name} SONAME '{soname}'")
        cur.execute("SELECT @@super_read_only, @@read_only")
        sro, ro = cur.fetchone()
        cur.execute("SET SESSION sql_log_bin = 0")
        try:
            if int(sro) or int(ro):
                # Outside the group (OFFLINE): HAProxy sends nobody here, so briefly writable for the local user.
                cur.execute("SET GLOBAL super_read_only = OFF")
            user = f"{_quote(c.recovery_user)}@'%'"
            cur.execute(f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {_quote(c.recovery_password)}")
            cur.execute(f"ALTER USER {user} IDENTIFIED BY {_quote(c.recovery_password)}")
            cur.execute(f"GRANT {RECOVERY_PRIVILEGES} ON *.* TO {user}")
        finally:
            if int(sro) or int(ro):
                cur.execute("SET GLOBAL super_read_only = ON")
            cur.execute("SET SESSION sql_log_bin = 1")
        cur.execute("SET PERSIST group_replication_start_on_boot = OFF")
        for name, value in self.settings().items():
            cur.execute(f"SET GLOBAL {name} = {value}")

    def _start(self, conn, bootstrap: bool) -> None:
        c = self.config
        cur = conn.cursor()
        creds = f"USER={_quote(c.recovery_user)}, PASSWORD={_quote(c.recovery_password)}"
        if bootstrap:
            cur.execute("SET GLOBAL group_replication_bootstrap_group = ON")
            try:
                cur.execute(f"START GROUP_REPLICATION {creds}")
            finally:
                cur.execute("SET GLOBAL group_replication_bootstrap_group = OFF")
        else:
            cur.execute(f"START GROUP_REPLICATION {creds}")

    def act(self, decision: Decision) -> str:
        if decision.action in (Action.NONE, Action.WAIT):
            return "-"
        conn = self._local()
        try:
            if decision.action == Action.STOP:
                conn.cursor().execute("STOP GROUP_REPLICATION")
                return "stopped"
            self.prepare(conn)
            if decision.action == Action.BOOTSTRAP:
                # Re-decide on fresh reports: a member may have bootstrapped or come back meanwhile.
                again = plan(self.config.index, self.probe_all(), self.config.clone_threshold)
                if again.action != Action.BOOTSTRAP:
                    return f"bootstrap called off: {again.reason}"
                self._start(conn, bootstrap=True)
                return "bootstrapped"
            self._start(conn, bootstrap=False)
            return "joined"
        finally:
            conn.close()

    # -- the loop ------------------------------------------------------------------------------------
    def step(self) -> Decision:
        reports = self.probe_all()
        self.silence.observe(reports[self.config.index].reachable, time.monotonic())
        decision = plan(self.config.index, reports, self.config.clone_threshold)
        changed = self.last_decision is None or (decision.action, decision.reason) != (
            self.last_decision.action,
            self.last_decision.reason,
        )
        self.last_reports, self.last_decision = reports, decision
        self.last_reports_at = time.monotonic()
        if changed:
            log.info("%s: %s | %s", decision.action.value, decision.reason, " | ".join(r.describe() for r in reports))
        if decision.action in (Action.NONE, Action.WAIT):
            return decision
        started = time.monotonic()
        try:
            outcome = self.act(decision)
        except Exception as exc:
            outcome = f"failed: {_short(exc)}"
        took = time.monotonic() - started
        log.info("%s -> %s (%.1f s)", decision.action.value, outcome, took)
        self.actions = [*self.actions[-49:], (time.time(), decision.action.value, outcome)]
        return decision

    def run(self) -> None:
        self.addresses.start()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception:
                log.exception("agent round failed")
            self._stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self.addresses.stop()

    # -- HTTP ----------------------------------------------------------------------------------------
    def peers(self, timeout: float = 1.0) -> list[MemberReport]:
        """The other members' reports: the loop's when its last round ended within two intervals (every
        node's HAProxy asks every member each check, so per-check probes would multiply), else read now (a
        round that stalled on a frozen member must not answer with a view from before the freeze)."""
        c = self.config
        if self.last_reports and time.monotonic() - self.last_reports_at <= max(2.0, 2 * c.interval):
            return [r for r in self.last_reports if r.index != c.index]
        return self._probe_members(timeout, skip=c.index)

    def primary(self) -> tuple[bool, str]:
        """The proxy's check: this member is the writable primary, and the majority agrees."""
        mine = self.probe_self()
        held = self.silence.observe(mine.reachable, time.monotonic())
        if held:
            return False, held
        return primary_check(mine, self.peers())

    def status(self) -> dict:
        mine = self.probe_self()
        return {
            "index": self.config.index,
            "member": _report_json(mine),
            "primary": primary_check(mine, self.peers())[0],
            "ready": ready(mine)[0],
            "decision": None
            if self.last_decision is None
            else {"action": self.last_decision.action.value, "reason": self.last_decision.reason},
            "members": [_report_json(r) for r in self.last_reports],
            "actions": [{"at": t, "action": a, "outcome": o} for t, a, o in self.actions],
        }

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/primary", "/", "/health"):
                    ok, why = agent.primary()
                    self._send(200 if ok else 503, why + "\n")
                elif path == "/ready":
                    ok, why = ready(agent.probe_self())
                    self._send(200 if ok else 503, why + "\n")
                elif path == "/status":
                    self._send(200, json.dumps(agent.status(), indent=1) + "\n", "application/json")
                else:
                    self._send(404, "not found\n")

            def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # one line per check would flood the log
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                # HAProxy closes a check's connection as soon as it read the status line.
                pass

        server = Server((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
        return server


def _report_json(r: MemberReport) -> dict:
    return {
        "index": r.index,
        "reachable": r.reachable,
        "uuid": r.uuid,
        "state": r.state,
        "role": r.role,
        "quorate": r.quorate,
        "transactions": len(r.gtids),
        "gtids": str(r.gtids),
        "super_read_only": r.super_read_only,
        "view": [{"host": m.host, "port": m.port, "state": m.state, "role": m.role} for m in r.view],
        "error": r.error,
    }
