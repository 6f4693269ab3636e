"""site.yml on testbed machines: preflight refusals, check mode, a real cluster, idempotent re-run.

Order matters and follows the file: preflight refusals and check mode need hosts on which the
cluster does not exist yet; then one deployment (module fixture) that the remaining tests inspect.
Test pods use the flannel image from the mirror (it carries busybox: sh, nslookup, nc, httpd).
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.wait import wait_until as poll

SITE = REPO_ROOT / "playbooks" / "site.yml"
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]
WORK = REPO_ROOT / "build" / "e2e-cluster-core"
KUBECONFIG = WORK / "admin.conf"
# Paths a preflight run must never touch on a host.
WATCHED = "/etc /usr/local/bin /opt /var/lib/kubelet /var/lib/containerd /var/lib/etcd"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def _groups(inventory: Path) -> dict[str, list[str]]:
    data = yaml.safe_load(Path(inventory).read_text())
    children = data["all"]["children"]["k8s_cluster"]["children"]
    return {g: list((children.get(g) or {}).get("hosts") or {}) for g in ("control_plane", "workers")}


def sh(testbed, node: str, cmd: str, check: bool = True) -> str:
    proc = testbed.exec(node, cmd)
    rc = getattr(proc, "returncode", 0)
    out = getattr(proc, "stdout", proc)
    out = out.decode() if isinstance(out, bytes) else str(out)
    if check and rc != 0:
        err = getattr(proc, "stderr", "")
        raise AssertionError(f"{node}: {cmd!r} failed rc={rc}: {out} {err}")
    return out


def base_vars() -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    return {"anvil_kubeconfig_dest": str(KUBECONFIG), "anvil_cluster_name": "e2e"}


@pytest.fixture(scope="module")
def groups(testbed, mirror):
    g = _groups(testbed.inventory)
    assert len(g["control_plane"]) >= 1 and len(g["workers"]) >= 2, f"needs 1 control plane + 2 workers: {g}"
    return g


def _deployed(testbed, groups) -> bool:
    out = sh(testbed, groups["control_plane"][0], "test -e /etc/kubernetes/admin.conf && echo yes || echo no")
    return out.strip() == "yes"


# ---- preflight: bad inventories and host states are refused, nothing changes -------------------

ALL_CHECKS = [
    "reachable",
    "inventory_groups",
    "control_plane_quorum",
    "cluster_name",
    "control_plane_endpoint",
    "cni",
    "cni_ports_free",
    "network_cidrs",
    "version_skew",
    "os_supported",
    "resources",
    "swap",
    "kernel_features",
    "unique_identity",
    "node_ip",
    "time_sync",
    "ports_free",
    "mirror_reachable",
    "dns_resolver",
    "registry_access",
]

BAD_VARS = {
    "cni not implemented": ({"anvil_cni": "kube_ovn"}, "[cni] inventory: anvil_cni 'kube_ovn' is not implemented yet"),
    "cni unknown": ({"anvil_cni": "weave"}, "is not a known CNI"),
    "pod cidr overlaps hosts": ({"anvil_pod_cidr": "198.18.0.0/16"}, "anvil_pod_cidr 198.18.0.0/16 overlaps"),
    "pod/service overlap": ({"anvil_service_cidr": "10.244.0.0/16"}, "overlaps anvil_service_cidr"),
    "reserved network": ({"preflight_reserved_cidrs": ["10.96.0.0/16"]}, "overlaps a reserved network"),
    "bad cluster name": ({"anvil_cluster_name": "Bad_Name"}, "is not a DNS-1123 label"),
    "bad endpoint": ({"anvil_control_plane_endpoint": "no-port"}, "must be host:port"),
    "skip everything": ({"preflight_skip_checks": ALL_CHECKS}, "skipping all preflight checks is not allowed"),
    "unknown skip name": (
        {"preflight_skip_checks": ["swapp"]},
        "unknown check name(s) in preflight_skip_checks: swapp",
    ),
    "mirror unreachable": (
        {"anvil_mirror_url": "http://198.18.0.1:9"},
        "artifact mirror http://198.18.0.1:9/ is not reachable",
    ),
    "registry unreachable": ({"anvil_registry_mirror": "198.18.0.1:9"}, "registry mirror http://198.18.0.1:9/v2/"),
    "too little memory": (
        {
            "preflight_min_resources": {
                "control_plane": {"cpus": 1, "memory_mb": 10_000_000},
                "worker": {"cpus": 1, "memory_mb": 1},
            }
        },
        "a control plane needs at least 10000000 MiB",
    ),
    "unsupported os": ({"preflight_supported_os": {"rhel": ["9"]}}, "is not supported (supported: rhel)"),
    "duplicate node ip": ({"anvil_node_ip": "198.18.0.11"}, "share the same node IP 198.18.0.11"),
    "missing kernel feature": ({"preflight_kernel_features": ["overlay", "ip_vs"]}, "kernel features missing"),
}


def _inventory_variant(testbed, groups, name: str, mutate) -> Path:
    data = yaml.safe_load(Path(testbed.inventory).read_text())
    mutate(data["all"]["children"]["k8s_cluster"]["children"], groups)
    path = WORK / f"inventory-{name}.yml"
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _even_cps(children, groups):
    worker = groups["workers"][0]
    children["control_plane"]["hosts"][worker] = children["workers"]["hosts"].pop(worker)


def _both_groups(children, groups):
    cp = groups["control_plane"][0]
    children["workers"]["hosts"][cp] = dict(children["control_plane"]["hosts"][cp])


def _etcd_group(children, groups):
    children["etcd"] = {"hosts": {groups["control_plane"][0]: None}}


BAD_INVENTORIES = {
    "even control planes": (_even_cps, "etcd needs an odd number"),
    "host in both groups": (_both_groups, "host is in both control_plane and workers"),
    "external etcd group": (_etcd_group, "external etcd is not implemented yet"),
}


@pytest.fixture(scope="module")
def change_stamp(testbed, groups):
    """A timestamp file on every host; files newer than it were changed after the fixture started."""
    for node in testbed.hosts:
        sh(testbed, node, "touch /run/anvil-e2e-stamp")
    return "/run/anvil-e2e-stamp"


def _changed_files(testbed, stamp: str) -> dict[str, list[str]]:
    changed = {}
    for node in testbed.hosts:
        out = sh(
            testbed, node, f"find {WATCHED} -xdev -newer {stamp} 2>/dev/null | grep -v '^/etc/ld.so.cache$' || true"
        )
        files = [line for line in out.splitlines() if line.strip()]
        if files:
            changed[node] = files
    return changed


def _assert_refused(result, text: str):
    assert result.rc != 0, result.stdout[-2000:]
    assert result.changed() == 0, result.stats
    failure = json.dumps(result.data)
    assert text in failure, f"{text!r} not in the preflight failure: {failure[-3000:]}"
    names = [t["task"]["name"] for t in result.tasks]
    assert any(n.endswith("Stop before any change when a host or the inventory is unfit") for n in names), names
    assert not any(w in n for n in names for w in ("Install containerd", "Container runtime", "kubeadm init")), names


@pytest.mark.parametrize("case", list(BAD_VARS), ids=list(BAD_VARS))
def test_preflight_refuses_bad_inventory(testbed, groups, change_stamp, case):
    extra, text = BAD_VARS[case]
    result = run_playbook(SITE, inventory=testbed.inventory, extra_vars={**base_vars(), **extra})
    _assert_refused(result, text)


@pytest.mark.parametrize("case", list(BAD_INVENTORIES), ids=list(BAD_INVENTORIES))
def test_preflight_refuses_bad_groups(testbed, groups, change_stamp, case):
    mutate, text = BAD_INVENTORIES[case]
    inventory = _inventory_variant(testbed, groups, case.replace(" ", "-"), mutate)
    result = run_playbook(SITE, inventory=inventory, extra_vars=base_vars())
    _assert_refused(result, text)


def test_preflight_refuses_a_busy_port_on_a_host(testbed, groups, change_stamp):
    worker = groups["workers"][-1]
    sh(testbed, worker, "systemd-run --unit anvil-e2e-squatter python3 -m http.server 10256 --bind 0.0.0.0")
    try:
        poll(lambda: "LISTEN" in sh(testbed, worker, "ss -ltn 'sport = :10256' || true"), 20, "squatter", interval=0.5)
        result = run_playbook(SITE, inventory=testbed.inventory, extra_vars=base_vars())
        _assert_refused(result, f"[ports_free] {worker}: port 10256 is already in use by python3")
    finally:
        sh(testbed, worker, "systemctl stop anvil-e2e-squatter", check=False)


def test_preflight_changed_nothing_on_any_host(testbed, groups, change_stamp):
    if _deployed(testbed, groups):
        pytest.fail("the testbed already runs a cluster: preflight refusal tests need fresh hosts")
    assert _changed_files(testbed, change_stamp) == {}


# ---- check mode on fresh hosts ----------------------------------------------------------------


def test_check_mode_on_fresh_hosts_completes_and_changes_nothing(testbed, groups, change_stamp):
    assert not _deployed(testbed, groups), "check mode test needs fresh hosts"
    result = run_playbook(SITE, inventory=testbed.inventory, extra_vars=base_vars(), check=True)
    assert result.rc == 0 and result.failed() == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert _changed_files(testbed, change_stamp) == {}


# ---- the cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(testbed, groups):
    started = time.monotonic()
    first = run_playbook(SITE, inventory=testbed.inventory, extra_vars=base_vars())
    first_time = time.monotonic() - started
    assert first.rc == 0, first.stdout[-5000:] + first.stderr[-3000:]
    print(f"\nsite.yml first run: {first_time:.1f} s, changed={first.changed()}")
    return {"first": first, "first_time": first_time}


def test_all_nodes_ready(testbed, groups, cluster):
    cp = groups["control_plane"][0]
    nodes = json.loads(sh(testbed, cp, f"{KUBECTL} get nodes -o json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(testbed.hosts)
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", (node["metadata"]["name"], ready)


def test_kubeconfig_on_controller_is_private_and_works(cluster):
    mode = stat.S_IMODE(os.stat(KUBECONFIG).st_mode)
    assert mode == 0o600, oct(mode)
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(KUBECONFIG)))
    assert len(api.list_node().items) >= 3


def test_summary_names_nodes_endpoint_kubeconfig_and_phases(cluster):
    summary = cluster["first"].result("Summary", next(iter(cluster["first"].stats)))
    text = "\n".join(summary["msg"]) if isinstance(summary.get("msg"), list) else str(summary)
    for needle in ("endpoint:", "kubeconfig: " + str(KUBECONFIG), "nodes:", "preflight", "control_plane", "total"):
        assert needle in text, text


def test_secrets_are_encrypted_at_rest_and_audit_log_written(testbed, groups, cluster):
    cp = groups["control_plane"][0]
    mirror = yaml.safe_load(Path(testbed.inventory).read_text())["all"]["vars"]["anvil_mirror_url"]
    etcd = VERSIONS["etcd"]["version"]
    sh(
        testbed,
        cp,
        f"{KUBECTL} -n default create secret generic anvil-e2e --from-literal=k=plaintext-canary "
        f"--dry-run=client -o yaml | {KUBECTL} apply -f -",
    )
    sh(
        testbed,
        cp,
        f"curl -fsS -o /run/anvil-etcdctl {mirror}/files/etcd/{etcd}/linux-amd64/etcdctl"
        " && chmod 0755 /run/anvil-etcdctl",
    )
    stored = sh(
        testbed,
        cp,
        "/run/anvil-etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt "
        "--cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key "
        "get /registry/secrets/default/anvil-e2e --print-value-only | head -c 200 | tr -c '[:print:]' '.'",
    )
    # The stored value starts with the encryption provider's prefix, never the plaintext.
    assert stored.startswith("k8s:enc:secretbox:v1:key1:"), stored
    assert "plaintext-canary" not in stored
    audit = sh(testbed, cp, "grep -c anvil-e2e /var/log/kubernetes/audit/audit.log || true")
    assert int(audit.strip() or 0) >= 1


# ---- network: DNS, pod to pod across workers, ClusterIP ---------------------------------------

PROBE_IMAGE = "{repo}/{name}:{tag}"


def _probe_image(testbed) -> str:
    inv = yaml.safe_load(Path(testbed.inventory).read_text())["all"]["vars"]
    image = VERSIONS["flannel"]["image"]
    return PROBE_IMAGE.format(repo=inv["anvil_image_repository"], name=image["name"], tag=image["tag"])


def _manifest(image: str, workers: list[str]) -> str:
    docs = []
    for i, node in enumerate(workers[:2]):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"web{i}", "namespace": "default", "labels": {"app": "anvil-e2e-web"}},
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "command": [
                                "sh",
                                "-c",
                                "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www",
                            ],
                            "ports": [{"containerPort": 8080}],
                        }
                    ],
                },
            }
        )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "anvil-e2e-web", "namespace": "default"},
            "spec": {"selector": {"app": "anvil-e2e-web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": "default"},
            "spec": {
                "nodeName": workers[0],
                "containers": [{"name": "client", "image": image, "command": ["sh", "-c", "exec sleep 3600"]}],
            },
        }
    )
    return "\n---\n".join(json.dumps(d) for d in docs)


@pytest.fixture(scope="module")
def probes(testbed, groups, cluster):
    cp = groups["control_plane"][0]
    manifest = _manifest(_probe_image(testbed), groups["workers"])
    sh(testbed, cp, f"echo {shlex.quote(manifest)} | {KUBECTL} apply -f -")
    sh(testbed, cp, f"{KUBECTL} -n default wait --for=condition=Ready pod/web0 pod/web1 pod/client --timeout=180s")
    pods = json.loads(sh(testbed, cp, f"{KUBECTL} -n default get pods -o json"))["items"]
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    nodes = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
    return {"cp": cp, "ips": ips, "nodes": nodes}


def _in_client(testbed, probes, cmd: str) -> str:
    return sh(testbed, probes["cp"], f"{KUBECTL} -n default exec client -- sh -c {shlex.quote(cmd)}")


def _http_get(host: str, port: int) -> str:
    """A shell command that prints the body of GET / (busybox nc: the image's static wget crashes on lookups)."""
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port} | tail -n 1"


