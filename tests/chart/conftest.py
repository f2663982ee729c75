"""Render the chart with the pinned helm once per values file per session, and validate every object
against the newest Kubernetes schema kubernetes-validate ships (strict: unknown fields are errors)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "chart"
VALUES_DIR = REPO_ROOT / "values"
RELEASE = "airflow-ha"
NAMESPACE = "airflow-ha"
VALUES_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
VERSION = (REPO_ROOT / "VERSION").read_text().strip()


@dataclass
class Rendered:
    """The objects of one `helm template`, indexed by (kind, name)."""

    objects: list[dict]

    def get(self, kind: str, name: str) -> dict:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        names = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)
        raise AssertionError(f"{kind}/{name} not rendered; objects: {names}")

    def has(self, kind: str, name: str) -> bool:
        return any(o["kind"] == kind and o["metadata"]["name"] == name for o in self.objects)

    def of_kind(self, *kinds: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] in kinds]

    def workloads(self) -> list[dict]:
        return self.of_kind("Deployment", "StatefulSet")

    def pod_specs(self) -> list[tuple[str, dict]]:
        """(object name, pod spec) of every pod the release can create."""
        out = []
        for obj in self.objects:
            kind = obj["kind"]
            if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                out.append((f"{kind}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
            elif kind == "CronJob":
                out.append(
                    (f"CronJob/{obj['metadata']['name']}", obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
                )
            elif kind == "Pod":
                out.append((f"Pod/{obj['metadata']['name']}", obj["spec"]))
        return out


class RenderError(Exception):
    def __init__(self, returncode: int, stderr: str):
        super().__init__(stderr)
        self.returncode, self.stderr = returncode, stderr


def helm_template(helm: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RenderError(proc.returncode, proc.stderr)
    return proc.stdout


def validate_all(objects: list[dict]) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except Exception as exc:  # ValidationError, SchemaNotFoundError
            errors.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {str(exc)[:500]}")
    assert not errors, f"invalid against Kubernetes {version}:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def render(helm_binary: Path):
    """render(values_file=None, *set_args) -> Rendered, cached per argument tuple for the session."""
    cache: dict[tuple, Rendered] = {}

    def _render(values_file: str | None = None, *set_args: str) -> Rendered:
        key = (values_file, *set_args)
        if key not in cache:
            args: list[str] = []
            if values_file:
                args += ["-f", str(VALUES_DIR / values_file)]
            for s in set_args:
                args += ["--set", s]
            objects = [o for o in yaml.safe_load_all(helm_template(helm_binary, *args)) if o]
            validate_all(objects)
            cache[key] = Rendered(objects)
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def default(render) -> Rendered:
    return render(None)


def container(pod_spec: dict, name: str) -> dict:
    for c in pod_spec.get("containers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {[c['name'] for c in pod_spec.get('containers', [])]}")


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}
