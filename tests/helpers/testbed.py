"""The e2e tests' handle on testbed machines (tools/testbed), and what a testbed adds to the host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools import testbed as tb

# e2e test modules that boot a testbed instance of their own (state directory, bridge and machine names) and
# never use the `testbed` fixture of the shared one, by file name. `make e2e` gives each a pytest-xdist worker
# of its own (tests/e2e/conftest.py); every other e2e test runs on the `shared` worker. (test_upgrade.py's tests
# are marked `upgrade` and run only in `make e2e-upgrade`, alone; listed here so they too never touch the shared
# testbed: tests/unit/test_e2e_groups.py checks it.)
OWN_INSTANCE_MODULES = ("test_node_lifecycle.py", "test_upgrade.py")


def e2e_worker_group(nodeid: str) -> str:
    """The worker group of an e2e test: its module's file name for OWN_INSTANCE_MODULES, else `shared`."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return module if module in OWN_INSTANCE_MODULES else "shared"


@dataclass
class OwnInstance:
    """A testbed instance an e2e module boots for itself, driven through `python -m tools.testbed` with the
    instance's environment (ANVIL_STATE, ANVIL_BRIDGE, ANVIL_BRIDGE_CIDR, ANVIL_TESTBED_INVENTORY, ...)."""

    env: dict[str, str]
    # The mirror's address when the instance's bridge is not the mirror's: each machine gets a host route to it.
    mirror_addr: str | None = None

    def tool(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """The testbed tool on this instance; an AssertionError with its output when it fails and `check`."""
        proc = subprocess.run(
            [sys.executable, "-m", "tools.testbed", *args],
            cwd=Path(__file__).resolve().parents[2],
            env=dict(os.environ, **self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"testbed {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sh(self, node: str, cmd: str, check: bool = True, timeout: float = 120) -> str:
        """A shell command on one of the instance's machines; its output."""
        proc = self.tool("exec", node, "--", "sh", "-c", cmd, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{node}: {cmd!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def route_to_mirror(self, node: str) -> None:
        """A host route from the machine to the mirror (it listens on the default testbed bridge)."""
        if self.mirror_addr:
            self.sh(node, f"ip route replace {self.mirror_addr}/32 dev host0")

    def add(self, name: str, role: str) -> None:
        """Boot machine `name` into the instance's inventory group `role`, with its route to the mirror."""
        self.tool("add", name, "--role", role)
        self.route_to_mirror(name)


def sh(testbed, node: str, cmd: str, check: bool = True) -> str:
    """A shell command on a testbed machine; its output, or an AssertionError naming the command."""
    proc = testbed.exec(node, cmd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{node}: {cmd!r} failed rc={proc.returncode}: {proc.stdout} {proc.stderr}")
    return proc.stdout


def cluster_groups(inventory: str | Path) -> tuple[dict, str, list[str]]:
    """(the inventory as data, the first control plane, the workers in name order) of a testbed inventory."""
    inv = yaml.safe_load(Path(inventory).read_text())
    groups = inv["all"]["children"]["k8s_cluster"]["children"]
    return inv, next(iter(groups["control_plane"]["hosts"])), sorted((groups.get("workers") or {}).get("hosts") or {})


def host_snapshot() -> dict[str, set[str]]:
    """What the testbed adds to the host: its veths and bridge, mounts, processes, cgroups, machine dirs.
    (Scoped to this testbed: other engineers' bridges or mounts on a shared host are not its business.)"""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return {
        "veths": {n for n in names if n.startswith("vb-") and any(n == m.veth for m in tb.load_machines())}
        | {n for n in names if n.startswith("vb-" + tb.NAME_PREFIX)},
        "bridge": {n for n in names if n == tb.BRIDGE},
        "mounts": {
            m
            for m in mounts
            if m.startswith(str(tb.TESTBED_DIR) + "/")
            or (m.startswith("/run/systemd/nspawn/") and f"/{tb.NAME_PREFIX}" in m)  # nspawn's, of our machines
        },
        "processes": {f"{pid} {' '.join(tb.cmdline(pid))[:80]}" for pid in tb.machine_process_ids(None)},
        "cgroups": {str(cg.parent) for cg in tb.machine_cgroup_paths("-") if cg.parent.exists()},
        "machine_dirs": {str(p) for p in tb.MACHINES_DIR.glob("*")} if tb.MACHINES_DIR.exists() else set(),
    }


@dataclass
class Testbed:
    """Handle on the session's machines, for tests."""

    __test__ = False  # a helper, not a test class (its name starts with "Test")

    inventory: Path
    hosts: dict[str, str] = field(default_factory=dict)
    up_seconds: float = 0.0
    created: bool = False
    clean_host: dict[str, set[str]] = field(default_factory=dict)

    def refresh(self) -> None:
        self.hosts = {m.name: m.ip for m in tb.load_machines()}

    def machine(self, name: str) -> tb.Machine:
        return tb.get_machine(name)

    def exec(self, name: str, cmd: str | list[str], check: bool = False, timeout: float = 300):
        """Run a command inside a machine (no ssh): a string runs through /bin/sh -c, a list as argv.
        Returns the CompletedProcess (text stdout/stderr); check=True raises on a non-zero exit."""
        command = [cmd] if isinstance(cmd, str) else list(cmd)
        proc = tb.exec_in(tb.get_machine(name), command, capture=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name}: {command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def stop(self, name: str) -> None:
        tb.stop(name)

    def start(self, name: str) -> None:
        tb.start(name)

    def add(self, name: str, role: str | None = None) -> str:
        machine = tb.add(name, role)
        self.refresh()
        return machine.ip

    def remove(self, name: str) -> None:
        tb.remove(name)
        self.refresh()

    def up(self, nodes: int, control_planes: int = 1) -> float:
        started = time.monotonic()
        tb.up(nodes, control_planes)
        self.refresh()
        return time.monotonic() - started

    def down(self) -> None:
        tb.down()
        self.refresh()
