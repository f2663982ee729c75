"""Debian's Prometheus (bookworm, 2.42) on 127.0.0.1, scraping what a test names, queried over its HTTP API.

The binary is Debian's package unpacked into the cache (``apt-get download`` + ``dpkg-deb -x``), not
installed: installing it would start a system service on 0.0.0.0:9090. ``AIRFLOW_HA_PROMETHEUS_BIN`` names
another binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.servers.process import ServerStartError, free_port, log_tail, stop_process
from tests.harness.waiting import wait_until

CACHE = Path(os.environ.get("AIRFLOW_HA_CACHE", Path.home() / ".cache" / "airflow-ha")) / "prometheus"


def prometheus_binary() -> Path:
    given = os.environ.get("AIRFLOW_HA_PROMETHEUS_BIN")
    if given:
        return Path(given)
    binary = CACHE / "root" / "usr" / "bin" / "prometheus"
    if binary.is_file():
        return binary
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise ServerStartError(
            "Prometheus is Debian's package here: needs apt-get and dpkg-deb (or AIRFLOW_HA_PROMETHEUS_BIN)"
        )
    download = CACHE / "download"
    download.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["apt-get", "download", "prometheus"], cwd=download, capture_output=True, text=True, timeout=600
    )
    debs = sorted(download.glob("prometheus_*.deb"))
    if proc.returncode != 0 or not debs:
        raise ServerStartError(f"apt-get download prometheus failed:\n{proc.stderr[-2000:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(CACHE / "root")], check=True, timeout=300)
    return binary


@dataclass
class Prometheus:
    base_dir: Path
    targets: list[str]  # host:port scraped every scrape_interval
    scrape_interval: str = "1s"
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        binary = prometheus_binary()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
                    "scrape_configs": [{"job_name": "airflow-ha", "static_configs": [{"targets": self.targets}]}],
                }
            )
        )
        self.port = free_port()
        self.log = self.base_dir / "prometheus.log"
        argv = [
            str(binary), f"--config.file={config}", f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=2h",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(self._ready, 60, f"Prometheus ready on {self.url}", interval=0.3)
        except TimeoutError as exc:
            raise ServerStartError(f"{exc}\n{log_tail(self.log)}") from exc

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise ServerStartError(f"Prometheus exited:\n{log_tail(self.log)}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _api(self, path: str, **params) -> list:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
            body = json.loads(resp.read().decode())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body}")
        return body["data"]["result"]

    def query(self, promql: str) -> list[tuple[dict, float]]:
        """An instant query: (labels, value) per series."""
        return [(r["metric"], float(r["value"][1])) for r in self._api("query", query=promql)]

    def scalar(self, promql: str) -> float:
        """The value of a query that yields at most one series (0 when none)."""
        result = self.query(promql)
        return result[0][1] if result else 0.0

    def range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[tuple[dict, list]]:
        """A range query: (labels, [(epoch seconds, value), ...]) per series."""
        result = self._api("query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step}")
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in result]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
