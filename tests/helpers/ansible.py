"""Run real ansible-playbook from tests and read the outcome as data.

Integration and e2e tests drive modules and roles through Ansible itself (not by importing the
module), using the `ansible.posix.json` stdout callback so results can be asserted precisely.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_DIR = REPO_ROOT / "build" / "collections"


def ensure_collection_link() -> Path:
    """Expose the repository as ansible_collections/anvil/cluster (what `make setup` also does) and put
    that tree on sys.path: tests import the collection's code as ansible_collections.anvil.cluster,
    exactly as Ansible loads it (never as `plugins.`, which would be a second copy of every module)."""
    link = COLLECTIONS_DIR / "ansible_collections" / "anvil" / "cluster"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(REPO_ROOT)
    if str(COLLECTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_DIR))
    return COLLECTIONS_DIR


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": str(ensure_collection_link()),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "true",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
            # Local tasks use the test venv (it has the kubernetes client); inventories of remote hosts
            # set ansible_python_interpreter themselves.
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        }
    )
    if extra:
        env.update(extra)
    return env


@dataclass
class PlaybookResult:
    rc: int
    data: dict[str, Any]
    stdout: str
    stderr: str
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        return self.data.get("stats", {})

    def changed(self, host: str | None = None) -> int:
        return sum(s.get("changed", 0) for h, s in self.stats.items() if host in (None, h))

    def failed(self, host: str | None = None) -> int:
        return sum(s.get("failures", 0) + s.get("unreachable", 0) for h, s in self.stats.items() if host in (None, h))

    def failures(self) -> list[str]:
        """'<task> on <host>: <message>' for every failed or unreachable task result (rescued ones too),
        so an assertion names the step that failed instead of the last screen of output."""
        found = []
        for task in self.tasks:
            for host, res in task["hosts"].items():
                if res.get("failed") or res.get("unreachable"):
                    msg = str(res.get("msg") or "")
                    # A failed command: its own output says why ("non-zero return code" does not).
                    for stream in ("stderr", "stdout"):
                        if res.get(stream):
                            msg += f"\n{stream}: {str(res[stream])[-3000:]}"
                    found.append(f"{task['task']['name']} on {host}: {msg[:6500]}")
        return found

    def result(self, task_name: str, host: str = "localhost") -> dict[str, Any]:
        """The result of the last task with this name on this host."""
        found = None
        for task in self.tasks:
            if task["task"]["name"] == task_name and host in task["hosts"]:
                found = task["hosts"][host]
        if found is None:
            names = [t["task"]["name"] for t in self.tasks]
            raise KeyError(f"no result for task {task_name!r} on {host}; tasks were: {names}")
        return found


def kube_play(task: dict[str, Any], kubeconfig: str | Path) -> list[dict[str, Any]]:
    """One play on localhost (no facts) running `task`, whose Kubernetes modules (anvil.cluster's and
    kubernetes.core's action groups) talk to the cluster of `kubeconfig`."""
    defaults = {"kubeconfig": str(kubeconfig)}
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/anvil.cluster.k8s": defaults, "group/kubernetes.core.k8s": defaults},
            "tasks": [task],
        }
    ]


def run_playbook(
    playbook: str | Path | list[dict[str, Any]],
    *,
    inventory: str | Path | None = None,
    extra_vars: dict[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    workdir: Path | None = None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    timeout: float = 1800,
) -> PlaybookResult:
    """Run a playbook (a path, or plays given as data) and return its parsed JSON result."""
    workdir = Path(workdir or REPO_ROOT / "build" / "test-playbooks")
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(playbook, list):
        path = workdir / f"play-{os.getpid()}-{abs(hash(json.dumps(playbook, sort_keys=True, default=str)))}.yml"
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    else:
        path = Path(playbook)
    cmd = ["ansible-playbook", str(path)]
    cmd += ["-i", str(inventory) if inventory else "localhost,"]
    if inventory is None:
        cmd += ["-c", "local"]
    if extra_vars:
        varfile = workdir / f"vars-{os.getpid()}-{abs(hash(json.dumps(extra_vars, sort_keys=True, default=str)))}.json"
        varfile.write_text(json.dumps(extra_vars))
        varfile.chmod(0o600)
        cmd += ["-e", f"@{varfile}"]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if limit:
        cmd += ["--limit", limit]
    cmd += args or []
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(env), timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{") :]) if "{" in proc.stdout else {}
    except json.JSONDecodeError:
        data = {}
    tasks: list[dict[str, Any]] = []
    for play in data.get("plays", []):
        tasks.extend(play.get("tasks", []))
    return PlaybookResult(rc=proc.returncode, data=data, stdout=proc.stdout, stderr=proc.stderr, tasks=tasks)
