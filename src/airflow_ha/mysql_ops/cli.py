"""``airflow-ha mysql-agent``: the Group Replication agent of one member (a sidecar of each MySQL pod).

Passwords come from the environment, never from arguments: ``MYSQL_ROOT_PASSWORD`` (the account the agent
reads and configures its server with; ``--user``) and ``AIRFLOW_HA_MYSQL_RECOVERY_PASSWORD`` (the recovery
channel's user, ``--recovery-user``, created on each member with ``sql_log_bin=0``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import socket
import sys

ENV_PASSWORD = "MYSQL_ROOT_PASSWORD"
ENV_RECOVERY_PASSWORD = "AIRFLOW_HA_MYSQL_RECOVERY_PASSWORD"


def ordinal_from_hostname(hostname: str) -> int:
    """A StatefulSet pod's ordinal: ``airflow-ha-mysql-gr-2`` -> 2."""
    m = re.search(r"-(\d+)$", hostname.split(".", 1)[0])
    if not m:
        raise ValueError(f"hostname {hostname!r} does not end in -<ordinal>: pass --index")
    return int(m.group(1))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mysql-agent",
        help="Group Replication agent of one MySQL member (bootstrap/join/reboot, HTTP primary check)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--index", type=int, default=None, help="this member's ordinal (default: from the hostname)")
    p.add_argument("--members", required=True, help="every member's MySQL host:port, comma separated, in order")
    p.add_argument(
        "--group-members",
        default="",
        help="every member's group communication host:port, same order (default: the --members hosts, port 33061)",
    )
    p.add_argument("--group-name", required=True, help="group_replication_group_name (a UUID)")
    p.add_argument("--user", default="root")
    p.add_argument("--recovery-user", default="gr_recovery")
    p.add_argument("--ip-allowlist", default="AUTOMATIC")
    p.add_argument("--member-expel-timeout", type=int, default=0)
    p.add_argument("--unreachable-majority-timeout", type=int, default=20)
    p.add_argument(
        "--clone-threshold",
        type=int,
        default=None,
        help="a joiner missing more transactions than this is provisioned by CLONE (default: only when needed)",
    )
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument(
        "--pod-ip",
        default=os.environ.get("POD_IP", ""),
        help="this member's own IP, its group communication address (default: $POD_IP; empty: resolve its name)",
    )
    p.add_argument("--http-host", default="0.0.0.0")
    p.add_argument("--http-port", type=int, default=8008)
    p.set_defaults(func=run)


def config_from_args(args):
    from airflow_ha.mysql_ops.agent import Address, AgentConfig

    members = [Address.parse(m, 3306) for m in args.members.split(",") if m.strip()]
    if args.group_members:
        group = [Address.parse(m, 33061) for m in args.group_members.split(",") if m.strip()]
    else:
        group = [Address(m.host, 33061) for m in members]
    index = args.index if args.index is not None else ordinal_from_hostname(socket.gethostname())
    password = os.environ.get(ENV_PASSWORD, "")
    recovery = os.environ.get(ENV_RECOVERY_PASSWORD, "")
    if not password or not recovery:
        raise SystemExit(f"mysql-agent: set {ENV_PASSWORD} and {ENV_RECOVERY_PASSWORD}")
    return AgentConfig(
        index=index,
        mysql=members,
        group=group,
        group_name=args.group_name,
        user=args.user,
        password=password,
        recovery_user=args.recovery_user,
        recovery_password=recovery,
        ip_allowlist=args.ip_allowlist,
        member_expel_timeout=args.member_expel_timeout,
        unreachable_majority_timeout=args.unreachable_majority_timeout,
        clone_threshold=args.clone_threshold,
        interval=args.interval,
        pod_ip=args.pod_ip,
    )


def run(args) -> int:
    from airflow_ha.mysql_ops.agent import Agent

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s mysql-agent %(levelname)s %(message)s", stream=sys.stdout
    )
    agent = Agent(config_from_args(args))
    server = agent.serve(args.http_host, args.http_port)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    logging.getLogger("airflow_ha.mysql_agent").info(
        "member %d of %d, HTTP checks on %s:%d", agent.config.index, len(agent.config.mysql), *server.server_address
    )
    with contextlib.suppress(KeyboardInterrupt):
        agent.run()
    server.shutdown()
    return 0
