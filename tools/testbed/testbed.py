"""The testbed: small "bare-metal" Debian hosts on this machine, as systemd-nspawn machines.

Each machine boots systemd as PID 1, runs sshd, has its own address on the host bridge (`anvil0`,
198.18.0.0/24), writable cgroups and sysctls (so containerd, kubelet and kube-proxy work inside), and
no route to the outside: only the host's bridge address (where the mirror listens) is reachable.

A Debian root filesystem is built once with debootstrap and cached under $ANVIL_CACHE/testbed; every
machine gets a plain copy of it (no overlayfs: containerd's overlay snapshotter cannot sit on overlay).
Everything the tool creates is recorded under $ANVIL_STATE/testbed, so `down` also cleans up after a
crashed run. The host may not run systemd as PID 1, so machines are registered nowhere but here.

Usage (as root): python -m tools.testbed up|down|status|exec|stop|start|add|remove|build|inventory
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools import anvil_env

SUITE = "bookworm"
# The base system of every machine: what a minimal Debian server install has, plus what Ansible needs
# (python3, python3-apt for the apt module, procps for sysctl). Everything else comes from the mirror.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "openssh-server",
    "python3",
    "python3-apt",
    "procps",
    "kmod",
    "iputils-ping",
    "netbase",
)
# Bump when the customisation of the base root filesystem below changes: it is part of the cache key.
BASE_LAYOUT = "3"

# ANVIL_TESTBED_INSTANCE=N (1-99) selects a separate testbed beside the default one, for engineers or CI
# jobs that must not touch each other's machines: machines <prefix>-cp1.. with prefix anvilN, bridge
# anvil-tbN on 198.18.N.0/24, state in $ANVIL_STATE/testbedN, inventory in that state directory. Its
# machines reach the mirror (on the default bridge address) through a host route.
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


# --------------------------------------------------------------------------------------------------
# Base root filesystem


def detect_debian_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian archive that apt on this host already uses for the suite (no host name in the code)."""
    if os.environ.get("ANVIL_DEBIAN_MIRROR"):
        return os.environ["ANVIL_DEBIAN_MIRROR"]
    candidates: list[str] = []
    files = [etc_apt / "sources.list"]
    sl_dir = etc_apt / "sources.list.d"
    if sl_dir.is_dir():
        files += sorted(sl_dir.glob("*.list")) + sorted(sl_dir.glob("*.sources"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.lstrip().startswith("#"):
                        key, _, value = line.partition(":")
                        fields[key.strip().lower()] = value.strip()
                if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", "").split():
                    candidates += fields.get("uris", "").split()
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    candidates.append(parts[1])
    for uri in candidates:
        if uri.startswith(("http://", "https://")):
            return uri
    raise TestbedError(
        f"no Debian {SUITE} archive found in /etc/apt/sources.list*; set ANVIL_DEBIAN_MIRROR=<archive URL>"
    )


def rootfs_key() -> str:
    spec = "\n".join([SUITE, BASE_LAYOUT, *sorted(BASE_PACKAGES)])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def base_rootfs() -> Path:
    return CACHE_DIR / f"rootfs-{SUITE}-{rootfs_key()}"


def base_ready() -> bool:
    return (base_rootfs() / ".anvil-complete").is_file()


NET_UP_SCRIPT = """#!/bin/sh
# Configure the testbed address on host0 (systemd-networkd stays pending without udev in a container).
set -eu
. /etc/anvil/testbed.env
ip link set lo up
ip link set host0 up
ip addr replace "$ANVIL_ADDRESS" dev host0
ip route replace default via "$ANVIL_GATEWAY" dev host0 onlink
# The mirror listens on the host; when that address is outside this testbed's network, reach it through
# the host's address on this bridge (the host delivers it locally: nothing is forwarded).
if [ "$ANVIL_MIRROR" != "$ANVIL_HOST" ]; then
  ip route replace "$ANVIL_MIRROR/32" via "$ANVIL_HOST" dev host0
fi
"""

CGROUP_RW_SCRIPT = """#!/bin/sh
# systemd-nspawn mounts the cgroup v1 controller hierarchies read-only; containerd/runc and the kubelet
# need to create cgroups in them. Flip each mount to read-write in place (a bind remount: no moment
# without the mount, so services starting meanwhile are not disturbed). The machine still sees only its
# own subtree (cgroup namespace). On cgroup v2 only the root needs it.
set -u
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || mount -o remount,bind,rw /sys/fs/cgroup
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && exit 0
awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo | while read -r mnt; do
  mount -o remount,bind,rw "$mnt"
done
exit 0
"""

NET_UNIT = """[Unit]
Description=Testbed network address on host0
DefaultDependencies=no
After=systemd-sysctl.service
Before=network.target network-online.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/anvil-net-up

[Install]
WantedBy=multi-user.target network-online.target
"""

CGROUP_UNIT = """[Unit]
Description=Writable cgroup hierarchies for container runtimes
DefaultDependencies=no
After=local-fs.target
Before=containerd.service kubelet.service docker.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/anvil-cgroup-rw

[Install]
WantedBy=sysinit.target
"""


def build_rootfs(force: bool = False) -> Path:
    """debootstrap the base system once and cache it; later calls return the cached directory."""
    target = base_rootfs()
    if base_ready() and not force:
        return target
    if force and any(m.storage == "overlay" and m.base == str(target) for m in load_machines()):
        raise TestbedError("machines of this testbed use the base root filesystem: run `testbed down` first")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "build.lock", "w") as lock:  # testbed instances share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        if base_ready() and not force:
            return target
        return _build_rootfs(target)


def _build_rootfs(target: Path) -> Path:
    mirror = detect_debian_mirror()
    free = shutil.disk_usage(_existing_parent(CACHE_DIR)).free
    if free < DISK_FOR_BUILD:
        raise TestbedError(f"not enough disk under {CACHE_DIR}: {free // MIB} MiB free, need {DISK_FOR_BUILD // MIB}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    log(f"building the base root filesystem ({SUITE}, {len(BASE_PACKAGES)} packages) with debootstrap: 2-4 min")
    started = time.monotonic()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(BASE_PACKAGES),
        "--components=main",
        SUITE,
        str(tmp),
        mirror,
    ]
    logfile = CACHE_DIR / "debootstrap.log"
    with open(logfile, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        raise TestbedError("debootstrap failed (see " + str(logfile) + "):\n" + "\n".join(tail))
    _customise_base(tmp)
    (tmp / ".anvil-complete").write_text(json.dumps({"suite": SUITE, "packages": BASE_PACKAGES}) + "\n")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    log(f"base root filesystem ready in {time.monotonic() - started:.0f} s: {target}")
    return target


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _customise_base(root: Path) -> None:
    # An air-gapped host: no reachable package source until os_prepare configures the mirror.
    _write(root / "etc/apt/sources.list", "# Package sources are configured by the os_prepare role (the mirror).\n")
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    run(["chroot", str(root), "apt-get", "clean"], check=False)
    # Unique per machine: host keys and machine-id are generated when a machine is created.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root / "etc/machine-id", "")
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()


def install_machine_units(root: Path) -> None:
    """The testbed's own units, installed per machine (so changing them needs no base rebuild)."""
    _write(root / "usr/local/sbin/anvil-net-up", NET_UP_SCRIPT, 0o755)
    _write(root / "usr/local/sbin/anvil-cgroup-rw", CGROUP_RW_SCRIPT, 0o755)
    _write(root / "etc/systemd/system/anvil-net.service", NET_UNIT)
    _write(root / "etc/systemd/system/anvil-cgroup-rw.service", CGROUP_UNIT)
    run(["systemctl", f"--root={root}", "enable", "anvil-net.service", "anvil-cgroup-rw.service", "ssh.service"])
    # Timers that would try to reach the internet, and consoles nobody logs in to.
    masks = ["apt-daily.timer", "apt-daily-upgrade.timer", "console-getty.service", "getty.target"]
    masks += ["systemd-networkd.service", "systemd-networkd-wait-online.service", "e2scrub_reap.service"]
    masks += ["e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer", "systemd-tmpfiles-clean.timer"]
    for unit in masks:
        link = root / "etc/systemd/system" / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    # Small journals: several machines share the host's memory.
    _write(root / "etc/systemd/journald.conf.d/testbed.conf", "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n")


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


# --------------------------------------------------------------------------------------------------
# Machines


@dataclass
class Machine:
    name: str
    role: str
    ip: str
    storage: str = "copy"
    base: str = ""

    @property
    def dir(self) -> Path:
        return MACHINES_DIR / self.name

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    def plain_dir(self, path: str) -> Path:
        return self.dir / "plain" / path.strip("/").replace("/", "_")

    def mount_rootfs(self) -> None:
        """Overlay storage: mount base + upper at rootfs (idempotent)."""
        if self.storage != "overlay" or os.path.ismount(self.rootfs):
            return
        if not Path(self.base, ".anvil-complete").is_file():
            raise TestbedError(f"{self.name}: its base root filesystem {self.base} is gone; recreate the machine")
        work = self.dir / "work"
        for d in (self.upper, work, self.rootfs):
            d.mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={self.base},upperdir={self.upper},workdir={work}"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.rootfs)])

    def unmount_rootfs(self) -> None:
        if os.path.ismount(self.rootfs):
            if run(["umount", str(self.rootfs)], check=False).returncode != 0:
                run(["umount", "-l", str(self.rootfs)], check=False)

    @property
    def pid_file(self) -> Path:
        return self.dir / "nspawn.pid"

    @property
    def cgroups_file(self) -> Path:
        return self.dir / "cgroups.json"

    def cgroups(self) -> list[Path]:
        """The machine's cgroups: the ones recorded when it booted and the ones this process would use."""
        recorded = []
        with contextlib.suppress(OSError, ValueError):
            recorded = [Path(p) for p in json.loads(self.cgroups_file.read_text())]
        return list(dict.fromkeys(recorded + machine_cgroup_paths(self.name)))

    @property
    def veth(self) -> str:
        return ("vb-" + self.name)[:15]

    def nspawn_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_nspawn_of(pid, self) else None

    def pid1(self) -> int | None:
        """The host PID of the machine's init (systemd), or None when the machine is not running."""
        nspawn = self.nspawn_pid()
        if nspawn is None:
            return None
        for child in _children(nspawn):
            if _comm(child) == "systemd":
                return child
        return None

    def running(self) -> bool:
        return self.pid1() is not None

    def save(self) -> None:
        _write(self.dir / "machine.json", json.dumps(asdict(self), indent=2) + "\n")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_nspawn_of(pid: int, machine: Machine) -> bool:
    cmd = _cmdline(pid)
    return bool(cmd) and cmd[0].endswith("systemd-nspawn") and f"--machine={machine.name}" in cmd


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


# Per-machine cgroups. Without systemd on the host, systemd-nspawn would put every machine's payload in the
# same top-level cgroups (/payload in the name=systemd hierarchy, the caller's cgroup in the others), so
# the machines' systemd and kubelets would see and manage each other's processes. Each machine therefore
# starts inside its own cgroup in every hierarchy (below the tool's own cgroup, so host limits still apply);
# its cgroup namespace is rooted there.
# Named after the state directory: testbeds with different state (ANVIL_STATE, instances) never share
# cgroups, so one testbed's `down` cannot touch another's processes.
CGROUP_GROUP = "anvil-testbed-" + hashlib.sha256(str(TESTBED_DIR.resolve()).encode()).hexdigest()[:8]
_CGROUP_FLAGS = ("rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "nsdelegate")


def _cgroup_mounts() -> dict[str, Path]:
    """Controllers key ('pids', 'cpu,cpuacct', 'name=systemd'; '' for cgroup v2) -> mount point."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, mnt, opts = fields[sep + 1], fields[4], fields[sep + 3]
        if fstype == "cgroup2":
            mounts.setdefault("", Path(mnt))
        elif fstype == "cgroup":
            ctrls = [o for o in opts.split(",") if o not in _CGROUP_FLAGS and not o.startswith("release_agent")]
            mounts.setdefault(",".join(sorted(ctrls)), Path(mnt))
    return mounts


def machine_cgroup_paths(name: str) -> list[Path]:
    mounts = _cgroup_mounts()
    paths = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        mnt = mounts.get(",".join(sorted(ctrls.split(","))) if ctrls else "")
        if mnt is not None:
            paths.append(mnt / path.lstrip("/") / CGROUP_GROUP / name)
    return paths


def _create_cgroup(path: Path) -> None:
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for cg in reversed(missing):
        cg.mkdir()
        # cpuset children start empty and refuse tasks until cpus and mems are set.
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (cg / knob).exists() and not (cg / knob).read_text().strip():
                (cg / knob).write_text((cg.parent / knob).read_text())


def _cgroup_pids(path: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _, files in os.walk(path):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids += [int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split()]
    return pids


def _remove_cgroup(path: Path) -> None:
    if not path.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the anvil-testbed group, once its last machine is gone


def load_machines() -> list[Machine]:
    machines = []
    if MACHINES_DIR.is_dir():
        for path in sorted(MACHINES_DIR.glob("*/machine.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                machines.append(Machine(**json.loads(path.read_text())))
    return sorted(machines, key=_sort_key)


def _sort_key(m: Machine) -> tuple[int, int, str]:
    match = re.search(r"(\d+)$", m.name)
    return (0 if m.role == CONTROL_PLANE else 1, int(match.group(1)) if match else 0, m.name)


def get_machine(name: str) -> Machine:
    for machine in load_machines():
        if machine.name == name:
            return machine
    known = ", ".join(m.name for m in load_machines()) or "none"
    raise TestbedError(f"no testbed machine named {name!r} (machines: {known})")


def role_for_name(name: str) -> str:
    for role, prefix in ROLE_PREFIX.items():
        if re.fullmatch(re.escape(prefix) + r"\d+", name):
            return role
    raise TestbedError(f"cannot tell the role of {name!r}: name machines {PREFIX}-cpN or {PREFIX}-wN, or pass --role")


def next_free_ip(machines: list[Machine]) -> str:
    used = {m.ip for m in machines}
    for offset in range(FIRST_MACHINE_OFFSET, NETWORK.num_addresses - 2):
        addr = str(NETWORK[offset])
        if addr not in used and addr != BLACKHOLE_GATEWAY:
            return addr
    raise TestbedError(f"no free address left in {NETWORK}")


def ensure_ssh_key() -> Path:
    if not SSH_KEY.exists():
        TESTBED_DIR.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "anvil-testbed", "-f", str(SSH_KEY)])
    SSH_KEY.chmod(0o600)
    return SSH_KEY


def create_machine(name: str, role: str, ip: str) -> Machine:
    machine = Machine(name=name, role=role, ip=ip, storage=STORAGE, base=str(base_rootfs()))
    if machine.dir.exists():
        _delete_machine_dir(machine)
    machine.dir.mkdir(parents=True)
    machine.save()  # recorded before anything else, so `down` finds a half-created machine
    if machine.storage == "overlay":
        machine.mount_rootfs()
        for path in PLAIN_DIRS:
            machine.plain_dir(path).mkdir(parents=True, exist_ok=True)
    else:
        # A plain copy (reflinked where the filesystem can).
        run(["cp", "-a", "--reflink=auto", str(base_rootfs()), str(machine.rootfs)])
    (machine.rootfs / ".anvil-complete").unlink(missing_ok=True)
    root = machine.rootfs
    _write(root / "etc/hostname", name + "\n")
    _write(root / "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    _write(root / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    # No DNS server in the testbed; point at the host so lookups fail fast and CoreDNS has an upstream.
    _write(root / "etc/resolv.conf", f"nameserver {HOST_ADDR}\n")
    env = f"ANVIL_ADDRESS={ip}/{NETWORK.prefixlen}\nANVIL_GATEWAY={BLACKHOLE_GATEWAY}\nANVIL_HOST={HOST_ADDR}\n"
    env += f"ANVIL_MIRROR={MIRROR_ADDR}\n"
    _write(root / "etc/anvil/testbed.env", env)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(ssh_dir / "authorized_keys", Path(str(SSH_KEY) + ".pub").read_text(), 0o600)
    # Host keys of this machine (ed25519 and ecdsa: RSA generation costs seconds per machine).
    for algo in ("ed25519", "ecdsa"):
        key = root / f"etc/ssh/ssh_host_{algo}_key"
        run(["ssh-keygen", "-q", "-t", algo, "-N", "", "-C", f"root@{name}", "-f", str(key)])
    hostkeys = "".join(f"HostKey /etc/ssh/ssh_host_{algo}_key\n" for algo in ("ed25519", "ecdsa"))
    _write(root / "etc/ssh/sshd_config.d/testbed.conf", hostkeys)
    install_machine_units(root)
    return machine


def nspawn_command(machine: Machine) -> list[str]:
    cmd = [
        "systemd-nspawn",
        f"--directory={machine.rootfs}",
        f"--machine={machine.name}",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--capability=all",
        "--bind=/dev/kmsg",
        "--property=DeviceAllow=char-* rwm",
        f"--network-bridge={BRIDGE}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]
    for dev in ("/dev/fuse", "/dev/net/tun"):
        if Path(dev).exists():
            cmd.append(f"--bind={dev}")
    if machine.storage == "overlay":
        cmd += [f"--bind={machine.plain_dir(path)}:{path}" for path in PLAIN_DIRS]
    return cmd


def boot(machine: Machine) -> None:
    if machine.running():
        return
    ensure_bridge()
    machine.mount_rootfs()
    # A stale veth of a crashed run would make nspawn fail to create the new one.
    if _link_exists(machine.veth):
        run(["ip", "link", "del", machine.veth], check=False)
    env = dict(os.environ, **NSPAWN_ENV)
    cgroups = machine_cgroup_paths(machine.name)
    for cg in cgroups:
        _remove_cgroup(cg)  # empty leftovers of an earlier boot
        _create_cgroup(cg)
    machine.cgroups_file.write_text(json.dumps([str(cg) for cg in cgroups]) + "\n")
    # A tiny shell moves itself into the machine's cgroups, then becomes systemd-nspawn (same pid).
    env["ANVIL_CGROUP_PROCS"] = ":".join(str(cg / "cgroup.procs") for cg in cgroups)
    enter = 'IFS=:; for f in $ANVIL_CGROUP_PROCS; do echo $$ > "$f" || exit 1; done; unset ANVIL_CGROUP_PROCS; '
    enter += 'exec "$@"'

    console = open(machine.dir / "console.log", "ab")
    proc = subprocess.Popen(
        ["/bin/sh", "-c", enter, "anvil-enter-cgroups", *nspawn_command(machine)],
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    console.close()
    machine.pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while machine.nspawn_pid() is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TestbedError(f"{machine.name}: systemd-nspawn did not start:\n{_console_tail(machine)}")
        time.sleep(0.05)


def ensure_bridge() -> str:
    """The default testbed shares the mirror's bridge (tools.anvil_env); an instance has its own."""
    if not INSTANCE:
        return anvil_env.ensure_bridge()
    if not _link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
    if str(BRIDGE_IF) not in addrs:
        run(["ip", "addr", "add", str(BRIDGE_IF), "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    return HOST_ADDR


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def ssh_base_args() -> list[str]:
    return [
        "-i",
        str(SSH_KEY),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=2",
    ]


def ssh_ready(machine: Machine) -> bool:
    cmd = ["ssh", *ssh_base_args(), f"root@{machine.ip}", "true"]
    return run(cmd, check=False, timeout=10).returncode == 0


def wait_ready(machines: list[Machine], timeout: float = 90.0) -> None:
    """Poll until every machine answers over ssh; fail with the console tail of the ones that did not."""
    deadline = time.monotonic() + timeout
    pending = list(machines)
    while pending and time.monotonic() < deadline:
        for machine in list(pending):
            if machine.nspawn_pid() is None:
                raise TestbedError(f"{machine.name} exited while booting:\n{_console_tail(machine)}")
            if ssh_ready(machine):
                pending.remove(machine)
        if pending:
            time.sleep(0.3)
    if pending:
        tails = "\n".join(f"--- {m.name}\n{_console_tail(m)}" for m in pending)
        raise TestbedError(f"not reachable over ssh after {timeout:.0f} s: {[m.name for m in pending]}\n{tails}")


def _console_tail(machine: Machine, lines: int = 20) -> str:
    try:
        return "\n".join((machine.dir / "console.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


def stop_machines(machines: list[Machine], timeout: float = 30.0) -> None:
    """Power machines off cleanly, all at once (nspawn turns SIGTERM into a systemd poweroff); kill what
    hangs; then remove their cgroups and veths."""
    waiting = {}
    for machine in machines:
        nspawn = machine.nspawn_pid()
        if nspawn is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(nspawn, signal.SIGTERM)
            waiting[machine.name] = nspawn
    deadline = time.monotonic() + timeout
    for machine in machines:
        nspawn = waiting.get(machine.name)
        if nspawn is not None and not _wait_gone(nspawn, max(0.0, deadline - time.monotonic())):
            log(f"{machine.name} did not power off within {timeout:.0f} s, killing it")
        _kill_machine_processes(machine)
        for cg in machine.cgroups():
            _remove_cgroup(cg)
        machine.pid_file.unlink(missing_ok=True)
        machine.unmount_rootfs()
        if _link_exists(machine.veth):
            run(["ip", "link", "del", machine.veth], check=False)


def stop_machine(machine: Machine, timeout: float = 30.0) -> None:
    stop_machines([machine], timeout)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        # Reap it if it is our own child (start/stop from the same Python process, e.g. pytest).
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    return not Path(f"/proc/{pid}").exists()


def _machine_process_ids(machine: Machine | None = None) -> list[int]:
    """Host processes that belong to a machine (or to any testbed machine): nspawn itself and every
    process whose root directory lies in a machine's root filesystem."""
    prefix = str(machine.dir if machine else MACHINES_DIR) + "/"
    if machine is not None:
        groups = machine.cgroups()
    else:
        groups = [cg.parent for cg in machine_cgroup_paths("-")]
        groups += [cg for m in load_machines() for cg in m.cgroups()]
    found = [pid for cg in groups for pid in _cgroup_pids(cg)]
    for pid in _pids():
        if pid == os.getpid() or pid in found:
            continue
        cmd = _cmdline(pid)
        if cmd and cmd[0].endswith("systemd-nspawn") and any(a.startswith("--directory=" + prefix) for a in cmd):
            found.append(pid)
            continue
        with contextlib.suppress(OSError):
            if (os.readlink(f"/proc/{pid}/root") + "/").startswith(prefix):
                found.append(pid)
    return sorted(set(found) - {os.getpid()})


def _kill_machine_processes(machine: Machine | None = None, timeout: float = 10.0) -> None:
    pids = _machine_process_ids(machine)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _machine_process_ids(machine):
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)


def machine_memory(machine: Machine) -> dict[str, int]:
    """RSS and PSS (bytes) of all processes in the machine's PID namespace."""
    pid1 = machine.pid1()
    if pid1 is None:
        return {"rss": 0, "pss": 0, "processes": 0}
    try:
        ns = os.readlink(f"/proc/{pid1}/ns/pid")
    except OSError:
        return {"rss": 0, "pss": 0, "processes": 0}
    totals = {"rss": 0, "pss": 0, "processes": 0}
    for pid in _pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != ns:
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        totals["processes"] += 1
        for line in rollup.splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                totals[key.lower()] += int(value.split()[0]) * 1024
    return totals


def exec_in(machine: Machine, command: list[str], check: bool = False, capture: bool = True, timeout=None):
    """Run a command inside a running machine (through its namespaces, no ssh needed)."""
    pid1 = machine.pid1()
    if pid1 is None:
        raise TestbedError(f"{machine.name} is not running (start it with: testbed start {machine.name})")
    if len(command) == 1:
        command = ["/bin/sh", "-c", command[0]]
    cmd = ["nsenter", "-t", str(pid1), "-a", "--", "/usr/bin/env", "-i", f"PATH={MACHINE_PATH}"]
    cmd += ["HOME=/root", "LANG=C.UTF-8", *command]
    return run(cmd, check=check, capture_output=capture, timeout=timeout)


# --------------------------------------------------------------------------------------------------
# Host checks


def preflight(new_machines: int, building: bool) -> None:
    """Refuse before changing anything when the host cannot run the testbed; list every problem."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("run as root: the testbed creates a bridge, veth devices and mounts")
    for tool, pkg in (
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is missing: install {pkg} (make setup installs scripts/apt-packages.d/*.txt)")
    if NETWORK.overlaps(HOST_UPLINK):
        problems.append(f"bridge network {NETWORK} overlaps the host uplink {HOST_UPLINK}: set ANVIL_BRIDGE_CIDR")
    problems += _route_conflicts()
    for path, need, what in (
        (TESTBED_DIR, new_machines * DISK_PER_MACHINE, f"{new_machines} machine(s)"),
        (CACHE_DIR, DISK_FOR_BUILD if building else 0, "the base root filesystem"),
    ):
        free = shutil.disk_usage(_existing_parent(path)).free
        if free < need:
            problems.append(f"not enough disk for {what} under {path}: {free // MIB} MiB free, {need // MIB} needed")
    avail = _mem_available()
    if avail is not None and avail < new_machines * MEM_PER_MACHINE:
        problems.append(f"not enough memory: {avail // MIB} MiB available, {new_machines} machine(s) need ~256 each")
    if not Path("/dev/kmsg").exists():
        problems.append("/dev/kmsg is missing (the kubelet inside a machine needs it)")
    if not Path("/sys/fs/cgroup").is_dir():
        problems.append("/sys/fs/cgroup is not mounted")
    if problems:
        raise TestbedError("the host cannot run the testbed:\n  - " + "\n  - ".join(problems))


def _route_conflicts() -> list[str]:
    """The bridge network must be routed nowhere but on our bridge (or nowhere yet)."""
    problems = []
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if route.get("type") in ("local", "broadcast") or not dst:
            continue
        if dst == "default":
            gateway = route.get("gateway")
            if gateway and ipaddress.ip_address(gateway) in NETWORK:
                problems.append(f"the host's default gateway {gateway} is inside the testbed network {NETWORK}")
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(dst, strict=False).overlaps(NETWORK) and route.get("dev") != BRIDGE:
                problems.append(f"{NETWORK} is already routed: '{dst} dev {route.get('dev')}' (choose another range)")
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show"], check=False).stdout or "[]")
    for link in addrs:
        if link.get("ifname") == BRIDGE:
            continue
        for info in link.get("addr_info", []):
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            if iface.network.overlaps(NETWORK):
                problems.append(f"{link['ifname']} already has {iface}, inside the testbed network {NETWORK}")
    return problems


def _mem_available() -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


# --------------------------------------------------------------------------------------------------
# Inventory


def write_inventory(machines: list[Machine]) -> Path:
    """The Ansible inventory of the testbed, in the groups the roles use."""
    groups: dict[str, dict] = {CONTROL_PLANE: {"hosts": {}}, WORKERS: {"hosts": {}}}
    for m in machines:
        groups[m.role]["hosts"][m.name] = {
            "ansible_host": m.ip,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(SSH_KEY),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_pipelining": True,
        }
    mirror = os.environ.get("ANVIL_TESTBED_MIRROR_URL") or f"http://{MIRROR_ADDR}:{anvil_env.ANVIL_MIRROR_HTTP_PORT}"
    registry = f"{MIRROR_ADDR}:{anvil_env.ANVIL_REGISTRY_PORT}"
    inventory = {
        "all": {
            "vars": {
                "anvil_mirror_url": mirror,
                "anvil_registry_mirror": registry,
                "anvil_image_repository": f"{registry}/anvil",
                "anvil_testbed": True,
            },
            "children": {
                "k8s_cluster": {"children": {CONTROL_PLANE: groups[CONTROL_PLANE], WORKERS: groups[WORKERS]}},
            },
        }
    }
    INVENTORY.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "---\n# Generated by the testbed tool (tools/testbed) on "
        + datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        + ": do not edit (make testbed-up / testbed-add rewrite it).\n"
    )
    tmp = INVENTORY.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False, width=1000))
    tmp.replace(INVENTORY)
    return INVENTORY


# --------------------------------------------------------------------------------------------------
# Commands


def machine_names(nodes: int, control_planes: int) -> list[tuple[str, str]]:
    if nodes < 1 or control_planes < 1 or control_planes > nodes:
        raise TestbedError(f"need 1 <= CONTROL_PLANES <= NODES (got NODES={nodes} CONTROL_PLANES={control_planes})")
    names = [(f"{PREFIX}-cp{i}", CONTROL_PLANE) for i in range(1, control_planes + 1)]
    names += [(f"{PREFIX}-w{i}", WORKERS) for i in range(1, nodes - control_planes + 1)]
    return names


def up(nodes: int = 3, control_planes: int = 1, timeout: float = 120.0) -> list[Machine]:
    """Bring the testbed to NODES machines; reuse machines that exist, boot the ones that are stopped."""
    started = time.monotonic()
    with locked():
        wanted = machine_names(nodes, control_planes)
        existing = {m.name: m for m in load_machines()}
        extra = sorted(set(existing) - {n for n, _ in wanted})
        if extra:
            raise TestbedError(
                f"the testbed has other machines than requested ({', '.join(extra)}): run `make testbed-down` first"
            )
        missing = [(n, r) for n, r in wanted if n not in existing]
        preflight(len(missing), building=not base_ready() and bool(missing))
        if missing:
            build_rootfs()
            ensure_ssh_key()
        ensure_bridge()
        machines: list[Machine] = []
        to_create: list[tuple[str, str, str]] = []
        taken = [m for m in existing.values()]
        for index, (name, role) in enumerate(wanted):
            if name in existing and existing[name].rootfs.is_dir():
                machines.append(existing[name])
                continue
            ip = str(NETWORK[FIRST_MACHINE_OFFSET + index])
            if any(m.ip == ip for m in taken):
                ip = next_free_ip(taken)
            taken.append(Machine(name, role, ip))
            to_create.append((name, role, ip))
        if to_create:
            log("creating " + ", ".join(f"{n} ({r}, {ip})" for n, r, ip in to_create))
            # Copies run in parallel: they are I/O bound.
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                machines += list(pool.map(lambda spec: create_machine(*spec), to_create))
        machines.sort(key=_sort_key)
        if to_create:
            log(f"root filesystems ready after {time.monotonic() - started:.1f} s; booting")
        for machine in machines:
            boot(machine)
        wait_ready(machines, timeout)
        path = write_inventory(machines)
    log(f"{len(machines)} machine(s) up in {time.monotonic() - started:.1f} s; inventory: {path}")
    return machines


def add(name: str, role: str | None = None, timeout: float = 120.0) -> Machine:
    with locked():
        machines = load_machines()
        if any(m.name == name for m in machines):
            raise TestbedError(f"{name} already exists in the testbed")
        role = role or role_for_name(name)
        preflight(1, building=not base_ready())
        build_rootfs()
        ensure_ssh_key()
        ensure_bridge()
        machine = create_machine(name, role, next_free_ip(machines))
        log(f"adding {name} ({role}, {machine.ip})")
        boot(machine)
        wait_ready([machine], timeout)
        write_inventory([*machines, machine])
    return machine


def remove(name: str) -> None:
    """Power one machine off and delete it (a host leaving for good); the inventory no longer lists it."""
    with locked():
        machine = get_machine(name)
        stop_machine(machine)
        _remove_nspawn_leftovers(machine)
        _delete_machine_dir(machine)
        write_inventory(load_machines())


def start(name: str, timeout: float = 120.0) -> Machine:
    with locked():
        machine = get_machine(name)
        boot(machine)
        wait_ready([machine], timeout)
    return machine


def stop(name: str) -> Machine:
    with locked():
        machine = get_machine(name)
        stop_machine(machine)
    return machine


def _delete_machine_dir(machine: Machine) -> None:
    """Delete a machine's directory, never through a mounted root filesystem (that would be the base's)."""
    machine.unmount_rootfs()
    if os.path.ismount(machine.rootfs):
        raise TestbedError(f"{machine.rootfs} is still mounted; not deleting {machine.dir}")
    shutil.rmtree(machine.dir)


def _remove_nspawn_leftovers(machine: Machine) -> None:
    """nspawn's per-machine directory on the host (it only cleans it up itself when /run is a tmpfs)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / machine.name)


def mirror_running() -> bool:
    """True when the mirror (another tool) still uses the bridge: its pid files or a listener on the address."""
    if MIRROR_STATE_DIR.is_dir():
        for pid_file in MIRROR_STATE_DIR.rglob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                if Path(f"/proc/{int(pid_file.read_text().split()[0])}").exists():
                    return True
    listeners = [line.split() for line in (run(["ss", "-Hltn"], check=False).stdout or "").splitlines()]
    return any(len(cols) > 3 and cols[3].startswith(MIRROR_ADDR + ":") for cols in listeners)


def down() -> None:
    """Remove every machine, veth, mount and process of the testbed, also the leftovers of a crashed run."""
    with locked():
        machines = load_machines()
        running = [m.name for m in machines if m.nspawn_pid() is not None]
        if running:
            log(f"stopping {', '.join(running)}")
        stop_machines(machines)
        _kill_machine_processes(None)
        for group in {cg.parent for cg in machine_cgroup_paths("-")}:
            if group.is_dir():
                for leftover in group.iterdir():
                    if leftover.is_dir():
                        _remove_cgroup(leftover)
        # Mounts under the state directory: overlay root filesystems, and anything a crash left behind.
        for mnt in sorted(_host_mounts_under(TESTBED_DIR), key=len, reverse=True):
            run(["umount", "-l", mnt], check=False)
        # veths still attached to this testbed's bridge (machines whose records are gone).
        links = json.loads(run(["ip", "-j", "link", "show"], check=False).stdout or "[]")
        for link in links:
            if link.get("ifname", "").startswith("vb-") and link.get("master") == BRIDGE:
                run(["ip", "link", "del", link["ifname"]], check=False)
        for machine in machines:
            _remove_nspawn_leftovers(machine)
        if MACHINES_DIR.exists():
            leftover_mounts = _host_mounts_under(MACHINES_DIR)
            if leftover_mounts:
                raise TestbedError(f"still mounted, not deleting {MACHINES_DIR}: {leftover_mounts}")
            shutil.rmtree(MACHINES_DIR)
        INVENTORY.unlink(missing_ok=True)
        if _link_exists(BRIDGE):
            if HOST_ADDR == MIRROR_ADDR and mirror_running():
                log(f"keeping bridge {BRIDGE}: the mirror still listens on {HOST_ADDR}")
            else:
                run(["ip", "link", "del", BRIDGE], check=False)
    log("testbed removed")


def _host_mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt.startswith(prefix) or mnt == str(path):
            mounts.append(mnt)
    return mounts


def status_rows() -> list[dict]:
    rows = []
    for m in load_machines():
        mem = machine_memory(m)
        rows.append(
            {
                "name": m.name,
                "role": m.role,
                "ip": m.ip,
                "state": "running" if m.running() else "stopped",
                "pid1": m.pid1(),
                "rss_mib": round(mem["rss"] / MIB, 1),
                "pss_mib": round(mem["pss"] / MIB, 1),
                "processes": mem["processes"],
            }
        )
    return rows


def print_status(as_json: bool = False) -> None:
    rows = status_rows()
    if as_json:
        print(json.dumps({"machines": rows, "inventory": str(INVENTORY), "bridge": _link_exists(BRIDGE)}))
        return
    if not rows:
        print("no testbed machines (make testbed-up)")
        return
    print(f"{'NAME':<12} {'ROLE':<14} {'ADDRESS':<14} {'STATE':<8} {'PID1':>8} {'RSS MiB':>8} {'PSS MiB':>8} PROCS")
    for r in rows:
        print(
            f"{r['name']:<12} {r['role']:<14} {r['ip']:<14} {r['state']:<8} {r['pid1'] or '-':>8} "
            f"{r['rss_mib']:>8} {r['pss_mib']:>8} {r['processes']}"
        )
    print(f"inventory: {INVENTORY}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create and boot machines, write the inventory")
    p_up.add_argument("--nodes", type=int, default=int(os.environ.get("NODES", "3")))
    p_up.add_argument("--control-planes", type=int, default=int(os.environ.get("CONTROL_PLANES", "1")))
    sub.add_parser("down", help="remove machines, veths, mounts, processes (and the bridge unless the mirror runs)")
    p_status = sub.add_parser("status", help="machines, state and memory")
    p_status.add_argument("--json", action="store_true")
    p_exec = sub.add_parser("exec", help="run a command inside a machine")
    p_exec.add_argument("node")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER)
    for name, text in (("stop", "power a machine off"), ("start", "boot a stopped machine again")):
        sub.add_parser(name, help=text).add_argument("node")
    p_add = sub.add_parser("add", help="one more machine in a running testbed")
    p_add.add_argument("node")
    p_add.add_argument("--role", choices=[CONTROL_PLANE, WORKERS])
    sub.add_parser("remove", help="power a machine off and delete it").add_argument("node")
    p_build = sub.add_parser("build", help="build (or rebuild) the cached base root filesystem")
    p_build.add_argument("--force", action="store_true")
    sub.add_parser("inventory", help="rewrite the inventory from the recorded machines")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.nodes, args.control_planes)
            print_status()
        elif args.command == "down":
            down()
        elif args.command == "status":
            print_status(args.json)
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise TestbedError("usage: testbed exec NODE CMD...")
            return exec_in(get_machine(args.node), cmd, capture=False).returncode
        elif args.command == "stop":
            stop(args.node)
            log(f"{args.node} stopped")
        elif args.command == "start":
            start(args.node)
            log(f"{args.node} running")
        elif args.command == "add":
            machine = add(args.node, args.role)
            log(f"{machine.name} added at {machine.ip}; inventory: {INVENTORY}")
        elif args.command == "remove":
            remove(args.node)
            log(f"{args.node} removed")
        elif args.command == "build":
            preflight(0, building=True)
            build_rootfs(force=args.force)
        elif args.command == "inventory":
            print(write_inventory(load_machines()))
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
