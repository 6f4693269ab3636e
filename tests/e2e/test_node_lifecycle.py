"""Node lifecycle on real machines: add, drain, remove (workers and the first control plane), reset.

The tests run in order on one cluster of their own: a separate testbed instance (own state directory,
bridge `anvil9` on 198.18.9.0/24, machines `lc-*`), so they can run next to the cluster-core tests'
testbed. The machines install from the usual mirror on 198.18.0.1 (a host route on each machine).

  1+1 via site.yml -> add lc-w2 (timed) -> re-run no-op -> drain with a PDB watched -> remove lc-w2 (host
  clean, operator firewall rule kept, re-run no-op, reset refuses without confirmation) -> stop lc-w1,
  add lc-w2 again (timed, one worker unreachable) -> remove the dead lc-w1 without reaching it ->
  add lc-cp2 + lc-cp3 (a worker is a backup host: the limited run gives it their keys) -> remove lc-cp1
  (the first control plane): API served, etcd 2 healthy members, lc-cp1 clean; before that, a removal that
  would lose etcd quorum is refused and changes nothing.

The control-plane part (from adding lc-cp2 + lc-cp3) is marked `ha`: `make e2e-ha` runs it (on the 1+1
cluster the module fixture deploys), `make e2e` the worker part.

Environment: LIFECYCLE_KEEP=1 leaves the machines running afterwards; LIFECYCLE_REUSE=1 reuses running
machines lc-cp1 + lc-w1 (site.yml then only completes what is missing).
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import yaml

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.testbed import OwnInstance
from tests.helpers.wait import wait_until as poll

WORK = REPO_ROOT / "build" / "e2e-lifecycle"
# The inventory is a directory: the testbed's hosts.yml, and backup.yml while a test puts a host in the
# group backup.
INVENTORY = WORK / "inventory"
PLAYBOOKS = REPO_ROOT / "playbooks"
MIRROR_ADDR = os.environ.get("LIFECYCLE_MIRROR_ADDR", "198.18.0.1")
TB_ENV = {
    "ANVIL_STATE": os.environ.get("LIFECYCLE_STATE", "/var/lib/anvil-dev/lifecycle-e2e"),
    "ANVIL_BRIDGE": os.environ.get("LIFECYCLE_BRIDGE", "anvil9"),
    "ANVIL_BRIDGE_CIDR": os.environ.get("LIFECYCLE_BRIDGE_CIDR", "198.18.9.1/24"),
    "ANVIL_TESTBED_INVENTORY": str(INVENTORY / "hosts.yml"),
    "ANVIL_TESTBED_MIRROR_URL": f"http://{MIRROR_ADDR}:8080",
}
EXTRA_VARS = {
    "anvil_registry_mirror": f"{MIRROR_ADDR}:5000",
    "anvil_image_repository": f"{MIRROR_ADDR}:5000/anvil",
    "anvil_cluster_name": "e2e-lifecycle",
    "anvil_kubeconfig_dest": str(WORK / "admin.conf"),
}
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]
PAUSE_IMAGE = f"{MIRROR_ADDR}:5000/anvil/{VERSIONS['pause']['image']['name']}:{VERSIONS['pause']['image']['tag']}"
TIMINGS: dict[str, float] = {}


# ---- the separate testbed instance ------------------------------------------------------------------------


# The module's own testbed instance: `tb(...)` runs the testbed tool on it, `sh(node, cmd)` a command on a machine.
INSTANCE = OwnInstance(TB_ENV, MIRROR_ADDR)
tb = INSTANCE.tool
sh = INSTANCE.sh
route_to_mirror = INSTANCE.route_to_mirror
add_machine = INSTANCE.add


def start_machine(name: str) -> None:
    tb("start", name)
    route_to_mirror(name)


def play(name: str, limit: str | None = None, check: bool = False, **extra):
    started = time.monotonic()
    result = run_playbook(
        PLAYBOOKS / name,
        inventory=INVENTORY,
        extra_vars={**EXTRA_VARS, **extra},
        limit=limit,
        check=check,
        workdir=WORK,
    )
    result.seconds = time.monotonic() - started
    return result


def ok(result) -> None:
    assert result.rc == 0, f"rc={result.rc}\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"


def kubectl_json(cp: str, args: str) -> dict:
    return json.loads(sh(cp, f"{KUBECTL} {args} -o json"))


def node_names(cp: str) -> list[str]:
    return [n["metadata"]["name"] for n in kubectl_json(cp, "get nodes")["items"]]


def node_ready(cp: str, name: str) -> bool:
    for node in kubectl_json(cp, "get nodes")["items"]:
        if node["metadata"]["name"] == name:
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    return False


def apply(cp: str, manifest: dict | list) -> None:
    docs = manifest if isinstance(manifest, list) else [manifest]
    text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    sh(cp, f"cat <<'EOF' | {KUBECTL} apply -f -\n{text}\nEOF")


def assert_host_clean(node: str) -> None:
    leftovers = sh(
        node,
        "for p in /etc/kubernetes /var/lib/kubelet /var/lib/etcd /etc/systemd/system/kubelet.service "
        "/etc/systemd/system/anvil-etcd-backup.timer /usr/local/sbin/anvil-etcd-snapshot "
        "/etc/systemd/system/anvil-cert-renew.timer; "
        'do [ -e "$p" ] && echo "path $p"; done; '
        # containerd creates an empty CNI configuration directory when it starts: only files in it count.
        "find /etc/cni/net.d -mindepth 1 2>/dev/null | sed 's/^/path /'; "
        "iptables-save | grep -E '^:(KUBE-|CNI-|FLANNEL|cali-)' || true; "
        "ip -o link show | grep -E ' (cni0|flannel\\.1|vxlan\\.calico|cali[0-9a-f]{11})[:@]' "
        "| sed 's/^/link /' || true; "
        "ip route show proto 80 | sed 's/^/route /'; "
        "nft list tables | grep -E ' (calico|flannel|kube-proxy)' || true; "
        "[ -e /var/lib/calico ] && echo 'path /var/lib/calico'; "
        "systemctl is-active kubelet || true",
    )
    lines = [line for line in leftovers.splitlines() if line.strip() and line.strip() not in ("inactive", "unknown")]
    assert lines == [], f"{node} still holds cluster state: {lines}"


@pytest.fixture(scope="module")
def cluster(mirror):
    if os.geteuid() != 0:
        pytest.fail("e2e tests need root: the testbed creates network devices and machines")
    INVENTORY.mkdir(parents=True, exist_ok=True)
    (INVENTORY / "backup.yml").unlink(missing_ok=True)
    status = json.loads(tb("status", "--json").stdout or "{}")
    running = {m["name"] for m in status.get("machines", []) if m["state"] == "running"}
    if os.environ.get("LIFECYCLE_REUSE") == "1" and running == {"lc-cp1", "lc-w1"}:
        for name in running:
            route_to_mirror(name)
    else:
        tb("down", check=False)
        add_machine("lc-cp1", "control_plane")
        add_machine("lc-w1", "workers")
    started = time.monotonic()
    result = play("site.yml")
    ok(result)
    TIMINGS["site.yml 1 cp + 1 worker"] = time.monotonic() - started
    yield "lc-cp1"
    timings = json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})
    print("\nnode lifecycle timings (s): " + timings)
    (WORK / "timings.json").write_text(timings + "\n")
    if os.environ.get("LIFECYCLE_KEEP") != "1":
        tb("down", check=False)


# ---- tests, in order --------------------------------------------------------------------------------------


def test_add_worker_to_running_cluster(cluster):
    cp = cluster
    add_machine("lc-w2", "workers")
    result = play("add_node.yml", limit="lc-w2")
    ok(result)
    TIMINGS["add_node worker"] = result.seconds
    assert node_ready(cp, "lc-w2")
    apply(
        cp,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "on-new-node", "namespace": "default"},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": "lc-w2"},
                "containers": [{"name": "pause", "image": PAUSE_IMAGE}],
            },
        },
    )
    poll(
        lambda: kubectl_json(cp, "get pod on-new-node")["status"].get("phase") == "Running",
        180,
        "a pod Running on the added node",
    )
    sh(cp, f"{KUBECTL} delete pod on-new-node --wait=false")
    print(f"\nadd_node.yml (1 worker): {result.seconds:.1f} s")


def test_add_node_rerun_is_noop(cluster):
    result = play("add_node.yml", limit="lc-w2")
    ok(result)
    assert result.changed() == 0, result.stats


def test_drain_with_pdb_keeps_min_available(cluster):
    cp = cluster
    labels = {"app": "lifecycle-drain"}
    apply(
        cp,
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "lifecycle-drain", "namespace": "default"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "terminationGracePeriodSeconds": 1,
                            "topologySpreadConstraints": [
                                {
                                    "maxSkew": 1,
                                    "topologyKey": "kubernetes.io/hostname",
                                    "whenUnsatisfiable": "ScheduleAnyway",
                                    "labelSelector": {"matchLabels": labels},
                                }
                            ],
                            "containers": [{"name": "pause", "image": PAUSE_IMAGE}],
                        },
                    },
                },
            },
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "lifecycle-drain", "namespace": "default"},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": labels}},
            },
        ],
    )

    def ready_pods():
        pods = kubectl_json(cp, "get pods -l app=lifecycle-drain")["items"]
        return [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]

    poll(lambda: len(ready_pods()) == 3, 240, "3 ready replicas")
    per_node: dict[str, int] = {}
    for pod in ready_pods():
        per_node[pod["spec"]["nodeName"]] = per_node.get(pod["spec"]["nodeName"], 0) + 1
    victim = max(("lc-w1", "lc-w2"), key=lambda n: per_node.get(n, 0))
    other = "lc-w2" if victim == "lc-w1" else "lc-w1"
    assert per_node.get(victim, 0) >= 1, per_node

    # Watch the ready count from the API during the whole drain.
    seen: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.append(len(ready_pods()))
            except AssertionError:
                pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = play(
            "maintenance.yml",
            limit=victim,
            action="drain",
            anvil_maintenance_delegate="localhost",
            anvil_maintenance_kubeconfig=str(WORK / "admin.conf"),
            anvil_maintenance_timeout=300,
        )
    finally:
        stop.set()
        watcher.join(60)
    ok(result)
    poll(lambda: len(ready_pods()) == 3, 240, "3 ready replicas after the drain")
    nodes = {p["spec"]["nodeName"] for p in ready_pods()}
    assert nodes == {other}, nodes
    assert len(seen) >= 3, "the watcher did not observe the drain"
    assert min(seen) >= 2, f"ready replicas fell below minAvailable=2 during the drain: {seen}"
    print(f"\ndrain of {victim}: {result.seconds:.1f} s, ready replicas seen: min {min(seen)} over {len(seen)} samples")
    ok(
        play(
            "maintenance.yml",
            limit=victim,
            action="uncordon",
            anvil_maintenance_delegate="localhost",
            anvil_maintenance_kubeconfig=str(WORK / "admin.conf"),
        )
    )


def test_remove_worker_leaves_clean_host(cluster):
    cp = cluster
    # An operator's own firewall rule and chain must survive the reset.
    sh(
        "lc-w2",
        "iptables -N OPERATOR-KEEP; iptables -A OPERATOR-KEEP -j RETURN; "
        "iptables -I INPUT -p tcp --dport 2222 -j ACCEPT",
    )
    result = play("remove_node.yml", limit="lc-w2")
    ok(result)
    TIMINGS["remove_node worker"] = result.seconds
    assert "lc-w2" not in node_names(cp)
    # No pod object stays bound to the removed node (a host added again would adopt it).
    assert kubectl_json(cp, "get pods --all-namespaces --field-selector spec.nodeName=lc-w2")["items"] == []
    assert_host_clean("lc-w2")
    rules = sh("lc-w2", "iptables-save")
    assert ":OPERATOR-KEEP" in rules and "--dport 2222 -j ACCEPT" in rules, rules
    # Re-running changes nothing.
    again = play("remove_node.yml", limit="lc-w2")
    ok(again)
    assert again.changed() == 0, again.stats
    # reset.yml: refuses without the confirmation, --check lists nothing on the clean host.
    refused = play("reset.yml", limit="lc-w2")
    assert refused.rc != 0
    assert "anvil_reset_confirm=yes" in refused.stdout
    checked = play("reset.yml", limit="lc-w2", check=True)
    ok(checked)
    assert checked.changed() == 0
    plan = checked.result("anvil.cluster.reset : What the reset removes from lc-w2", "lc-w2")
    assert plan["msg"] == ["nothing: the host holds no cluster state"], plan


def test_add_worker_while_another_worker_is_down(cluster):
    cp = cluster
    tb("stop", "lc-w1")
    result = play("add_node.yml", limit="lc-w2")
    ok(result)
    TIMINGS["add_node worker, other worker down"] = result.seconds
    assert node_ready(cp, "lc-w2")
    print(f"\nadd_node.yml with lc-w1 down: {result.seconds:.1f} s")


def test_remove_dead_worker_without_reaching_it(cluster):
    cp = cluster
    refused = play("remove_node.yml", limit="lc-w1")
    assert refused.rc != 0 and "anvil_node_unreachable=true" in refused.stdout
    assert "lc-w1" in node_names(cp)
    result = play("remove_node.yml", limit="lc-w1", anvil_node_unreachable=True)
    ok(result)
    assert "lc-w1" not in node_names(cp)
    # The Deployment's pods that were on the dead node were deleted and run elsewhere.
    poll(
        lambda: (
            len(
                [
                    p
                    for p in kubectl_json(cp, "get pods -l app=lifecycle-drain")["items"]
                    if p["status"].get("phase") == "Running" and p["spec"].get("nodeName") == "lc-w2"
                ]
            )
            == 3
        ),
        240,
        "3 replicas Running on lc-w2",
    )
    tb("remove", "lc-w1")


STORE = "/var/lib/anvil-backup/e2e-lifecycle"


def inventory_workers() -> list[str]:
    inv = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    return sorted(inv["all"]["children"]["k8s_cluster"]["children"]["workers"]["hosts"] or [])


# The control-plane scenarios (3 control planes, quorum, losing the first one) run in `make e2e-ha`.
@pytest.mark.ha
def test_add_control_planes(cluster):
    """Two control planes added with --limit; a worker is a backup host (set up by backup.yml before): the
    run, which does not reach it, gives it the new control planes' keys and directories."""
    cp, store = cluster, inventory_workers()[0]
    (INVENTORY / "backup.yml").write_text(yaml.safe_dump({"all": {"children": {"backup": {"hosts": {store: None}}}}}))
    try:
        ok(play("backup.yml"))
        add_machine("lc-cp2", "control_plane")
        add_machine("lc-cp3", "control_plane")
        result = play("add_node.yml", limit="lc-cp2,lc-cp3")
        ok(result)
        TIMINGS["add_node 2 control planes"] = result.seconds
        for name in ("lc-cp2", "lc-cp3"):
            assert node_ready(cp, name)
        keys = sh(store, "cat /var/lib/anvil-backup/.ssh/authorized_keys")
        for name in ("lc-cp1", "lc-cp2", "lc-cp3"):
            assert f'rrsync -wo -no-del {STORE}/{name}"' in keys and f"etcd-backup@{name}" in keys, keys
        # The new control plane's timer service copies its snapshot there.
        sh("lc-cp2", "systemctl start anvil-etcd-backup.service", timeout=300)
        copies = sh(store, f"ls -1 {STORE}/lc-cp2").split()
        assert copies and all(c.startswith("e2e-lifecycle-") and c.endswith("-lc-cp2") for c in copies), copies
    finally:
        (INVENTORY / "backup.yml").unlink(missing_ok=True)
    members = json.loads(
        sh(
            "lc-cp2",
            "python3 - <<'EOF'\n"
            "import json, ssl, urllib.request\n"
            "ctx = ssl.create_default_context(cafile='/etc/kubernetes/pki/etcd/ca.crt')\n"
            "ctx.load_cert_chain('/etc/kubernetes/pki/etcd/healthcheck-client.crt', "
            "'/etc/kubernetes/pki/etcd/healthcheck-client.key')\n"
            "req = urllib.request.Request('https://127.0.0.1:2379/v3/cluster/member/list', data=b'{}', method='POST')\n"
            "print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())\n"
            "EOF",
        )
    )["members"]
    assert sorted(m["name"] for m in members) == ["lc-cp1", "lc-cp2", "lc-cp3"]
    again = play("add_node.yml", limit="lc-cp2,lc-cp3")
    ok(again)
    assert again.changed() == 0, again.stats


