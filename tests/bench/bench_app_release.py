"""Benchmark: no-op upgrade of a 50-object release with anvil.cluster.app_release, side by side with
kubernetes.core.k8s (apply of the same manifests) and `helm upgrade --install` (when helm is built).

Everything goes through the real tools against the local API server (tools/kube_api; a running
healthy instance is reused as is). Prints wall-clock seconds per run; not a pass/fail test.

    python -m tests.bench.bench_app_release [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

from tests.helpers.ansible import kube_play, run_playbook

KUBE_API = [sys.executable, "-m", "tools.kube_api"]  # run in REPO


def kube_api_kubeconfig() -> str:
    status = subprocess.run([*KUBE_API, "status"], cwd=REPO, capture_output=True, text=True, check=False)
    try:
        state = json.loads(status.stdout)
    except json.JSONDecodeError:
        state = {}
    if not state.get("healthy"):
        subprocess.run([*KUBE_API, "up", "--nodes", "3"], cwd=REPO, check=True)
        state = json.loads(
            subprocess.run([*KUBE_API, "status"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        )
    return state["kubeconfig"]


def manifests() -> list[dict]:
    """50 objects: 20 ConfigMaps, 10 Secrets, 10 Services, 10 Deployments."""
    out: list[dict] = []
    for i in range(20):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i}"},
                "data": {"settings.yaml": f"index: {i}\nfeature: on\n" * 5},
            }
        )
    for i in range(10):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"secret-{i}"},
                "data": {"token": base64.b64encode(f"token-{i}".encode()).decode()},
            }
        )
    for i in range(10):
        labels = {"app": f"app-{i}"}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"app-{i}"},
                "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        )
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"app-{i}", "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "bench.example/app:1",
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                }
                            ]
                        },
                    },
                },
            }
        )
    return out


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def play(task: dict, kubeconfig: str) -> list[dict]:
    return kube_play(dict(task, name="bench"), kubeconfig)


TASK_SECONDS: list[float] = []
TASK_RESULTS: list[dict] = []


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z"))


def run_checked(plays, expect_changed=None):
    """Run a playbook; also records the task's own duration (module run, without ansible-playbook startup)."""
    result = run_playbook(plays)
    task = result.result("bench")
    if result.rc != 0:
        raise SystemExit("benchmark run failed: %s" % task.get("msg"))
    if expect_changed is not None and bool(task.get("changed")) != expect_changed:
        raise SystemExit("expected changed=%s, got %s" % (expect_changed, task.get("changed")))
    duration = next(t["task"]["duration"] for t in result.tasks if t["task"]["name"] == "bench")
    TASK_SECONDS.append((_stamp(duration["end"]) - _stamp(duration["start"])).total_seconds())
    TASK_RESULTS.append(task)
    return task


def task_note(runs: int) -> str:
    """Median task-only time of the last `runs` playbook runs."""
    return "task only: median %.2fs" % statistics.median(TASK_SECONDS[-runs:])


def summary(name: str, install: float, noops: list[float], note: str = "") -> str:
    return "%-34s install %6.2fs   no-op upgrade median %6.2fs (min %.2f, max %.2f, n=%d)%s" % (
        name,
        install,
        statistics.median(noops),
        min(noops),
        max(noops),
        len(noops),
        ("   " + note) if note else "",
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="no-op upgrades per tool")
    args = parser.parse_args()
    kubeconfig = kube_api_kubeconfig()
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    objects = manifests()
    suffix = "%d" % os.getpid()
    namespaces = {tool: f"bench-{tool}-{suffix}" for tool in ("ar", "k8s", "helm")}
    for ns in namespaces.values():
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    lines = ["objects per release: %d (20 ConfigMaps, 10 Secrets, 10 Services, 10 Deployments)" % len(objects)]
    try:
        baseline = [
            timed(lambda: run_checked(play({"ansible.builtin.debug": {"msg": "noop"}}, kubeconfig))) for _ in range(2)
        ]
        lines.append(
            "ansible-playbook with one debug task: median %.2fs (%s)" % (statistics.median(baseline), task_note(2))
        )

        release_task = {
            "anvil.cluster.app_release": {
                "name": "bench",
                "namespace": namespaces["ar"],
                "definitions": objects,
                "timeout": 300,
            }
        }
        install = timed(lambda: run_checked(play(release_task, kubeconfig), expect_changed=True))
        noops = [
            timed(lambda: run_checked(play(release_task, kubeconfig), expect_changed=False)) for _ in range(args.runs)
        ]
        secret = api.read_namespaced_secret("anvil.release.v1.bench.v1", namespaces["ar"])
        record_size = len(secret.data["release"])
        revisions = len(
            api.list_namespaced_secret(namespaces["ar"], label_selector="owner=anvil.cluster,name=bench").items
        )
        lines.append(
            summary(
                "anvil.cluster.app_release",
                install,
                noops,
                "%s; record %.1f KiB, %d revision(s) after %d runs; API requests: install %s, no-op %s"
                % (
                    task_note(args.runs),
                    record_size / 1024,
                    revisions,
                    args.runs + 1,
                    TASK_RESULTS[-args.runs - 1].get("api_requests"),
                    TASK_RESULTS[-1].get("api_requests"),
                ),
            )
        )

        k8s_task = {
            "kubernetes.core.k8s": {
                "namespace": namespaces["k8s"],
                "definition": objects,
                "apply": True,
                "server_side_apply": {"field_manager": "bench"},
                "wait": True,
                "wait_timeout": 300,
            }
        }
        install = timed(lambda: run_checked(play(k8s_task, kubeconfig), expect_changed=True))
        noops = [timed(lambda: run_checked(play(k8s_task, kubeconfig))) for _ in range(args.runs)]
        lines.append(
            summary(
                "kubernetes.core.k8s (apply, wait)", install, noops, "%s; no history, no prune" % task_note(args.runs)
            )
        )

        helm = sorted(Path("/var/cache/anvil/files/helm").glob("*/linux-amd64/helm"))
        helm_bin = str(helm[-1]) if helm else shutil.which("helm")
        if helm_bin:
            with tempfile.TemporaryDirectory() as tmp:
                chart = Path(tmp) / "bench"
                (chart / "templates").mkdir(parents=True)
                (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 1.0.0\n")
                (chart / "templates" / "all.yaml").write_text(yaml.safe_dump_all(objects))
                cmd = [
                    helm_bin,
                    "upgrade",
                    "--install",
                    "bench",
                    str(chart),
                    "--namespace",
                    namespaces["helm"],
                    "--kubeconfig",
                    kubeconfig,
                    "--wait",
                    "--timeout",
                    "5m",
                ]
                install = timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
                noops = [timed(lambda: subprocess.run(cmd, check=True, capture_output=True)) for _ in range(args.runs)]
                revisions = len(api.list_namespaced_secret(namespaces["helm"], label_selector="owner=helm").items)
                lines.append(
                    summary(
                        "helm upgrade --install --wait",
                        install,
                        noops,
                        "%d revision(s) after %d runs (CLI, no Ansible startup)" % (revisions, args.runs + 1),
                    )
                )
        else:
            lines.append("helm: not built (/var/cache/anvil/files/helm) and not on PATH: skipped")
    finally:
        for ns in namespaces.values():
            api.delete_namespace(ns, propagation_policy="Background")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
