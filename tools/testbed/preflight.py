"""Refuse before changing anything when the host cannot run the testbed."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from tools.testbed.config import (
    CACHE_DIR,
    DISK_FOR_BUILD,
    DISK_PER_MACHINE,
    HOST_UPLINK,
    MEM_PER_MACHINE,
    MIB,
    NETWORK,
    TESTBED_DIR,
    TestbedError,
    existing_parent,
)
from tools.testbed.network import route_conflicts


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
    problems += route_conflicts()
    for path, need, what in (
        (TESTBED_DIR, new_machines * DISK_PER_MACHINE, f"{new_machines} machine(s)"),
        (CACHE_DIR, DISK_FOR_BUILD if building else 0, "the base root filesystem"),
    ):
        free = shutil.disk_usage(existing_parent(path)).free
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


def _mem_available() -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None
