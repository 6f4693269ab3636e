"""Settings of one testbed (from the environment, read once) and the primitives every part uses.

ANVIL_TESTBED_INSTANCE=N (1-99) selects a separate testbed beside the default one, for engineers or CI
jobs that must not touch each other's machines: machines <prefix>-cp1.. with prefix anvilN, bridge
anvil-tbN on 198.18.N.0/24, state in $ANVIL_STATE/testbedN, inventory in that state directory. Its
machines reach the mirror (on the default bridge address) through a host route.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shlex
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from tools import anvil_env

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE = os.environ.get("ANVIL_TESTBED_INSTANCE", "").strip()
if INSTANCE and not (INSTANCE.isdigit() and 1 <= int(INSTANCE) <= 99):
    raise SystemExit(f"ANVIL_TESTBED_INSTANCE must be a number from 1 to 99, not {INSTANCE!r}")
PREFIX = f"anvil{INSTANCE}"
TESTBED_DIR = anvil_env.ANVIL_STATE / f"testbed{INSTANCE}"
MACHINES_DIR = TESTBED_DIR / "machines"
SSH_KEY = TESTBED_DIR / "id_ed25519"
LOCK_FILE = TESTBED_DIR / "lock"
CACHE_DIR = anvil_env.ANVIL_CACHE / "testbed"
_DEFAULT_INVENTORY = TESTBED_DIR / "hosts.yml" if INSTANCE else REPO_ROOT / "inventories" / "testbed" / "hosts.yml"
INVENTORY = Path(os.environ.get("ANVIL_TESTBED_INVENTORY") or _DEFAULT_INVENTORY)
MIRROR_STATE_DIR = anvil_env.ANVIL_STATE / "mirror"
# Where the mirror listens: ANVIL_MIRROR_ADDR, else the host of ANVIL_TESTBED_MIRROR_URL, else the bridge
# address of tools.anvil_env. Machines outside that network get a host route to it.
MIRROR_ADDR = (
    os.environ.get("ANVIL_MIRROR_ADDR")
    or urllib.parse.urlsplit(os.environ.get("ANVIL_TESTBED_MIRROR_URL", "")).hostname
    or anvil_env.ANVIL_BRIDGE_ADDR
)
BRIDGE = f"anvil-tb{INSTANCE}" if INSTANCE else anvil_env.ANVIL_BRIDGE
_MIRROR_NET = ipaddress.ip_interface(anvil_env.ANVIL_BRIDGE_CIDR).network
BRIDGE_IF = (
    ipaddress.ip_interface(f"{_MIRROR_NET.network_address + 256 * int(INSTANCE) + 1}/24")
    if INSTANCE
    else ipaddress.ip_interface(anvil_env.ANVIL_BRIDGE_CIDR)
)
NETWORK = BRIDGE_IF.network
HOST_ADDR = str(BRIDGE_IF.ip)
FIRST_MACHINE_OFFSET = 11
# Kubernetes components pick the node address from the interface of the default route, so machines get
# one, but through an address nobody holds: traffic to the outside ends there (no ARP answer), and the
# host never forwards or NATs machine traffic.
BLACKHOLE_GATEWAY = str(NETWORK[-2])
HOST_UPLINK = ipaddress.ip_network("192.0.2.0/24")
CONTROL_PLANE = "control_plane"
WORKERS = "workers"
NAME_PREFIX = f"{PREFIX}-"
ROLE_PREFIX = {CONTROL_PLANE: f"{PREFIX}-cp", WORKERS: f"{PREFIX}-w"}
# Machine root filesystems: "overlay" (default) mounts the cached base read-only under a per-machine upper
# directory (creating a machine costs a few MB and no copying), with a plain directory bound at
# /var/lib/containerd (containerd's overlay snapshots cannot live on overlayfs); "copy" gives each machine a
# full copy of the base (about 210 MB, slow while the disk is busy).
STORAGE = os.environ.get("ANVIL_TESTBED_STORAGE", "overlay")
if STORAGE not in ("overlay", "copy"):
    raise SystemExit(f"ANVIL_TESTBED_STORAGE must be overlay or copy, not {STORAGE!r}")
# Directories bound from plain per-machine directories in overlay mode (must not be on overlayfs).
PLAIN_DIRS = ("/var/lib/containerd",)
MIB = 1024 * 1024
DISK_PER_MACHINE = 700 * MIB  # base copy (~350 MB) + room for packages and images
DISK_FOR_BUILD = 1500 * MIB
MEM_PER_MACHINE = 256 * MIB
NSPAWN_ENV = {
    # runc inside fails to join a session keyring under nspawn's seccomp filter.
    "SYSTEMD_SECCOMP": "0",
    # kubelet and kube-proxy write sysctls (vm.overcommit_memory, kernel.panic, net.bridge.*).
    "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1",
}
MACHINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class TestbedError(RuntimeError):
    """A problem the user has to fix; printed without a traceback."""


def log(msg: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run(cmd, check=False, **kw)
    if check and proc.returncode != 0:
        out = (proc.stderr or "") + (proc.stdout or "") if kw.get("capture_output") else ""
        raise TestbedError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{out.strip()}")
    return proc


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise commands that change the testbed (parallel test sessions, make -j)."""
    if os.geteuid() != 0:
        raise TestbedError("run as root: the testbed creates a bridge, veth devices, cgroups and mounts")
    TESTBED_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path