def test_coredns_resolves_kubernetes_default_from_a_pod(testbed, probes):
    out = poll(
        lambda: _in_client(testbed, probes, "nslookup kubernetes.default.svc.cluster.local"),
        60,
        what="DNS answer",
    )
    assert "10.96.0.1" in out, out


def test_pod_reaches_pod_on_the_other_worker(testbed, probes):
    assert probes["nodes"]["client"] != probes["nodes"]["web1"]
    out = poll(
        lambda: _in_client(testbed, probes, _http_get(probes["ips"]["web1"], 8080)),
        60,
        what="pod to pod",
    )
    assert out.strip() == "web1", out


def test_pod_reaches_a_clusterip_service(testbed, probes):
    out = poll(
        lambda: _in_client(testbed, probes, _http_get("anvil-e2e-web.default.svc.cluster.local", 80)),
        60,
        what="service",
    )
    assert out.strip() in {"web0", "web1"}, out


# ---- idempotence --------------------------------------------------------------------------------


def test_rerun_changes_nothing(testbed, cluster):
    # (How fast the re-run is relative to the first run is measured by tests/bench/bench_site.py.)
    started = time.monotonic()
    second = run_playbook(SITE, inventory=testbed.inventory, extra_vars=base_vars())
    second_time = time.monotonic() - started
    assert second.rc == 0, second.stdout[-3000:]
    changed = {t["task"]["name"]: [h for h, r in t["hosts"].items() if r.get("changed")] for t in second.tasks}
    assert second.changed() == 0, {k: v for k, v in changed.items() if v}
    print(f"\nsite.yml re-run: {second_time:.1f} s vs first {cluster['first_time']:.1f} s")


