"""The built binaries a local API runs (etcd, kube-apiserver, -controller-manager, -scheduler, kwok, kubectl)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import yaml

from tools import anvil_env
from tools.kube_api.errors import BinariesMissing

ARCH = "linux-amd64"
# component -> (manifest component, binary name)
BINARIES = {
    "etcd": ("etcd", "etcd"),
    "kube-apiserver": ("kubernetes", "kube-apiserver"),
    "kube-controller-manager": ("kubernetes", "kube-controller-manager"),
    "kube-scheduler": ("kubernetes", "kube-scheduler"),
    "kwok": ("kwok", "kwok"),
}
BINARIES_MISSING_HINT = (
    "run `make artifacts-api` to build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok"
)


def _version_key(version: str) -> tuple:
    """Sort key for version directories such as v1.35.4 or 3.6.5 (numbers compare numerically)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-+]", version.lstrip("v")))


def manifest_version(component: str, versions_file: Path | None = None) -> str | None:
    path = versions_file or anvil_env.VERSIONS_FILE
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    entry = (data.get("anvil_versions") or {}).get(component) or {}
    version = entry.get("version") if isinstance(entry, dict) else None
    return str(version) if version else None


def find_binary(component: str, binary: str, cache: Path | None = None, versions_file: Path | None = None) -> Path:
    """Path of a built binary in the artifact cache.

    Prefers tools.artifacts.binary_path (the builder's own answer); falls back to the manifest version
    and then to the newest version directory found in the cache, so this works while the builder is
    still being written.
    """
    cache = Path(cache or anvil_env.ANVIL_CACHE)
    if cache == anvil_env.ANVIL_CACHE and versions_file is None:
        try:
            from tools import artifacts  # type: ignore[attr-defined]

            path = Path(artifacts.binary_path(component, binary))
            if path.is_file() and os.access(path, os.X_OK):
                return path
        except Exception:
            pass
    version = manifest_version(component, versions_file)
    if version:
        path = cache / "files" / component / version / ARCH / binary
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = [p for p in (cache / "files" / component).glob(f"*/{ARCH}/{binary}") if os.access(p, os.X_OK)]
    if found:
        return max(found, key=lambda p: _version_key(p.parent.parent.name))
    raise BinariesMissing(
        f"{binary} not found under {cache}/files/{component}/<version>/{ARCH}/: {BINARIES_MISSING_HINT}"
    )


def find_binaries(cache: Path | None = None) -> dict[str, Path]:
    missing, out = [], {}
    for name, (component, binary) in BINARIES.items():
        try:
            out[name] = find_binary(component, binary, cache)
        except BinariesMissing:
            missing.append(binary)
    if missing:
        raise BinariesMissing(
            f"missing binaries {', '.join(missing)} in {cache or anvil_env.ANVIL_CACHE}: {BINARIES_MISSING_HINT}"
        )
    return out


def kubectl_binary(cache: Path | None = None) -> str:
    try:
        return str(find_binary("kubernetes", "kubectl", cache))
    except BinariesMissing:
        on_path = shutil.which("kubectl")
        if on_path:
            return on_path
        raise
