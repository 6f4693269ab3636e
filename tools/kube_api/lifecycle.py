"""Start (or reuse), stop and report on an instance."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import yaml

from tools.kube_api import processes as proc
from tools.kube_api.binaries import find_binaries
from tools.kube_api.components import COMMANDS, START_ORDER, kwok_args, scheduler_config
from tools.kube_api.errors import KubeApiError, log
from tools.kube_api.health import health_checks, wait_for
from tools.kube_api.instance import DEFAULT, Instance
from tools.kube_api.kwok import scale_nodes, wait_nodes_ready
from tools.kube_api.pki import generate_pki, write_component_kubeconfigs
from tools.kube_api.rest import Rest
from tools.kube_api.state import dead_processes, instance_lock, is_healthy, load_state, save_state


def wait_default_service_account(client, timeout: float, alive: Callable[[], str | None]) -> None:
    """The namespace `default` has its ServiceAccount: kcm's controllers are working, pods can be created."""
    rest = Rest.of(client)

    def has_sa() -> bool:
        status, _ = rest.get("/api/v1/namespaces/default/serviceaccounts/default", ok=(200, 404))
        return status == 200

    wait_for("the default ServiceAccount (controller-manager)", has_sa, timeout, alive)


def teardown(inst: Instance, state: dict | None = None) -> list[str]:
    """Stop every recorded process (reverse start order) and remove the instance directory."""
    state = state if state is not None else load_state(inst)
    stopped = []
    if state:
        procs = state.get("processes", {})
        for name in reversed(START_ORDER):
            if name in procs:
                proc.stop_process(procs[name])
                stopped.append(name)
    # Processes of this instance that the state file does not know (state lost, killed mid-start).
    for pid in proc.orphan_pids(inst):
        proc.stop_process({"pid": pid, "start_time": proc.process_start_time(pid)})
        stopped.append(f"orphan pid {pid}")
    if inst.dir.exists():
        shutil.rmtree(inst.dir, ignore_errors=True)
    return stopped


def _keep_failed_logs(inst: Instance) -> Path | None:
    if not inst.logs.exists():
        return None
    shutil.rmtree(inst.failed_logs_dir, ignore_errors=True)
    shutil.copytree(inst.logs, inst.failed_logs_dir)
    return inst.failed_logs_dir


