"""Preflight judgement: a good cluster passes; each bad inventory or host state is named precisely."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible_collections.anvil.cluster.plugins.module_utils.kubernetes_releases import kubernetes_versions
from ansible_collections.anvil.cluster.plugins.module_utils.preflight_checks import CHECKS, evaluate, format_problems

VERSIONS = yaml.safe_load((Path(__file__).resolve().parents[2] / "vars" / "versions.yml").read_text())["anvil_versions"]

NOW = 1_800_000_000.0


def host_facts(name, ip, machine_id):
    return {
        "hostname": name,
        "machine_id": machine_id,
        "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)", "id_like": []},
        "cpus": 2,
        "memory_mb": 4096,
        "swap_mb": 0,
        "swap_total_mb": 0,
        "cgroup_version": 2,
        "kernel_features": {
            "overlay": "builtin",
            "br_netfilter": "module",
            "bridge": "active",
            "veth": "builtin",
            "nf_conntrack": "active",
            "netfilter_nat": "builtin",
            "iptables": "builtin",
            "vxlan": "module",
        },
        "listening_ports": {"22": ["sshd"]},
        "udp_ports": {"68": ["dhclient"]},
        "cni_configs": [],
        "ipv4": [
            {"interface": "lo", "address": "127.0.0.1", "prefix": 8},
            {"interface": "eth0", "address": ip, "prefix": 24},
        ],
        "nameservers": ["198.18.0.1"],
        "time_epoch": NOW + 1,
        "mirror": {"url": "http://198.18.0.1:8080/", "ok": True, "error": None},
        "registry": {"url": "http://198.18.0.1:5000/v2/", "ok": True, "error": None},
        "kubelet_version": None,
        "joined": False,
    }


def good():
    names = {"cp1": "198.18.0.11", "w1": "198.18.0.21", "w2": "198.18.0.22"}
    hosts = {
        name: {"facts": host_facts(name, ip, "%032x" % i), "unreachable": False, "node_ip": ip}
        for i, (name, ip) in enumerate(names.items(), start=1)
    }
    cluster = {
        "cluster_name": "prod-a",
        "pod_cidr": "10.244.0.0/16",
        "service_cidr": "10.96.0.0/12",
        "cni": "flannel",
        "control_plane_endpoint": "127.0.0.1:8443",
        "kubernetes_version": "v1.35.4",
        "kubernetes_releases": ["v1.35.4", "v1.34.12"],
        "reserved_cidrs": ["198.18.0.0/15"],
        "groups": {"control_plane": ["cp1"], "workers": ["w1", "w2"]},
        "controller_time_before": NOW,
        "controller_time_after": NOW + 3,
    }
    return hosts, cluster


def problems_of(hosts, cluster, skip=None):
    return evaluate(hosts, cluster, skip)["problems"]


def test_good_cluster_has_no_problem():
    hosts, cluster = good()
    report = evaluate(hosts, cluster)
    assert report["problems"] == []
    assert report["checks"] == list(CHECKS)


def test_ha_cluster_of_three_control_planes_passes():
    hosts, cluster = good()
    cluster["groups"] = {"control_plane": ["cp1", "w1", "w2"], "workers": []}
    assert problems_of(hosts, cluster) == []


def mutate_hosts(fn):
    def apply(hosts, cluster):
        fn(hosts)

    return apply


def mutate_cluster(fn):
    def apply(hosts, cluster):
        fn(cluster)

    return apply


def _set(path, value):
    """Set hosts[path[0]]['facts'][...path[1:]] = value."""

    def fn(hosts):
        target = hosts[path[0]]["facts"]
        for key in path[1:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate_hosts(fn)


def _cluster(key, value):
    return mutate_cluster(lambda c: c.__setitem__(key, value))


def _unreachable(hosts):
    hosts["w2"] = {"facts": None, "unreachable": True, "error": "ssh: connect timed out", "node_ip": "198.18.0.22"}


def _same_machine_id(hosts):
    hosts["w2"]["facts"]["machine_id"] = hosts["w1"]["facts"]["machine_id"]


def _same_hostname(hosts):
    hosts["w2"]["facts"]["hostname"] = "W1"


def _same_node_ip(hosts):
    hosts["w2"]["node_ip"] = "198.18.0.21"
    hosts["w2"]["facts"]["ipv4"][1]["address"] = "198.18.0.21"


def _running_flannel_asked_calico(hosts, cluster):
    cluster["cni"] = "calico"
    for facts in (h["facts"] for h in hosts.values()):
        facts["kernel_features"].update(ip_set="builtin", xt_set="builtin")
    hosts["w1"]["facts"].update(joined=True, cni_configs=["10-flannel.conflist"])


def _calico_without_ipset(hosts, cluster):
    cluster["cni"] = "calico"
    for facts in (h["facts"] for h in hosts.values()):
        facts["kernel_features"].update(ip_set="builtin", xt_set="builtin")
    hosts["cp1"]["facts"]["kernel_features"]["ip_set"] = "missing"


def _two_cps(cluster):
    cluster["groups"] = {"control_plane": ["cp1", "w1"], "workers": ["w2"]}


def _no_cps(cluster):
    cluster["groups"] = {"control_plane": [], "workers": ["cp1", "w1", "w2"]}


def _both_groups(cluster):
    cluster["groups"] = {"control_plane": ["cp1"], "workers": ["cp1", "w1", "w2"]}


def _port_taken(hosts):
    hosts["cp1"]["facts"]["listening_ports"]["6443"] = ["nginx"]


def _installed_newer_kubelet(hosts):
    hosts["w1"]["facts"]["kubelet_version"] = "v1.36.0"


def _installed_ancient_kubelet(hosts):
    hosts["w1"]["facts"]["kubelet_version"] = "v1.30.2"


BAD = {
    "unreachable host": (mutate_hosts(_unreachable), "reachable", "w2", "unreachable"),
    "unsupported OS family": (_set(["w1", "os", "id"], "centos"), "os_supported", "w1", "not supported"),
    "unsupported OS version": (_set(["w1", "os", "version_id"], "10"), "os_supported", "w1", "debian 10"),
    "too few CPUs on a control plane": (_set(["cp1", "cpus"], 1), "resources", "cp1", "control plane needs"),
    "too little memory on a worker": (_set(["w2", "memory_mb"], 512), "resources", "w2", "512 MiB"),
    "swap active": (_set(["w1", "swap_total_mb"], 2048), "swap", "w1", "swapoff"),
    "vxlan missing for flannel": (
        _set(["w2", "kernel_features", "vxlan"], "missing"),
        "kernel_features",
        "w2",
        "vxlan",
    ),
    "overlay missing": (_set(["cp1", "kernel_features", "overlay"], "missing"), "kernel_features", "cp1", "overlay"),
    "duplicate machine-id": (mutate_hosts(_same_machine_id), "unique_identity", None, "machine-id"),
    "duplicate host name": (mutate_hosts(_same_hostname), "unique_identity", None, "host name"),
    "duplicate node IP": (mutate_hosts(_same_node_ip), "unique_identity", None, "node IP 198.18.0.21"),
    "empty machine-id": (_set(["w1", "machine_id"], ""), "unique_identity", "w1", "machine-id is empty"),
    "node IP not on host": (
        mutate_hosts(lambda h: h["w1"].__setitem__("node_ip", "10.1.1.1")),
        "node_ip",
        "w1",
        "not configured on the host",
    ),
    "clock far behind": (_set(["w2", "time_epoch"], NOW - 600), "time_sync", "w2", "off the controller"),
    "API port in use": (mutate_hosts(_port_taken), "ports_free", "cp1", "6443 is already in use by nginx"),
    "pod and service CIDR overlap": (_cluster("service_cidr", "10.244.128.0/17"), "network_cidrs", None, "overlaps"),
    "pod CIDR overlaps the host network": (
        _cluster("pod_cidr", "198.18.0.0/16"),
        "network_cidrs",
        None,
        "overlaps",
    ),
    "pod CIDR not a CIDR": (_cluster("pod_cidr", "10.244.0.0/33"), "network_cidrs", None, "not a valid CIDR"),
    "pod CIDR with host bits": (_cluster("pod_cidr", "10.244.1.0/16"), "network_cidrs", None, "host bits"),
    "service CIDR too large": (_cluster("service_cidr", "10.0.0.0/8"), "network_cidrs", None, "at most a /12"),
    "pod CIDR too small for the nodes": (_cluster("pod_cidr", "10.244.0.0/23"), "network_cidrs", None, "holds only 2"),
    "even number of control planes": (mutate_cluster(_two_cps), "control_plane_quorum", None, "odd number"),
    "no control plane": (mutate_cluster(_no_cps), "inventory_groups", None, "control_plane group is empty"),
    "host in both groups": (mutate_cluster(_both_groups), "inventory_groups", "cp1", "both control_plane and workers"),
    "external etcd group": (
        mutate_cluster(lambda c: c["groups"].__setitem__("etcd", ["e1"])),
        "inventory_groups",
        None,
        "external etcd is not implemented",
    ),
    "CNI not implemented yet": (_cluster("cni", "kube_ovn"), "cni", None, "not implemented yet"),
    "CNI changed on a running cluster": (
        _running_flannel_asked_calico,
        "cni",
        "w1",
        "changing the CNI of a running cluster is not supported",
    ),
    "VXLAN port taken": (
        _set(["w2", "udp_ports"], {"8472": ["socat"]}),
        "cni_ports_free",
        "w2",
        "UDP port 8472 (the flannel VXLAN port) is already bound by socat",
    ),
    "VXLAN port held by another VXLAN device": (
        _set(["w2", "udp_ports"], {"8472": []}),
        "cni_ports_free",
        "w2",
        "the kernel (another VXLAN device)",
    ),
    "Calico without ip_set": (_calico_without_ipset, "kernel_features", "cp1", "ip_set"),
    "CNI unknown": (_cluster("cni", "weave"), "cni", None, "not a known CNI"),
    "bad cluster name": (_cluster("cluster_name", "Prod_A"), "cluster_name", None, "DNS-1123"),
    "bad endpoint": (
        _cluster("control_plane_endpoint", "api.example.com"),
        "control_plane_endpoint",
        None,
        "host:port",
    ),
    "bad Kubernetes version": (_cluster("kubernetes_version", "latest"), "version_skew", None, "not a valid version"),
    "Kubernetes version the manifest does not hold": (
        _cluster("kubernetes_version", "v1.33.2"),
        "version_skew",
        None,
        "v1.33.2 is not a Kubernetes release of the versions manifest (vars/versions.yml holds v1.35.4, v1.34.12)",
    ),
    "kubelet newer than target": (
        mutate_hosts(_installed_newer_kubelet),
        "version_skew",
        "w1",
        "newer than the target",
    ),
    "kubelet too old": (mutate_hosts(_installed_ancient_kubelet), "version_skew", "w1", "one minor version at a time"),
    "mirror unreachable": (
        _set(["w2", "mirror"], {"url": "http://198.18.0.1:8080/", "ok": False, "error": "Connection refused"}),
        "mirror_reachable",
        "w2",
        "Connection refused",
    ),
    "registry unreachable": (
        _set(["cp1", "registry"], {"url": "http://198.18.0.1:5000/v2/", "ok": False, "error": "timed out"}),
        "mirror_reachable",
        "cp1",
        "registry mirror",
    ),
    "no nameserver": (_set(["w1", "nameservers"], []), "dns_resolver", "w1", "no nameserver"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_state_is_named(case):
    mutate, check, host, text = BAD[case]
    hosts, cluster = good()
    mutate(hosts, cluster)
    problems = problems_of(hosts, cluster)
    matching = [p for p in problems if p["check"] == check and p["host"] == host and text in p["message"]]
    assert matching, problems
    # The problem is reported by its check only: a bad state does not cascade into unrelated noise.
    assert {p["check"] for p in problems} == {check}, problems


def test_at_least_fifteen_distinct_checks_are_proven():
    assert len(BAD) >= 15
    assert len({v[1] for v in BAD.values()}) >= 15


def test_all_problems_on_all_hosts_are_gathered_in_one_report():
    hosts, cluster = good()
    _set(["w1", "swap_total_mb"], 100)(hosts, cluster)
    _set(["w2", "os", "id"], "arch")(hosts, cluster)
    _port_taken(hosts)
    cluster["cni"] = "kube_ovn"
    problems = problems_of(hosts, cluster)
    assert {(p["check"], p["host"]) for p in problems} == {
        ("swap", "w1"),
        ("os_supported", "w2"),
        ("ports_free", "cp1"),
        ("cni", None),
    }
    lines = format_problems(problems)
    assert any(line.startswith("[swap] w1: swap is active") for line in lines)


def test_skipping_a_check_by_name():
    hosts, cluster = good()
    _set(["w1", "swap_total_mb"], 100)(hosts, cluster)
    report = evaluate(hosts, cluster, ["swap"])
    assert report["problems"] == []
    assert report["skipped"] == ["swap"]
    assert "swap" not in report["checks"]


def test_swap_allowed_by_explicit_opt_in():
    hosts, cluster = good()
    _set(["w1", "swap_total_mb"], 100)(hosts, cluster)
    cluster["allow_swap"] = True
    assert problems_of(hosts, cluster) == []


def test_skipping_every_check_is_refused():
    hosts, cluster = good()
    problems = problems_of(hosts, cluster, list(CHECKS))
    assert [p["check"] for p in problems] == ["preflight"]
    assert "not allowed" in problems[0]["message"]


def test_unknown_skip_name_is_refused():
    hosts, cluster = good()
    problems = problems_of(hosts, cluster, ["swapp"])
    assert problems and problems[0]["check"] == "preflight" and "swapp" in problems[0]["message"]


def test_joined_host_may_hold_its_own_ports():
    hosts, cluster = good()
    facts = hosts["cp1"]["facts"]
    facts["joined"] = True
    facts["listening_ports"].update({"6443": ["kube-apiserver"], "2379": ["etcd"], "10250": ["kubelet"]})
    assert problems_of(hosts, cluster) == []
    facts["listening_ports"]["10259"] = ["python3"]
    assert [p["message"] for p in problems_of(hosts, cluster)] == [
        "port 10259 is already in use by python3: stop it or move it"
    ]


def test_module_only_kernel_feature_is_accepted_and_unknown_only_warns():
    hosts, cluster = good()
    hosts["w1"]["facts"]["kernel_features"]["vxlan"] = "unknown"
    report = evaluate(hosts, cluster)
    assert report["problems"] == []
    assert report["warnings"] and report["warnings"][0]["check"] == "kernel_features"


def test_cgroup_v1_warns_but_passes():
    hosts, cluster = good()
    hosts["w1"]["facts"]["cgroup_version"] = 1
    report = evaluate(hosts, cluster)
    assert report["problems"] == []
    assert any("cgroup v1" in w["message"] for w in report["warnings"])


def test_older_kubelet_within_skew_only_warns():
    hosts, cluster = good()
    hosts["w1"]["facts"]["kubelet_version"] = "v1.34.1"
    report = evaluate(hosts, cluster)
    assert report["problems"] == []
    assert report["warnings"][0]["check"] == "version_skew"


def test_an_older_release_of_the_manifest_is_a_valid_target():
    hosts, cluster = good()
    cluster["kubernetes_version"] = "v1.34.12"
    assert problems_of(hosts, cluster) == []


def test_the_repository_manifest_releases_are_what_preflight_accepts():
    """The role passes the manifest's releases (filter kubernetes_versions): each is accepted, others are not."""
    releases = kubernetes_versions(VERSIONS)
    assert releases[0] == VERSIONS["kubernetes"]["version"] and len(releases) >= 2
    for version in releases:
        hosts, cluster = good()
        cluster.update(kubernetes_version=version, kubernetes_releases=releases)
        assert problems_of(hosts, cluster) == [], version
    hosts, cluster = good()
    cluster.update(kubernetes_version="v1.36.0", kubernetes_releases=releases)
    assert [p["check"] for p in problems_of(hosts, cluster)] == ["version_skew"]


