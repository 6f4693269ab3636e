"""Running machines: boot with systemd-nspawn, wait for ssh, power off, find and kill their processes,
run commands inside, measure memory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tools.testbed.cgroups import cgroup_pids, create_cgroup, machine_cgroup_paths, remove_cgroup
from tools.testbed.config import (
    BRIDGE,
    MACHINE_PATH,
    MACHINES_DIR,
    NSPAWN_ENV,
    PLAIN_DIRS,
    SSH_KEY,
    TestbedError,
    log,
    run,
)
from tools.testbed.machine import Machine, all_pids, cmdline, load_machines
from tools.testbed.network import ensure_bridge, link_exists


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
    if link_exists(machine.veth):
        run(["ip", "link", "del", machine.veth], check=False)
    env = dict(os.environ, **NSPAWN_ENV)
    cgroups = machine_cgroup_paths(machine.name)
    for cg in cgroups:
        remove_cgroup(cg)  # empty leftovers of an earlier boot
        create_cgroup(cg)
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


def close_ssh_masters(machine: Machine) -> None:
    """Ask Ansible's ssh control masters for this machine to exit while it still answers. A master left
    behind holds a TCP connection to a host that is gone; ssh clients reusing it hang instead of failing."""
    for socket in sorted(machine.ssh_control_dir.glob("*")):
        run(["ssh", "-O", "exit", "-o", f"ControlPath={socket}", machine.ip], check=False, timeout=10)
        socket.unlink(missing_ok=True)


def stop_machines(machines: list[Machine], timeout: float = 30.0) -> None:
    """Power machines off cleanly, all at once (nspawn turns SIGTERM into a systemd poweroff); kill what
    hangs; then remove their cgroups and veths."""
    waiting = {}
    for machine in machines:
        close_ssh_masters(machine)
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
        kill_machine_processes(machine)
        for cg in machine.cgroups():
            remove_cgroup(cg)
        machine.pid_file.unlink(missing_ok=True)
        machine.unmount_rootfs()
        if link_exists(machine.veth):
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


def machine_process_ids(machine: Machine | None = None) -> list[int]:
    """Host processes that belong to a machine (or to any testbed machine): nspawn itself and every
    process whose root directory lies in a machine's root filesystem."""
    prefix = str(machine.dir if machine else MACHINES_DIR) + "/"
    if machine is not None:
        groups = machine.cgroups()
    else:
        groups = [cg.parent for cg in machine_cgroup_paths("-")]
        groups += [cg for m in load_machines() for cg in m.cgroups()]
    found = [pid for cg in groups for pid in cgroup_pids(cg)]
    for pid in all_pids():
        if pid == os.getpid() or pid in found:
            continue
        cmd = cmdline(pid)
        if cmd and cmd[0].endswith("systemd-nspawn") and any(a.startswith("--directory=" + prefix) for a in cmd):
            found.append(pid)
            continue
        with contextlib.suppress(OSError):
            if (os.readlink(f"/proc/{pid}/root") + "/").startswith(prefix):
                found.append(pid)
    return sorted(set(found) - {os.getpid()})


def kill_machine_processes(machine: Machine | None = None, timeout: float = 10.0) -> None:
    pids = machine_process_ids(machine)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and machine_process_ids(machine):
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
    for pid in all_pids():
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