ETCD_HEALTH = (
    "python3 - <<'EOF'\n"
    "import json, ssl, urllib.request\n"
    "ctx = ssl.create_default_context(cafile='/etc/kubernetes/pki/etcd/ca.crt')\n"
    "pki = '/etc/kubernetes/pki/etcd/'\n"
    "ctx.load_cert_chain(pki + 'healthcheck-client.crt', pki + 'healthcheck-client.key')\n"
    "req = urllib.request.Request('https://127.0.0.1:2379/v3/cluster/member/list', data=b'{}', method='POST')\n"
    "out = []\n"
    "for m in json.loads(urllib.request.urlopen(req, context=ctx, timeout=10).read())['members']:\n"
    "    try:\n"
    "        body = json.loads(urllib.request.urlopen(m['clientURLs'][0] + '/health', context=ctx, timeout=5).read())\n"
    "        out.append([m['name'], body.get('health') == 'true'])\n"
    "    except Exception as exc:\n"
    "        out.append([m['name'], False])\n"
    "print(json.dumps(out))\n"
    "EOF"
)


def etcd_health(node: str) -> list:
    return sorted(json.loads(sh(node, ETCD_HEALTH)))


@pytest.mark.ha
def test_refuses_removal_that_breaks_etcd_quorum(cluster):
    # lc-cp3 down: removing lc-cp1 would leave lc-cp2 + a dead lc-cp3, 1 healthy of 2 < quorum 2.
    tb("stop", "lc-cp3")
    try:
        refused = play("remove_node.yml", limit="lc-cp1")
        assert refused.rc != 0
        # The refusal is for the right reason: the members' health was read (lc-cp1, lc-cp2 healthy).
        assert "afterwards etcd would have 1 healthy of 2 members" in refused.stdout, refused.stdout[-4000:]
        # Nothing changed: lc-cp1 is not cordoned and still an etcd member.
        assert not kubectl_json("lc-cp2", "get node lc-cp1")["spec"].get("unschedulable")
        assert "lc-cp1" in [name for name, _ in etcd_health("lc-cp2")]
    finally:
        start_machine("lc-cp3")
    poll(lambda: all(ok for _, ok in etcd_health("lc-cp2")), 240, "3 healthy etcd members again")


