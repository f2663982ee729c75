"""Smoke tests of the built container images (images/smoke-test) with the local Docker engine.

Skips with the reason when no Docker daemon answers or an image has not been built
(`scripts/build-images` builds them and runs the same checks).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SMOKE = REPO_ROOT / "images" / "smoke-test"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def _images() -> dict[str, str]:
    namespace: dict = {"__name__": "smoke_test", "__file__": str(SMOKE)}
    exec(compile(SMOKE.read_text(), str(SMOKE), "exec"), namespace)
    return namespace["IMAGES"]


@pytest.fixture(scope="module")
def docker_ready() -> None:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed (apt-get install docker.io)")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("no Docker daemon answers (start dockerd, or run scripts/build-images)")


@pytest.mark.parametrize("kind", ["airflow", "redis", "mysql", "haproxy"])
def test_image_smoke(docker_ready, kind: str):
    image = _images()[kind]
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60).returncode != 0:
        pytest.skip(f"{image} is not built (scripts/build-images {kind})")
    proc = subprocess.run([sys.executable, str(SMOKE), kind], capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, f"{SMOKE.name} {kind} failed:\n{proc.stdout}\n{proc.stderr}"