def start_fresh(
    inst: Instance, nodes: int, timeout: float = 120.0, cache: Path | None = None, kwok_stages: Path | None = None
) -> dict:
    binaries = find_binaries(cache)
    busy = {name: port for name, port in inst.all_ports().items() if proc.port_in_use(port)}
    if busy:
        raise KubeApiError(
            f"ports already in use on 127.0.0.1: {busy}; another local API or a real cluster is running "
            f"(stop it with `python -m tools.kube_api down` if it is ours)"
        )
    low, high = proc.ephemeral_port_range()
    ephemeral = sorted(p for p in inst.all_ports().values() if low <= p <= high)
    if ephemeral:
        log(
            f"warning: ports {ephemeral} are in the kernel's range for outgoing connections ({low}-{high}) "
            f"and may be taken at any moment; use a --port-offset that keeps every port below {low}"
        )
    if inst.dir.exists():
        shutil.rmtree(inst.dir)
    inst.dir.mkdir(parents=True)
    os.chmod(inst.dir, 0o700)
    state: dict = {
        "name": inst.name,
        "server": inst.server,
        "kubeconfig": str(inst.admin_kubeconfig),
        "ports": inst.all_ports(),
        "binaries": {k: str(v) for k, v in binaries.items()},
        "processes": {},
        "nodes": nodes,
        "started_at": time.time(),
    }
    t0 = time.monotonic()
    try:
        generate_pki(inst.pki)
        write_component_kubeconfigs(inst)
        (inst.dir / "kube-scheduler.yaml").write_text(yaml.safe_dump(scheduler_config(inst)))
        checks = health_checks(inst)

        def alive() -> str | None:
            return ", ".join(dead_processes(state)) or None

        def launch(name: str) -> None:
            if name == "kwok" and kwok_stages:
                argv = kwok_args(inst, binaries[name], kwok_stages)
            else:
                argv = COMMANDS[name](inst, binaries[name])
            state["processes"][name] = proc.start_process(inst, name, argv)
            save_state(inst, state)

        launch("etcd")
        wait_for("etcd", checks["etcd"], 30, alive)
        launch("kube-apiserver")
        wait_for("kube-apiserver /readyz", checks["kube-apiserver"], timeout, alive)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            launch(name)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            wait_for(f"{name} /healthz", checks[name], 60, alive)
        log(f"control plane up in {time.monotonic() - t0:.1f}s")
        client = Rest.for_instance(inst)
        names = scale_nodes(inst, client, nodes)
        log(f"nodes created at {time.monotonic() - t0:.1f}s")
        wait_nodes_ready(inst, client, names, timeout=max(60.0, nodes * 0.2))
        log(f"nodes Ready at {time.monotonic() - t0:.1f}s")
        wait_default_service_account(client, 60, alive)
        state["ready_seconds"] = round(time.monotonic() - t0, 2)
        save_state(inst, state)
        shutil.rmtree(inst.failed_logs_dir, ignore_errors=True)
        log(f"ready in {state['ready_seconds']}s with {len(names)} node(s)")
        return state
    except KubeApiError as e:
        tails = "".join(
            f"\n--- last lines of {name}.log:\n{proc.log_tail(inst.logs / f'{name}.log', 15)}"
            for name in dead_processes(state)
        )
        kept = _keep_failed_logs(inst)
        teardown(inst, state)
        if kept:
            log(f"start failed; logs of this attempt kept in {kept}")
        raise KubeApiError(f"{e}{tails}") from None
    except BaseException:
        kept = _keep_failed_logs(inst)
        teardown(inst, state)
        if kept:
            log(f"start failed; logs of this attempt kept in {kept}")
        raise


def up(
    inst: Instance = DEFAULT,
    nodes: int = 3,
    allow_shrink: bool = True,
    timeout: float = 120.0,
    kwok_stages: Path | None = None,
) -> dict:
    """Start the instance, or reuse a healthy one (scaling its kwok nodes to `nodes`)."""
    if nodes < 0:
        raise KubeApiError("--nodes must be >= 0")
    with instance_lock(inst):
        state = load_state(inst)
        if state and is_healthy(inst, state, patience=45):
            t0 = time.monotonic()
            client = Rest.for_instance(inst)
            names = scale_nodes(inst, client, nodes, allow_shrink=allow_shrink)
            wait_nodes_ready(inst, client, names, timeout=max(60.0, nodes * 0.2))
            state["nodes"] = len(names)
            save_state(inst, state)
            log(f"reusing the running instance ({len(names)} node(s), checked in {time.monotonic() - t0:.1f}s)")
            return state
        if state or inst.dir.exists():
            log("found a stale or unhealthy instance: cleaning it up")
            teardown(inst, state)
        return start_fresh(inst, nodes, timeout=timeout, kwok_stages=kwok_stages)


def down(inst: Instance = DEFAULT) -> list[str]:
    with instance_lock(inst):
        return teardown(inst)


def status(inst: Instance = DEFAULT) -> dict:
    state = load_state(inst)
    if not state:
        return {"running": False, "dir": str(inst.dir)}
    procs = {}
    for name, entry in state.get("processes", {}).items():
        alive = proc.process_alive(entry["pid"], entry.get("start_time"))
        procs[name] = {
            "pid": entry["pid"],
            "alive": alive,
            "rss_mib": round(proc.rss_kib(entry["pid"]) / 1024, 1) if alive else 0,
        }
    healthy = is_healthy(inst, state, patience=5)
    return {
        "running": True,
        "healthy": healthy,
        "server": state.get("server"),
        "kubeconfig": state.get("kubeconfig"),
        "nodes": state.get("nodes"),
        "processes": procs,
        "rss_total_mib": round(sum(p["rss_mib"] for p in procs.values()), 1),
    }


def env_line(inst: Instance = DEFAULT) -> str:
    return f"export KUBECONFIG={inst.admin_kubeconfig}"
