"""Per-machine cgroups (the host may not run systemd, so nobody else would separate the machines)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from tools.testbed.config import TESTBED_DIR

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


def create_cgroup(path: Path) -> None:
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


def cgroup_pids(path: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _, files in os.walk(path):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids += [int(x) for x in (Path(dirpath) / "cgroup.procs").read_text().split()]
    return pids


def remove_cgroup(path: Path) -> None:
    if not path.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the anvil-testbed group, once its last machine is gone