def test_preflight_refuses_another_cni_on_the_running_cluster(testbed, cluster):
    # The cluster runs the default CNI (Calico); its nodes' /etc/cni/net.d says so.
    result = run_playbook(SITE, inventory=testbed.inventory, extra_vars={**base_vars(), "anvil_cni": "flannel"})
    _assert_refused(result, "changing the CNI of a running cluster is not supported")


def _item_label(item) -> str:
    """The path or service a loop item of the host-state pass stands for."""
    if isinstance(item, dict):
        return item.get("want", {}).get("path") or item.get("name") or str(item)
    return str(item)


def test_rerun_repairs_drift_and_only_that(testbed, groups, cluster):
    """A re-run restores a changed binary mode, a corrupted CNI plugin, an edited config file, a live
    kernel parameter, a line taken out of the /etc/hosts block and a disabled service on one worker (the
    one-pass checks that let the roles skip their tasks must notice each), changes nothing else, and
    settles."""
    node = groups["workers"][0]
    cp = groups["control_plane"][0]
    sh(testbed, node, "chmod 0700 /usr/local/bin/kubectl")
    sh(testbed, node, "printf 'not a plugin' > /opt/cni/bin/loopback")
    sh(testbed, node, "echo 'timeout: 99' >> /etc/crictl.yaml")
    sh(testbed, node, "sysctl -qw net.ipv4.ip_forward=0")
    sh(testbed, node, f"sed -i '/^# BEGIN anvil.cluster hosts/,/^# END/{{/ {cp}$/d}}' /etc/hosts")
    assert f" {cp}\n" not in sh(testbed, node, "cat /etc/hosts")
    sh(testbed, node, "systemctl disable -q haproxy")
    repair = run_playbook(SITE, inventory=testbed.inventory, extra_vars=base_vars())
    assert repair.rc == 0, repair.stdout[-3000:]
    # The host-state pass changes items by type (one task per type), so each change is named by its task
    # and the item it changed: the path, the service, or "" for a task without a loop.
    changed = sorted(
        (t["task"]["name"].split(" : ")[-1], h, label)
        for t in repair.tasks
        for h, r in t["hosts"].items()
        if r.get("changed")
        for label in ([_item_label(i["item"]) for i in r["results"] if i.get("changed")] if "results" in r else [""])
    )
    assert changed == [
        ("Add the cluster's hosts to /etc/hosts", node, ""),
        ("Apply the kernel parameters that differ", node, ""),
        ("Download the files that differ", node, "/opt/cni/bin/loopback"),
        ("Download the files that differ", node, "/usr/local/bin/kubectl"),
        ("Start and enable the services that differ", node, "haproxy"),
        ("Write the files that differ", node, "/etc/crictl.yaml"),
    ], changed
    assert sh(testbed, node, "stat -c %a /usr/local/bin/kubectl").strip() == "755"
    sums = sh(testbed, node, "sha256sum /opt/cni/bin/loopback").split()[0]
    assert sums == VERSIONS["cni-plugins"]["sha256"]["loopback"]
    assert "timeout: 99" not in sh(testbed, node, "cat /etc/crictl.yaml")
    assert sh(testbed, node, "sysctl -n net.ipv4.ip_forward").strip() == "1"
    assert f" {cp}\n" in sh(testbed, node, "cat /etc/hosts")
    assert sh(testbed, node, "systemctl is-enabled haproxy").strip() == "enabled"
    settled = run_playbook(SITE, inventory=testbed.inventory, extra_vars=base_vars())
    assert settled.rc == 0 and settled.changed() == 0, settled.stdout[-3000:]
