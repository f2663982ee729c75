"""`airflow-ha broker-check` argument handling without a server (bad URL, unreachable seed)."""

from __future__ import annotations

import socket

from airflow_ha.cli import main


def test_broker_check_bad_url_exits_nonzero(capsys):
    assert main(["broker-check", "--url", "rediscluster://h:notaport"]) == 1
    assert "bad port 'notaport'" in capsys.readouterr().err


def test_broker_check_unreachable_seed(capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["broker-check", "--url", f"rediscluster://127.0.0.1:{port}", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "no Redis Cluster seed node reachable" in err and f"127.0.0.1:{port}" in err
