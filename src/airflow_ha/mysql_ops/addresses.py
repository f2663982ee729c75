"""Member host names resolved off the group's hot paths, the last good answer kept.

XCom, Group Replication's communication thread, resolves its peers' names when it (re)connects and stops
answering while a lookup waits. When a node that runs a CoreDNS pod is lost, the lookups kube-proxy still
sends to that pod time out until the node is declared NotReady (~50 s): measured on the 3-node cluster, a
healthy member's XCom went silent for 55 s, its peer took it for lost, and the whole group fell apart with
one member gone. So the agent hands Group Replication IP addresses (its own pod IP, its peers' last resolved
IPs) and probes its peers by IP; a background thread re-resolves the names, and a DNS outage only delays
learning a restarted peer's new IP (its old one then fails like any lost peer).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("airflow_ha.mysql_agent")


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _lookup(host: str) -> str:
    """The first address the system resolver gives for ``host`` (IPv4 or IPv6)."""
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]


class AddressBook:
    """host name -> IP, answered from memory: :meth:`ip` never waits on DNS."""

    def __init__(
        self,
        hosts: Iterable[str],
        pinned: dict[str, str] | None = None,
        lookup: Callable[[str], str] = _lookup,
        interval: float = 2.0,
    ):
        self.pinned = {h: ip for h, ip in (pinned or {}).items() if ip}
        self.hosts = sorted({h for h in hosts if not is_ip(h) and h not in self.pinned})
        self._lookup = lookup
        self.interval = interval
        self._ips: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ip(self, host: str) -> str:
        """Its IP: pinned (this pod's own), literal, or last resolved; the name itself until it first resolves."""
        if host in self.pinned:
            return self.pinned[host]
        if is_ip(host):
            return host
        with self._lock:
            return self._ips.get(host, host)

    def refresh(self) -> None:
        """Resolve every name once; a name that does not resolve keeps its last IP."""
        for host in self.hosts:
            try:
                ip = self._lookup(host)
            except OSError as exc:
                log.debug("resolving %s: %s (keeping %s)", host, exc, self.ip(host))
                continue
            with self._lock:
                old = self._ips.get(host)
                self._ips[host] = ip
            if old is not None and old != ip:
                log.info("%s moved: %s -> %s", host, old, ip)

    def start(self) -> threading.Thread:
        """Resolve now, then every ``interval`` seconds in a thread of its own (a stalled lookup stalls only it)."""
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.refresh()

        thread = threading.Thread(target=loop, name="address-book", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
