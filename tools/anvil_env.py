"""Shared settings for the host-side tooling (artifact builder, mirror, local API, testbed).

Every tool reads its locations and addresses from here so that they agree without talking to
each other. Each value can be overridden through the environment variable of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Heavy, re-usable build outputs live outside the repository, keyed by version.
ANVIL_CACHE = Path(os.environ.get("ANVIL_CACHE", "/var/cache/anvil"))
# Per-run state (pids, logs, generated PKI) of services started by the tools.
ANVIL_STATE = Path(os.environ.get("ANVIL_STATE", "/var/lib/anvil-dev"))

# The testbed bridge. 198.18.0.0/15 is reserved for network test labs; the host uplink
# (192.0.2.0/24) must never be used for it.
ANVIL_BRIDGE = os.environ.get("ANVIL_BRIDGE", "anvil0")
ANVIL_BRIDGE_CIDR = os.environ.get("ANVIL_BRIDGE_CIDR", "198.18.0.1/24")
ANVIL_BRIDGE_ADDR = ANVIL_BRIDGE_CIDR.split("/", 1)[0]

# Mirror ports (HTTP files + apt repository, and OCI registry).
ANVIL_MIRROR_HTTP_PORT = int(os.environ.get("ANVIL_MIRROR_HTTP_PORT", "8080"))
ANVIL_REGISTRY_PORT = int(os.environ.get("ANVIL_REGISTRY_PORT", "5000"))

VERSIONS_FILE = REPO_ROOT / "vars" / "versions.yml"


def ensure_bridge() -> str:
    """Create the testbed bridge with its host address if it does not exist; return the address.

    Both the mirror (which binds to the bridge address) and the testbed (which attaches machines
    to it) call this, whichever starts first.
    """
    probe = subprocess.run(["ip", "-o", "link", "show", ANVIL_BRIDGE], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        subprocess.run(["ip", "link", "add", ANVIL_BRIDGE, "type", "bridge"], check=True)
    addrs = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", ANVIL_BRIDGE], capture_output=True, text=True, check=True
    ).stdout
    if ANVIL_BRIDGE_CIDR not in addrs:
        subprocess.run(["ip", "addr", "add", ANVIL_BRIDGE_CIDR, "dev", ANVIL_BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", ANVIL_BRIDGE, "up"], check=True)
    return ANVIL_BRIDGE_ADDR


def bridge_exists() -> bool:
    return subprocess.run(["ip", "-o", "link", "show", ANVIL_BRIDGE], check=False, capture_output=True).returncode == 0


@contextlib.contextmanager
def build_lock(what: str) -> Iterator[None]:
    """Hold the cache's build lock while `what` builds into ANVIL_CACHE (and records sha256 in the manifest).

    Two builds at once (make -j2 test runs the integration and e2e suites side by side, each making sure its
    artifacts are built) would write the same cache entries and the same manifest lines: the second waits here,
    then finds the first one's outputs cached.
    """
    ANVIL_CACHE.mkdir(parents=True, exist_ok=True)
    with open(ANVIL_CACHE / ".build.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{what}: waiting for another build into {ANVIL_CACHE} to finish", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
