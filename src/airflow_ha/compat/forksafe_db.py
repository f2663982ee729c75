"""Forked children must never close the parent's MySQL connections.

Airflow's triggerer and dag-processor fork children while their SQLAlchemy pool holds open MySQLdb
connections. Airflow's at-fork hook calls ``engine.dispose(close=False)`` in the child, which only
drops the pool's references; when the child's garbage collector later frees those connection objects,
mysqlclient's destructor runs ``mysql_close()`` and sends ``COM_QUIT`` down the socket the child shares
with its parent. The server then ends the *parent's* connection, and whatever query the parent has in
flight fails with ``(2013, 'Lost connection to server during query')``. Seen here as sensor-shard
triggerers crashing right after their triggers fired (events lost until a restart re-ran them);
reproduced in ``tests/integration/test_compat.py``.

The fix: remember every MySQLdb connection a pool opens, and in a forked child point each one's
socket descriptor at ``/dev/null`` (``dup2``) before anything can close it. The child's descriptor
table is its own, so the parent's socket is untouched, and the child's eventual ``COM_QUIT`` goes
nowhere.
"""

from __future__ import annotations

import os
import weakref

_CONNECTIONS: weakref.WeakSet = weakref.WeakSet()
_installed = False


def _remember(dbapi_connection, _record) -> None:
    if hasattr(dbapi_connection, "fileno") and type(dbapi_connection).__module__.startswith("MySQLdb"):
        _CONNECTIONS.add(dbapi_connection)


def _remember_existing() -> None:
    import gc
    import sys

    mysqldb = sys.modules.get("MySQLdb.connections")
    if mysqldb is None:
        return  # MySQLdb not imported yet: no connection can exist
    for obj in gc.get_objects():
        if isinstance(obj, mysqldb.Connection):
            _CONNECTIONS.add(obj)


def neutralise_inherited() -> int:
    """In a forked child: detach every inherited MySQL socket; returns how many were detached."""
    detached = 0
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for connection in list(_CONNECTIONS):
            try:
                fd = connection.fileno()
            except Exception:  # already closed
                continue
            os.dup2(devnull, fd)
            detached += 1
    finally:
        os.close(devnull)
    return detached


def install() -> None:
    global _installed
    if _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    # A class-level listener covers every pool, also those created before this ran; connections opened
    # before it are found once on the heap.
    event.listen(Pool, "connect", _remember)
    _remember_existing()
    os.register_at_fork(after_in_child=neutralise_inherited)
    _installed = True
