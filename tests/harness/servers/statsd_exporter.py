"""Prometheus's statsd_exporter on 127.0.0.1 with the chart's own mapping file (chart/files/statsd-mappings.yaml).

The binary is built once from its Go module into ``.tools/bin`` (the version the chart's image builds, from
scripts/lib.sh), or taken from ``AIRFLOW_HA_STATSD_EXPORTER_BIN``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.servers.process import ServerStartError, free_port, log_tail, stop_process
from tests.harness.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
MAPPINGS = ROOT / "chart" / "files" / "statsd-mappings.yaml"
TOOLS_BIN = ROOT / ".tools" / "bin"


def pinned_version() -> str:
    """The statsd_exporter version scripts/build-images builds the chart's image from."""
    text = (ROOT / "scripts" / "lib.sh").read_text()
    match = re.search(r'^STATSD_EXPORTER_VERSION="([0-9.]+)"', text, re.M)
    if not match:
        raise ServerStartError("STATSD_EXPORTER_VERSION not found in scripts/lib.sh")
    return match.group(1)


def exporter_binary() -> Path:
    given = os.environ.get("AIRFLOW_HA_STATSD_EXPORTER_BIN")
    if given:
        return Path(given)
    version = pinned_version()
    binary = TOOLS_BIN / f"statsd_exporter-{version}"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise ServerStartError(f"statsd_exporter {version} is built from its Go module: install Go, or set "
                               "AIRFLOW_HA_STATSD_EXPORTER_BIN")  # fmt: skip
    out = TOOLS_BIN / f".build-statsd-exporter-{os.getpid()}"
    env = {**os.environ, "GOBIN": str(out), "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    proc = subprocess.run(
        [go, "install", f"github.com/prometheus/statsd_exporter@v{version}"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ServerStartError(f"go install statsd_exporter v{version} failed:\n{proc.stderr[-2000:]}")
    (out / "statsd_exporter").rename(binary)
    shutil.rmtree(out, ignore_errors=True)
    return binary


@dataclass
class StatsdExporter:
    base_dir: Path
    mappings: Path = MAPPINGS
    statsd_port: int = 0
    web_port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        binary = exporter_binary()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.statsd_port, self.web_port = free_port(), free_port()
        self.log = self.base_dir / "statsd_exporter.log"
        argv = [
            str(binary), f"--statsd.mapping-config={self.mappings}",
            f"--statsd.listen-udp=127.0.0.1:{self.statsd_port}", "--statsd.listen-tcp=",
            f"--web.listen-address=127.0.0.1:{self.web_port}",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(self._answers, 30, f"statsd_exporter on 127.0.0.1:{self.web_port}", interval=0.1)
        except TimeoutError as exc:
            raise ServerStartError(f"{exc}\n{log_tail(self.log)}") from exc

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise ServerStartError(f"statsd_exporter exited:\n{log_tail(self.log)}")
        try:
            self.scrape()
        except OSError:
            return False
        return True

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def samples(self, name: str) -> dict[str, float]:
        """``{labels text: value}`` of every sample of the series ``name`` (labels text "" when none)."""
        out = {}
        for line in self.scrape().splitlines():
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if match:
                out[match.group(1) or ""] = float(match.group(2))
        return out

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(v for text, v in self.samples(name).items() if all(w in text for w in wanted))

    def wait_for(self, name: str, minimum: float, timeout: float = 10, **labels: str) -> float:
        """:meth:`value` once it is at least ``minimum`` (StatsD is UDP: a packet is read a moment after)."""
        return wait_until(
            lambda: (v := self.value(name, **labels)) >= minimum and v,
            timeout,
            f"{name}{labels or ''} >= {minimum} on the exporter",
            interval=0.2,
            explain=lambda: "\n".join(line for line in self.scrape().splitlines() if "airflow_ha" in line),
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def statsd_env(self) -> dict[str, str]:
        """Airflow's [metrics] as the chart sets it, pointed at this exporter."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.statsd_port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }
