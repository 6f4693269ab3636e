"""The testbed: small "bare-metal" Debian hosts on this machine, as systemd-nspawn machines.

Each machine boots systemd as PID 1, runs sshd, has its own address on the host bridge (`anvil0`,
198.18.0.0/24), writable cgroups and sysctls (so containerd, kubelet and kube-proxy work inside), and
no route to the outside: only the host's bridge address (where the mirror listens) is reachable.

A Debian root filesystem is built once with debootstrap and cached under $ANVIL_CACHE/testbed; every
machine mounts it read-only under an overlay of its own (or gets a full copy: ANVIL_TESTBED_STORAGE=copy),
with a plain directory at /var/lib/containerd (containerd's overlay snapshots cannot sit on overlayfs).
Everything the tool creates is recorded under $ANVIL_STATE/testbed, so `down` also cleans up after a
crashed run. The host may not run systemd as PID 1, so machines are registered nowhere but here.

Usage (as root): python -m tools.testbed up|down|status|exec|stop|start|add|remove|build|inventory

Modules, one job each: `config` (settings of this testbed, primitives), `rootfs` (the cached base),
`cgroups` (per-machine cgroups), `network` (bridge, addresses, routes), `machine` (records, names,
creation), `runtime` (boot, ssh readiness, poweroff, processes, exec, memory), `preflight` (host checks),
`inventory` (the Ansible inventory), `commands` (up, add, remove, start, stop, down, build, status),
`cli` (the command line). This package re-exports what tests use, as `from tools import testbed as tb`.
"""

from __future__ import annotations

from tools.testbed.cgroups import machine_cgroup_paths
from tools.testbed.commands import add, build, down, remove, start, status_rows, stop, up
from tools.testbed.config import (
    BRIDGE,
    CONTROL_PLANE,
    FIRST_MACHINE_OFFSET,
    INSTANCE,
    INVENTORY,
    MACHINES_DIR,
    MIRROR_ADDR,
    NAME_PREFIX,
    NETWORK,
    PREFIX,
    ROLE_PREFIX,
    TESTBED_DIR,
    WORKERS,
    TestbedError,
)
from tools.testbed.inventory import write_inventory
from tools.testbed.machine import Machine, cmdline, get_machine, load_machines, machine_names, role_for_name
from tools.testbed.network import link_exists, mirror_running, next_free_ip
from tools.testbed.rootfs import build_rootfs, detect_debian_mirror
from tools.testbed.runtime import exec_in, machine_process_ids

__all__ = [
    "BRIDGE",
    "CONTROL_PLANE",
    "FIRST_MACHINE_OFFSET",
    "INSTANCE",
    "INVENTORY",
    "MACHINES_DIR",
    "MIRROR_ADDR",
    "NAME_PREFIX",
    "NETWORK",
    "PREFIX",
    "ROLE_PREFIX",
    "TESTBED_DIR",
    "WORKERS",
    "Machine",
    "TestbedError",
    "add",
    "build",
    "build_rootfs",
    "cmdline",
    "detect_debian_mirror",
    "down",
    "exec_in",
    "get_machine",
    "link_exists",
    "load_machines",
    "machine_cgroup_paths",
    "machine_names",
    "machine_process_ids",
    "mirror_running",
    "next_free_ip",
    "remove",
    "role_for_name",
    "start",
    "status_rows",
    "stop",
    "up",
    "write_inventory",
]
