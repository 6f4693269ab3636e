"""The testbed commands: up, add, remove, start, stop, down, build, status."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import time
from pathlib import Path

from tools.testbed.cgroups import machine_cgroup_paths, remove_cgroup
from tools.testbed.config import (
    BRIDGE,
    FIRST_MACHINE_OFFSET,
    HOST_ADDR,
    INVENTORY,
    MACHINES_DIR,
    MIB,
    MIRROR_ADDR,
    NETWORK,
    TESTBED_DIR,
    TestbedError,
    locked,
    log,
    run,
)
from tools.testbed.inventory import write_inventory
from tools.testbed.machine import (
    Machine,
    create_machine,
    delete_machine_dir,
    ensure_ssh_key,
    get_machine,
    load_machines,
    machine_names,
    machine_sort_key,
    role_for_name,
)
from tools.testbed.network import ensure_bridge, link_exists, mirror_running, next_free_ip
from tools.testbed.preflight import preflight
from tools.testbed.rootfs import base_ready, base_rootfs, build_rootfs
from tools.testbed.runtime import boot, kill_machine_processes, machine_memory, stop_machine, stop_machines, wait_ready


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
        machines.sort(key=machine_sort_key)
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
        delete_machine_dir(machine)
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


def _remove_nspawn_leftovers(machine: Machine) -> None:
    """nspawn's per-machine directory on the host (it only cleans it up itself when /run is a tmpfs)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / machine.name)


def down() -> None:
    """Remove every machine, veth, mount and process of the testbed, also the leftovers of a crashed run."""
    with locked():
        machines = load_machines()
        running = [m.name for m in machines if m.nspawn_pid() is not None]
        if running:
            log(f"stopping {', '.join(running)}")
        stop_machines(machines)
        kill_machine_processes(None)
        for group in {cg.parent for cg in machine_cgroup_paths("-")}:
            if group.is_dir():
                for leftover in group.iterdir():
                    if leftover.is_dir():
                        remove_cgroup(leftover)
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
        if link_exists(BRIDGE):
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


def build(force: bool = False) -> Path:
    """(Re)build the cached base root filesystem; a rebuild is refused while machines use it."""
    if force and any(m.storage == "overlay" and m.base == str(base_rootfs()) for m in load_machines()):
        raise TestbedError("machines of this testbed use the base root filesystem: run `testbed down` first")
    return build_rootfs(force=force)
