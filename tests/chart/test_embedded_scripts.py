"""Every shell script the chart ships inside a ConfigMap (``*.sh`` keys) passes shellcheck as rendered, in the
default values and in each profile: tools/shellcheck covers the repository's script files, not these."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PROFILES = [None, "kubeone.yaml", "kind.yaml"]


@pytest.mark.parametrize("profile", PROFILES, ids=[p or "defaults" for p in PROFILES])
def test_every_configmap_script_passes_shellcheck(render, profile, tmp_path):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = []
    for obj in render(profile).objects:
        if obj["kind"] != "ConfigMap":
            continue
        for key, text in (obj.get("data") or {}).items():
            if key.endswith(".sh"):
                path = tmp_path / f"{obj['metadata']['name']}-{key}"
                path.write_text(text)
                scripts.append(path)
    assert scripts, "no ConfigMap script rendered"
    proc = subprocess.run([shellcheck, "-s", "sh", *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
