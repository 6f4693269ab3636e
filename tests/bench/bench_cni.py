"""Benchmark of the CNIs side by side, in one run: site.yml's first run with each, and TCP throughput.

For each CNI (BENCH_CNIS, default "calico flannel"), BENCH_CNI_RUNS times (default 1): fresh testbed
machines (1 control plane + 2 workers), site.yml's first run with `anvil_cni` set to it (timed), then
iperf3 (Debian's, from the mirror's apt repository) between the two workers for BENCH_IPERF_SECONDS
(default 5): host to host, and pod to pod across the workers (iperf3 runs in each pod's network namespace,
entered from the node with nsenter, so the packets take the pod's veth and the CNI's VXLAN path). Prints
a table with the median of the runs. Not a pass/fail test.

It recreates the default testbed and refuses to run when machines of it are running; the mirror is shared
as the e2e tests share it (tests/helpers/mirror.py).
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import yaml

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.mirror import default_url, shared_mirror
from tests.helpers.wait import wait_until
from tools import testbed as tb

SITE = REPO_ROOT / "playbooks" / "site.yml"
WORK = REPO_ROOT / "build" / "bench-cni"
CNIS = os.environ.get("BENCH_CNIS", "calico flannel").split()
RUNS = int(os.environ.get("BENCH_CNI_RUNS", "1"))
SECONDS = int(os.environ.get("BENCH_IPERF_SECONDS", "5"))
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]


def sh(node: str, cmd: str) -> str:
    proc = tb.exec_in(tb.get_machine(node), [cmd], capture=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{node}: {cmd!r} failed rc={proc.returncode}: {proc.stdout} {proc.stderr}")
    return proc.stdout


def iperf(server: str, client: str, address: str, server_ns: str = "", client_ns: str = "") -> float:
    """Gbit/s received by `server` from `client` (optionally inside network namespaces: nsenter prefixes)."""
    sh(server, f"{server_ns} iperf3 -s -1 -D -p 5201")
    wait_until(lambda: "LISTEN" in sh(server, f"{server_ns} ss -Hltn 'sport = :5201'"), 30, "iperf3 listening")
    out = sh(client, f"{client_ns} iperf3 -c {address} -p 5201 -t {SECONDS} -J")
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def pod_netns(node: str, pod: str) -> str:
    """nsenter prefix for the network namespace of `pod` (default namespace) on `node`."""
    pod_id = sh(node, f"crictl pods --name {pod} --namespace default --state ready -q").split()[0]
    pid = sh(node, f"crictl inspectp -o go-template --template '{{{{.info.pid}}}}' {pod_id}").strip()
    return f"nsenter -t {pid} -n"


def one_run(cni: str, inventory: Path, groups: dict) -> dict:
    extra = {"anvil_kubeconfig_dest": str(WORK / "admin.conf"), "anvil_cluster_name": "bench", "anvil_cni": cni}
    started = time.monotonic()
    first = run_playbook(SITE, inventory=inventory, extra_vars=extra)
    first_s = time.monotonic() - started
    if first.rc != 0:
        raise RuntimeError(f"site.yml with {cni} failed: {first.stdout[-3000:]}")
    cp, (w1, w2) = groups["control_plane"][0], groups["workers"][:2]
    ips = {h: v["ansible_host"] for g in ("control_plane", "workers") for h, v in groups["vars"][g].items()}
    for node in (w1, w2):
        sh(node, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null")
    image = "%s/%s:%s" % (
        groups["repository"],
        VERSIONS["flannel"]["image"]["name"],
        VERSIONS["flannel"]["image"]["tag"],
    )
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"iperf-{i}", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]},
        }
        for i, node in ((1, w1), (2, w2))
    ]
    sh(cp, f"echo {shlex.quote(chr(10).join('---' + chr(10) + json.dumps(p) for p in pods))} | {KUBECTL} apply -f -")
    sh(cp, f"{KUBECTL} wait --for=condition=Ready pod/iperf-1 pod/iperf-2 --timeout=120s")
    pod_ip = sh(cp, f"{KUBECTL} get pod iperf-1 -o jsonpath='{{.status.podIP}}'").strip()
    host = iperf(w1, w2, ips[w1])
    pod = iperf(w1, w2, pod_ip, pod_netns(w1, "iperf-1"), pod_netns(w2, "iperf-2"))
    return {"first_run": first_s, "pod_gbps": pod, "host_gbps": host}


def measure(cni: str, run: int, results: dict[str, list[dict]]) -> None:
    tb.down()
    tb.up(3, 1)
    inv = yaml.safe_load(Path(tb.INVENTORY).read_text())
    children = inv["all"]["children"]["k8s_cluster"]["children"]
    groups = {
        "control_plane": list(children["control_plane"]["hosts"]),
        "workers": sorted(children["workers"]["hosts"]),
        "vars": {g: children[g]["hosts"] for g in ("control_plane", "workers")},
        "repository": inv["all"]["vars"]["anvil_image_repository"],
    }
    load = Path("/proc/loadavg").read_text().split()[0]
    res = one_run(cni, Path(tb.INVENTORY), groups)
    results[cni].append(res)
    print(
        f"run {run + 1} {cni:<8} (load {load}): site.yml first run {res['first_run']:6.1f} s, "
        f"pod to pod {res['pod_gbps']:5.2f} Gbit/s, host to host {res['host_gbps']:5.2f} Gbit/s",
        flush=True,
    )


def main() -> int:
    if any(m.running() for m in tb.load_machines()):
        print("bench_cni: testbed machines are running; run `make testbed-down` first (this bench recreates them)")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {cni: [] for cni in CNIS}
    with shared_mirror(default_url()):
        try:
            tb.build_rootfs()
            for run in range(RUNS):
                for cni in CNIS:  # interleaved, so both see the same machine load
                    measure(cni, run, results)
        finally:
            tb.down()
    print(f"\nmedians of {RUNS} run(s), 1 control plane + 2 workers, iperf3 -t {SECONDS} across the workers:")
    print(f"{'CNI':<10} {'site.yml first run':>20} {'pod to pod':>14} {'host to host':>14}")
    for cni, runs in results.items():
        if runs:
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{cni:<10} {med['first_run']:>18.1f} s {med['pod_gbps']:>8.2f} Gbit/s {med['host_gbps']:>8.2f} Gbit/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
