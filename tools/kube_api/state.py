"""The state file of an instance (its processes), its lock, and whether it is healthy."""

from __future__ import annotations

import contextlib
import fcntl
import json

from tools.kube_api.components import START_ORDER
from tools.kube_api.errors import KubeApiError
from tools.kube_api.health import health_checks, wait_for
from tools.kube_api.instance import Instance
from tools.kube_api.processes import process_alive


def load_state(inst: Instance) -> dict | None:
    try:
        return json.loads(inst.state_file.read_text())
    except (OSError, ValueError):
        return None


def save_state(inst: Instance, state: dict) -> None:
    tmp = inst.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(inst.state_file)


@contextlib.contextmanager
def instance_lock(inst: Instance):
    """Serialise up/down of one instance across processes (parallel pytest sessions, xdist workers)."""
    inst.state_root.mkdir(parents=True, exist_ok=True)
    with open(inst.lock_file, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def dead_processes(state: dict) -> list[str]:
    return [
        name
        for name, entry in state.get("processes", {}).items()
        if not process_alive(entry["pid"], entry.get("start_time"))
    ]


def is_healthy(inst: Instance, state: dict | None = None, patience: float = 0.0) -> bool:
    """Every process is alive and the apiserver answers /readyz (retried for `patience` seconds, so a
    busy host does not make a shared instance look dead and get restarted under other sessions)."""
    state = state if state is not None else load_state(inst)
    if not state or set(state.get("processes", {})) != set(START_ORDER):
        return False
    if dead_processes(state):
        return False
    check = health_checks(inst)["kube-apiserver"]
    try:
        wait_for("kube-apiserver /readyz", check, patience, alive=lambda: ", ".join(dead_processes(state)) or None)
    except KubeApiError:
        return False
    return True
