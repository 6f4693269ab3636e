"""Machine records (machine.json), their names and roles, and creating a machine's root filesystem."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.testbed.cgroups import machine_cgroup_paths
from tools.testbed.config import (
    BLACKHOLE_GATEWAY,
    CONTROL_PLANE,
    HOST_ADDR,
    MACHINES_DIR,
    MIRROR_ADDR,
    NETWORK,
    PLAIN_DIRS,
    PREFIX,
    ROLE_PREFIX,
    SSH_KEY,
    STORAGE,
    TESTBED_DIR,
    WORKERS,
    TestbedError,
    run,
    write_file,
)
from tools.testbed.rootfs import base_rootfs, install_machine_units


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
    def ssh_control_dir(self) -> Path:
        """Where Ansible keeps its ssh control masters for this machine (ansible_control_path_dir): they
        live and go with the machine, so a master never outlives it or serves a new machine at its address."""
        return self.dir / "ssh"

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
        write_file(self.dir / "machine.json", json.dumps(asdict(self), indent=2) + "\n")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_nspawn_of(pid: int, machine: Machine) -> bool:
    cmd = cmdline(pid)
    return bool(cmd) and cmd[0].endswith("systemd-nspawn") and f"--machine={machine.name}" in cmd


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def load_machines() -> list[Machine]:
    machines = []
    if MACHINES_DIR.is_dir():
        for path in sorted(MACHINES_DIR.glob("*/machine.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                machines.append(Machine(**json.loads(path.read_text())))
    return sorted(machines, key=machine_sort_key)


def machine_sort_key(m: Machine) -> tuple[int, int, str]:
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


def machine_names(nodes: int, control_planes: int) -> list[tuple[str, str]]:
    if nodes < 1 or control_planes < 1 or control_planes > nodes:
        raise TestbedError(f"need 1 <= CONTROL_PLANES <= NODES (got NODES={nodes} CONTROL_PLANES={control_planes})")
    names = [(f"{PREFIX}-cp{i}", CONTROL_PLANE) for i in range(1, control_planes + 1)]
    names += [(f"{PREFIX}-w{i}", WORKERS) for i in range(1, nodes - control_planes + 1)]
    return names


def ensure_ssh_key() -> Path:
    if not SSH_KEY.exists():
        TESTBED_DIR.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "anvil-testbed", "-f", str(SSH_KEY)])
    SSH_KEY.chmod(0o600)
    return SSH_KEY


def create_machine(name: str, role: str, ip: str) -> Machine:
    machine = Machine(name=name, role=role, ip=ip, storage=STORAGE, base=str(base_rootfs()))
    if machine.dir.exists():
        delete_machine_dir(machine)
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
    write_file(root / "etc/hostname", name + "\n")
    write_file(root / "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    write_file(root / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    # No DNS server in the testbed; point at the host so lookups fail fast and CoreDNS has an upstream.
    write_file(root / "etc/resolv.conf", f"nameserver {HOST_ADDR}\n")
    env = f"ANVIL_ADDRESS={ip}/{NETWORK.prefixlen}\nANVIL_GATEWAY={BLACKHOLE_GATEWAY}\nANVIL_HOST={HOST_ADDR}\n"
    env += f"ANVIL_MIRROR={MIRROR_ADDR}\n"
    write_file(root / "etc/anvil/testbed.env", env)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file(ssh_dir / "authorized_keys", Path(str(SSH_KEY) + ".pub").read_text(), 0o600)
    # Host keys of this machine (ed25519 and ecdsa: RSA generation costs seconds per machine).
    for algo in ("ed25519", "ecdsa"):
        key = root / f"etc/ssh/ssh_host_{algo}_key"
        run(["ssh-keygen", "-q", "-t", algo, "-N", "", "-C", f"root@{name}", "-f", str(key)])
    hostkeys = "".join(f"HostKey /etc/ssh/ssh_host_{algo}_key\n" for algo in ("ed25519", "ecdsa"))
    write_file(root / "etc/ssh/sshd_config.d/testbed.conf", hostkeys)
    install_machine_units(root)
    return machine


def delete_machine_dir(machine: Machine) -> None:
    """Delete a machine's directory, never through a mounted root filesystem (that would be the base's)."""
    machine.unmount_rootfs()
    if os.path.ismount(machine.rootfs):
        raise TestbedError(f"{machine.rootfs} is still mounted; not deleting {machine.dir}")
    shutil.rmtree(machine.dir)