def test_input_is_not_modified():
    hosts, cluster = good()
    before = copy.deepcopy((hosts, cluster))
    evaluate(hosts, cluster)
    assert (hosts, cluster) == before


def test_joined_host_pod_network_interfaces_are_not_host_networks():
    hosts, cluster = good()
    for i, host in enumerate(hosts.values()):
        host["facts"]["joined"] = True
        host["facts"]["ipv4"] += [
            {"interface": "flannel.1", "address": "10.244.%d.0" % i, "prefix": 32},
            {"interface": "cni0", "address": "10.244.%d.1" % i, "prefix": 24},
        ]
    assert problems_of(hosts, cluster) == []
    # ... but on a host that is not part of the cluster yet, such an address is a conflict.
    hosts["w1"]["facts"]["joined"] = False
    assert [p["check"] for p in problems_of(hosts, cluster)] == ["network_cidrs", "network_cidrs"]


def test_calico_cluster_passes_and_a_joined_calico_node_may_hold_its_vxlan_port():
    hosts, cluster = good()
    cluster["cni"] = "calico"
    for facts in (h["facts"] for h in hosts.values()):
        facts["kernel_features"].update(ip_set="builtin", xt_set="module")
    assert problems_of(hosts, cluster) == []
    hosts["w1"]["facts"].update(joined=True, cni_configs=["10-calico.conflist"], udp_ports={"4789": []})
    assert problems_of(hosts, cluster) == []
    hosts["w1"]["facts"]["udp_ports"] = {"4789": ["dnsmasq"]}
    assert [p["check"] for p in problems_of(hosts, cluster)] == ["cni_ports_free"]


