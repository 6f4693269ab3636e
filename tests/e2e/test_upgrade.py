"""Kubernetes upgrades, on real machines: a cluster of the versions manifest's older release.

For now the starting point of an upgrade: site.yml deploys the older release (anvil_kubernetes_version) on
1 control plane + 2 workers, and every part of the cluster runs that release, not the default one.

  refusal: a release the manifest does not hold stops in preflight, nothing changed on any host ->
  site.yml at the older release -> every node, API server and host binary reports it; the static pods,
  kube-proxy and CoreDNS run its images (etcd and CoreDNS at the versions its kubeadm expects) -> a re-run
  changes nothing -> upgrade.yml (so far its preflight): check mode prints the plan to the default release;
  a real run stops after the plan; a release the manifest does not hold and a NotReady node are refused;
  none of them changes anything on a host.

The machines are a testbed instance of their own (state /var/lib/anvil-dev/upgrade-e2e, bridge anvil7 on
198.18.7.0/24, machines up-cp1, up-w1, up-w2) that install from the usual mirror on 198.18.0.1 (a host route
on each machine). The older release's binaries and images are built by `make artifacts-upgrade` (not by
`make artifacts`); `make e2e-upgrade` builds them and runs this module, which pushes them into the mirror's
registry. UPGRADE_E2E_KEEP=1 leaves the machines running afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from ansible_collections.anvil.cluster.plugins.module_utils.kubernetes_releases import (
    kubernetes_release,
    kubernetes_versions,
)

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.testbed import OwnInstance
from tests.helpers.wait import wait_until as poll

pytestmark = pytest.mark.upgrade

WORK = REPO_ROOT / "build" / "e2e-upgrade"
INVENTORY = WORK / "testbed-hosts.yml"
SITE = REPO_ROOT / "playbooks" / "site.yml"
UPGRADE = REPO_ROOT / "playbooks" / "upgrade.yml"
MIRROR_ADDR = os.environ.get("UPGRADE_E2E_MIRROR_ADDR", "198.18.0.1")
TB_ENV = {
    "ANVIL_STATE": os.environ.get("UPGRADE_E2E_STATE", "/var/lib/anvil-dev/upgrade-e2e"),
    "ANVIL_BRIDGE": os.environ.get("UPGRADE_E2E_BRIDGE", "anvil7"),
    "ANVIL_BRIDGE_CIDR": os.environ.get("UPGRADE_E2E_BRIDGE_CIDR", "198.18.7.1/24"),
    "ANVIL_TESTBED_INVENTORY": str(INVENTORY),
    "ANVIL_TESTBED_MIRROR_URL": f"http://{MIRROR_ADDR}:8080",
}
CP, WORKERS = "up-cp1", ("up-w1", "up-w2")
NODES = (CP, *WORKERS)
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]
# The release this module deploys: the newest one older than the default (v1.34.12 against v1.35.4).
OLD = kubernetes_versions(VERSIONS)[1]
RELEASE = kubernetes_release(VERSIONS, OLD)
IMAGES = f"{MIRROR_ADDR}:5000/anvil"
EXTRA = {
    "anvil_cluster_name": "e2e-upgrade",
    "anvil_kubeconfig_dest": str(WORK / "admin.conf"),
    "anvil_kubernetes_version": OLD,
}
# Paths a refused run must never touch on a host (on fresh hosts; on a running cluster, what an upgrade changes).
WATCHED = "/etc /usr/local/bin /opt /var/lib/kubelet /var/lib/containerd /var/lib/etcd"
WATCHED_CLUSTER = "/etc/kubernetes /etc/systemd/system /etc/containerd /usr/local/bin"
TIMINGS: dict[str, float] = {}


# ---- the testbed instance --------------------------------------------------------------------------------


# The module's own testbed instance: `tb(...)` runs the testbed tool on it, `sh(node, cmd)` a command on a machine.
INSTANCE = OwnInstance(TB_ENV, MIRROR_ADDR)
tb = INSTANCE.tool
sh = INSTANCE.sh


add_machine = INSTANCE.add


def play(playbook=SITE, check: bool = False, **extra):
    started = time.monotonic()
    result = run_playbook(playbook, inventory=INVENTORY, extra_vars={**EXTRA, **extra}, check=check, workdir=WORK)
    result.seconds = time.monotonic() - started
    return result


def ok(result) -> None:
    assert result.rc == 0, (
        "\n".join(result.failures()) or f"rc={result.rc}\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
    )


def kubectl_json(args: str) -> dict:
    return json.loads(sh(CP, f"{KUBECTL} {args} -o json"))


def release_images() -> list[str]:
    """name:tag of every image the older release adds to the default ones (its own control plane, etcd, CoreDNS)."""
    default = {(i["name"], i["tag"]) for c in VERSIONS.values() for i in c.get("images") or [c.get("image") or {}] if i}
    found = []
    for entry in RELEASE.values():
        for image in entry.get("images") or [entry.get("image") or {}]:
            if image and (image["name"], image["tag"]) not in default:
                found.append(f"{image['name']}:{image['tag']}")
    return found


def registry_has(ref: str) -> bool:
    name, tag = ref.split(":")
    request = urllib.request.Request(
        f"http://127.0.0.1:5000/v2/anvil/{name}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status == 200
    except OSError:
        return False


def stamp_hosts() -> None:
    for node in NODES:
        sh(node, "touch /run/anvil-e2e-stamp")


def changed_since_stamp(paths: str) -> dict[str, list[str]]:
    """Files under `paths` each host gained or changed since stamp_hosts()."""
    changed = {}
    for node in NODES:
        found = sh(
            node, f"find {paths} -xdev -newer /run/anvil-e2e-stamp 2>/dev/null | grep -v '^/etc/ld.so.cache$' || true"
        )
        if found.split():
            changed[node] = found.split()
    return changed


def node_ready(name: str) -> bool:
    node = kubectl_json(f"get node {name}")
    return [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]


def refused(result, text: str) -> None:
    assert result.rc != 0, result.stdout[-3000:]
    assert result.changed() == 0, result.stats
    failure = json.dumps(result.data)
    assert text in failure, f"{text!r} not in the failure: {failure[-3000:]}"
    names = [t["task"]["name"] for t in result.tasks]
    assert any(n.endswith("Stop before any change when the upgrade is refused") for n in names), names


# ---- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def machines(mirror):
    if os.geteuid() != 0:
        pytest.fail("e2e tests need root: the testbed creates network devices and machines")
    WORK.mkdir(parents=True, exist_ok=True)
    # The mirror may have been started before the older release was built: push what its registry lacks.
    push = subprocess.run(
        [sys.executable, "-m", "tools.mirror", "push"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert push.returncode == 0, push.stdout + push.stderr
    missing = [ref for ref in release_images() if not registry_has(ref)]
    assert not missing, f"the mirror has no {', '.join(missing)}: run `make artifacts-upgrade`\n{push.stdout}"
    tb("down", check=False)
    add_machine(CP, "control_plane")
    for worker in WORKERS:
        add_machine(worker, "workers")
    yield
    timings = json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})
    print("\nupgrade timings (s): " + timings)
    (WORK / "timings.json").write_text(timings + "\n")
    if os.environ.get("UPGRADE_E2E_KEEP") != "1":
        tb("down", check=False)


# ---- tests, in order --------------------------------------------------------------------------------------


def test_the_module_deploys_an_older_release_than_the_default():
    assert OLD != VERSIONS["kubernetes"]["version"]
    assert OLD.split(".")[1] != VERSIONS["kubernetes"]["version"].split(".")[1], "the older release is another minor"
    assert release_images(), "the older release brings images of its own"


def test_a_release_the_manifest_does_not_hold_is_refused_before_any_change(machines):
    stamp_hosts()
    result = play(anvil_kubernetes_version="v1.33.9")
    assert result.rc != 0, result.stdout[-2000:]
    assert result.changed() == 0, result.stats
    failure = json.dumps(result.data)
    held = ", ".join(kubernetes_versions(VERSIONS))
    want = (
        "[version_skew] inventory: anvil_kubernetes_version v1.33.9 is not a Kubernetes release of the versions "
        f"manifest (vars/versions.yml holds {held})"
    )
    assert want in failure, failure[-3000:]
    names = [t["task"]["name"] for t in result.tasks]
    assert any(n.endswith("Stop before any change when a host or the inventory is unfit") for n in names), names
    assert not any("Container runtime" in n for n in names), names
    assert changed_since_stamp(WATCHED) == {}


@pytest.fixture(scope="module")
def cluster(machines):
    result = play()
    ok(result)
    TIMINGS[f"site.yml {OLD} 1 cp + 2 workers"] = result.seconds
    print(f"\nsite.yml at {OLD} (1 control plane + 2 workers): {result.seconds:.1f} s, changed={result.changed()}")
    return result


def test_every_node_and_the_api_server_report_the_older_release(cluster):
    nodes = kubectl_json("get nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(NODES)
    for node in nodes:
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == OLD, (node["metadata"]["name"], info)
        ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == ["True"], node["metadata"]["name"]
    server = json.loads(sh(CP, f"{KUBECTL} version -o json"))["serverVersion"]
    assert server["gitVersion"] == OLD and server["minor"] == OLD.split(".")[1], server


def test_every_host_runs_the_older_release_binaries(cluster):
    sha = RELEASE["kubernetes"]["sha256"]
    assert set(sha) >= {"kubelet", "kubeadm", "kubectl"}, "make artifacts-upgrade records the release's sha256"
    assert sha != VERSIONS["kubernetes"]["sha256"]
    for node in NODES:
        assert sh(node, "kubeadm version -o short").strip() == OLD, node
        assert sh(node, "kubelet --version").strip() == f"Kubernetes {OLD}", node
        sums = dict(
            reversed(line.split())
            for line in sh(node, "cd /usr/local/bin && sha256sum kubelet kubeadm kubectl").splitlines()
        )
        assert sums == {b: sha[b] for b in ("kubelet", "kubeadm", "kubectl")}, node


def test_the_static_pods_kube_proxy_and_coredns_run_the_older_release_images(cluster):
    etcd, coredns = RELEASE["etcd"]["image"]["tag"], RELEASE["coredns"]["image"]["tag"]
    wanted = {
        f"kube-apiserver-{CP}": f"{IMAGES}/kube-apiserver:{OLD}",
        f"kube-controller-manager-{CP}": f"{IMAGES}/kube-controller-manager:{OLD}",
        f"kube-scheduler-{CP}": f"{IMAGES}/kube-scheduler:{OLD}",
        f"etcd-{CP}": f"{IMAGES}/etcd:{etcd}",
    }
    pods = {p["metadata"]["name"]: p for p in kubectl_json("-n kube-system get pods")["items"]}
    for name, image in wanted.items():
        pod = pods[name]
        assert [c["image"] for c in pod["spec"]["containers"]] == [image], name
        statuses = pod["status"]["containerStatuses"]
        assert [s["ready"] for s in statuses] == [True] and "running" in statuses[0]["state"], (name, statuses)
    # The static pods are the kubelet's own manifests on the control plane.
    manifests = sh(CP, "grep -h 'image:' /etc/kubernetes/manifests/*.yaml").split()
    assert sorted(m for m in manifests if m != "image:") == sorted(wanted.values())
    proxies = [p for p in pods.values() if p["metadata"].get("labels", {}).get("k8s-app") == "kube-proxy"]
    assert sorted(p["spec"]["nodeName"] for p in proxies) == sorted(NODES)
    assert {p["spec"]["containers"][0]["image"] for p in proxies} == {f"{IMAGES}/kube-proxy:{OLD}"}
    dns = [p for p in pods.values() if p["metadata"].get("labels", {}).get("k8s-app") == "kube-dns"]
    assert dns and {c["image"] for p in dns for c in p["spec"]["containers"]} == {f"{IMAGES}/coredns:{coredns}"}
    # The images carry the binaries of those versions (built from the release's own sources).
    assert f"etcd Version: {RELEASE['etcd']['version'].lstrip('v')}" in sh(
        CP, f"{KUBECTL} -n kube-system exec etcd-{CP} -- etcd --version"
    )
    assert RELEASE["coredns"]["version"].lstrip("v") in sh(
        CP, f"{KUBECTL} -n kube-system exec {dns[0]['metadata']['name']} -- /coredns -version"
    )
    assert f"Kubernetes {OLD}" in sh(
        CP, f"{KUBECTL} -n kube-system exec {proxies[0]['metadata']['name']} -- kube-proxy --version"
    )


def test_a_rerun_at_the_older_release_changes_nothing(cluster):
    result = play()
    ok(result)
    TIMINGS[f"site.yml {OLD} re-run"] = result.seconds
    assert result.changed() == 0, {h: s for h, s in result.stats.items() if s.get("changed")}


# ---- upgrade.yml: the preflight --------------------------------------------------------------------------

NEWEST = kubernetes_versions(VERSIONS)[0]


def test_upgrade_check_mode_prints_the_plan_and_changes_nothing(cluster):
    stamp_hosts()
    result = play(UPGRADE, check=True, anvil_kubernetes_version=NEWEST)
    ok(result)
    assert result.changed() == 0, result.stats
    lines = result.result("Show the plan", CP)["msg"]
    assert lines == [
        f"cluster: {OLD} -> {NEWEST} (minor)",
        f"{CP} (control plane): {OLD} -> {NEWEST}",
        *[f"{w} (worker): {OLD} -> {NEWEST}" for w in WORKERS],
    ]
    assert changed_since_stamp(WATCHED_CLUSTER) == {}


def test_upgrade_stops_after_the_plan_while_the_upgrade_steps_are_not_written(cluster):
    stamp_hosts()
    result = play(UPGRADE, anvil_kubernetes_version=NEWEST)
    assert result.rc != 0 and result.changed() == 0, result.stats
    assert "cannot upgrade nodes yet; nothing was changed on any host" in json.dumps(result.data)
    assert changed_since_stamp(WATCHED_CLUSTER) == {}
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in kubectl_json("get nodes")["items"]} == {OLD}


def test_upgrade_to_the_running_release_has_nothing_to_do(cluster):
    result = play(UPGRADE, anvil_kubernetes_version=OLD)
    ok(result)
    assert result.result("Show the plan", CP)["msg"][-1] == f"every node already runs {OLD}: nothing to upgrade"


def test_upgrade_refuses_a_release_the_manifest_does_not_hold(cluster):
    stamp_hosts()
    result = play(UPGRADE, anvil_kubernetes_version="v1.36.0")
    held = ", ".join(kubernetes_versions(VERSIONS))
    refused(result, f"Kubernetes v1.36.0 is not a release of the versions manifest (vars/versions.yml holds {held})")
    assert changed_since_stamp(WATCHED_CLUSTER) == {}


def test_upgrade_refuses_a_cluster_with_a_notready_node(cluster):
    down = WORKERS[-1]
    sh(down, "systemctl stop kubelet")
    try:
        started = time.monotonic()
        poll(lambda: not node_ready(down), 300, f"{down} to turn NotReady")
        TIMINGS["node NotReady after its kubelet stopped"] = time.monotonic() - started
        stamp_hosts()
        result = play(UPGRADE, anvil_kubernetes_version=NEWEST)
        refused(result, f"node {down} is NotReady: repair it (or remove it with remove_node.yml) before an upgrade")
        assert changed_since_stamp(WATCHED_CLUSTER) == {}
    finally:
        sh(down, "systemctl start kubelet")
    poll(lambda: node_ready(down), 300, f"{down} Ready again")