@pytest.mark.ha
def test_remove_first_control_plane(cluster):
    result = play("remove_node.yml", limit="lc-cp1")
    ok(result)
    TIMINGS["remove_node first control plane"] = result.seconds
    survivor, worker = "lc-cp2", inventory_workers()[0]
    health = etcd_health(survivor)
    assert health == [["lc-cp2", True], ["lc-cp3", True]], health
    assert sorted(node_names(survivor)) == ["lc-cp2", "lc-cp3", worker]
    assert_host_clean("lc-cp1")
    # The worker's local load balancer no longer lists lc-cp1, and the API still serves through it.
    assert "server lc-cp1 " not in sh(worker, "cat /etc/haproxy/haproxy.cfg")
    apply(
        survivor,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "after-removal", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "after-removal"}},
                "template": {
                    "metadata": {"labels": {"app": "after-removal"}},
                    "spec": {"containers": [{"name": "pause", "image": PAUSE_IMAGE}]},
                },
            },
        },
    )
    poll(
        lambda: any(
            p["status"].get("phase") == "Running"
            for p in kubectl_json(survivor, "get pods -l app=after-removal")["items"]
        ),
        180,
        "a new Deployment's pod Running after the removal",
    )
    again = play("remove_node.yml", limit="lc-cp1")
    ok(again)
    changed = [(t["task"]["name"], h) for t in again.tasks for h, r in t["hosts"].items() if r.get("changed")]
    assert again.changed() == 0, changed