# ---- registry_access: the registries of anvil_registries ------------------------------------------------

REGISTRY = "198.18.0.22:5443"


def registries(hosts, cluster, probe, ca_missing=False):
    cluster["registries"] = [{"host": REGISTRY, "ca_file": "/ctl/ca.crt", "ca_missing": ca_missing}]
    for name in hosts:
        hosts[name]["facts"]["registries"] = [] if ca_missing else [{"host": REGISTRY, **probe}]


def test_registry_that_answers_and_takes_its_credentials_passes():
    hosts, cluster = good()
    registries(hosts, cluster, {"url": "https://%s/v2/" % REGISTRY, "ok": True, "error": None, "auth": True})
    assert problems_of(hosts, cluster) == []


def test_registry_without_credentials_needs_only_an_answer():
    hosts, cluster = good()
    registries(hosts, cluster, {"url": "https://%s/v2/" % REGISTRY, "ok": True, "error": None, "auth": None})
    assert problems_of(hosts, cluster) == []


def test_missing_ca_file_is_one_inventory_problem_naming_the_file():
    hosts, cluster = good()
    registries(hosts, cluster, {}, ca_missing=True)
    problems = problems_of(hosts, cluster)
    assert [(p["check"], p["host"]) for p in problems] == [("registry_access", None)]
    assert "/ctl/ca.crt" in problems[0]["message"] and REGISTRY in problems[0]["message"]


REGISTRY_FAILURES = {
    "unverified or unreachable": (
        {"ok": False, "error": "certificate verify failed", "auth": None},
        "certificate verify failed",
    ),
    "refused credentials": (
        {"ok": True, "error": "HTTP 401 with the credentials", "auth": False},
        "refused the username and password",
    ),
}


@pytest.mark.parametrize("case", list(REGISTRY_FAILURES), ids=list(REGISTRY_FAILURES))
def test_a_failing_registry_probe_is_named_per_host(case):
    probe, text = REGISTRY_FAILURES[case]
    hosts, cluster = good()
    registries(hosts, cluster, {"url": "https://%s/v2/" % REGISTRY, **probe})
    problems = problems_of(hosts, cluster)
    assert sorted(p["host"] for p in problems) == ["cp1", "w1", "w2"]
    assert all(p["check"] == "registry_access" and text in p["message"] for p in problems)


def test_registry_access_can_be_skipped():
    hosts, cluster = good()
    registries(hosts, cluster, {"url": "x", "ok": False, "error": "timed out", "auth": None})
    assert problems_of(hosts, cluster, ["registry_access"]) == []
