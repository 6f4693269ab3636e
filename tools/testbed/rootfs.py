"""The base root filesystem every machine starts from (debootstrap, cached), and the testbed's own units."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from tools.testbed.config import CACHE_DIR, DISK_FOR_BUILD, MIB, TestbedError, existing_parent, log, run, write_file

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
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "build.lock", "w") as lock:  # testbed instances share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        if base_ready() and not force:
            return target
        return _build_rootfs(target)


def _build_rootfs(target: Path) -> Path:
    mirror = detect_debian_mirror()
    free = shutil.disk_usage(existing_parent(CACHE_DIR)).free
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


def _customise_base(root: Path) -> None:
    # An air-gapped host: no reachable package source until os_prepare configures the mirror.
    write_file(root / "etc/apt/sources.list", "# Package sources are configured by the os_prepare role (the mirror).\n")
    for lists in (root / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    run(["chroot", str(root), "apt-get", "clean"], check=False)
    # Unique per machine: host keys and machine-id are generated when a machine is created.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_file(root / "etc/machine-id", "")
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()


def install_machine_units(root: Path) -> None:
    """The testbed's own units, installed per machine (so changing them needs no base rebuild)."""
    write_file(root / "usr/local/sbin/anvil-net-up", NET_UP_SCRIPT, 0o755)
    write_file(root / "usr/local/sbin/anvil-cgroup-rw", CGROUP_RW_SCRIPT, 0o755)
    write_file(root / "etc/systemd/system/anvil-net.service", NET_UNIT)
    write_file(root / "etc/systemd/system/anvil-cgroup-rw.service", CGROUP_UNIT)
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
    write_file(root / "etc/systemd/journald.conf.d/testbed.conf", "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n")
