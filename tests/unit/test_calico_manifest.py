"""Calico's upstream manifest adapted to a cluster: what changes, what stays upstream's, what is refused."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils.calico_manifest import (
    CalicoManifestError,
    adapt,
    resolve,
    typha_replicas,
)

UPSTREAM = "quay.io/calico/%s:v3.31.0"


def node_container():
    return {
        "name": "calico-node",
        "image": UPSTREAM % "node",
        "env": [
            {"name": "DATASTORE_TYPE", "value": "kubernetes"},
            {"name": "NODENAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "CALICO_IPV4POOL_VXLAN", "value": "CrossSubnet"},
        ],
        "securityContext": {"privileged": True},
        "resources": {"requests": {"cpu": "250m"}},
        "livenessProbe": {"exec": {"command": ["/bin/calico-node", "-felix-live"]}},
        "volumeMounts": [
            {"name": "var-lib-calico", "mountPath": "/var/lib/calico"},
            {"name": "bpffs", "mountPath": "/sys/fs/bpf"},
        ],
    }


def upstream():
    return [
        None,
        {
            "kind": "ConfigMap",
            "metadata": {"name": "calico-config"},
            "data": {"veth_mtu": "0", "calico_backend": "vxlan"},
        },
        {"kind": "CustomResourceDefinition", "metadata": {"name": "ippools.crd.projectcalico.org"}, "spec": {}},
        {
            "kind": "DaemonSet",
            "metadata": {"name": "calico-node"},
            "spec": {
                "template": {
                    "spec": {
                        "initContainers": [
                            {
                                "name": "install-cni",
                                "image": UPSTREAM % "cni",
                                "command": ["/opt/cni/bin/install"],
                                "volumeMounts": [{"name": "cni-bin-dir", "mountPath": "/host/opt/cni/bin"}],
                            },
                            {
                                "name": "ebpf-bootstrap",
                                "image": UPSTREAM % "node",
                                "command": ["calico-node", "-init", "-best-effort"],
                                "volumeMounts": [{"name": "sys-fs", "mountPath": "/sys/fs"}],
                            },
                        ],
                        "containers": [node_container()],
                        "volumes": [
                            {"name": n, "hostPath": {"path": "/" + n}}
                            for n in ("var-lib-calico", "cni-bin-dir", "sys-fs", "bpffs")
                        ],
                    }
                }
            },
        },
        {
            "kind": "Deployment",
            "metadata": {"name": "calico-kube-controllers"},
            "spec": {"template": {"spec": {"containers": [{"name": "k", "image": UPSTREAM % "kube-controllers"}]}}},
        },
    ]


def typha():
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "calico-typha"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "t", "image": UPSTREAM % "typha"}]}}},
    }
    service = {"kind": "Service", "metadata": {"name": "calico-typha"}}
    return [*upstream(), service, {"kind": "PodDisruptionBudget", "metadata": {"name": "calico-typha"}}, deployment]


def settings(**kw):
    out = {
        "image_repository": "198.18.0.1:5000/anvil",
        "image_tag": "v3.31.0",
        "pod_cidr": "10.244.0.0/16",
        "block_size": 26,
        "vxlan_mode": "Always",
        "vxlan_port": 4789,
        "vxlan_vni": 4096,
        "mtu": 0,
        "host_mtu": 1500,
        "iptables_backend": "auto",
        "host_iptables": "iptables v1.8.9 (nf_tables)",
        "nodes": 3,
        "typha_threshold": 50,
    }
    out.update(kw)
    return out


def by(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def pod(docs):
    return by(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]


def env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_images_come_from_the_mirror_and_every_upstream_image_is_mapped():
    docs = adapt(upstream(), typha(), settings(nodes=60))
    images = sorted(
        {
            c["image"]
            for d in docs
            if d["kind"] in ("DaemonSet", "Deployment")
            for c in d["spec"]["template"]["spec"].get("initContainers", [])
            + d["spec"]["template"]["spec"]["containers"]
        }
    )
    assert images == [
        "198.18.0.1:5000/anvil/calico-%s:v3.31.0" % n for n in ("cni", "kube-controllers", "node", "typha")
    ]


def test_no_repository_keeps_upstream_images():
    docs = adapt(upstream(), [], settings(image_repository=""))
    assert pod(docs)["containers"][0]["image"] == UPSTREAM % "node"


def test_pool_vxlan_mtu_and_backend_reach_calico_node():
    docs = adapt(upstream(), [], settings(vxlan_mode="CrossSubnet", vxlan_port=4790, block_size=24))
    felix = pod(docs)["containers"][0]
    e = env(felix)
    assert e["CALICO_IPV4POOL_CIDR"] == "10.244.0.0/16"
    assert e["CALICO_IPV4POOL_BLOCK_SIZE"] == "24"
    assert e["CALICO_IPV4POOL_VXLAN"] == "CrossSubnet"  # replaced, not duplicated
    assert [x["name"] for x in felix["env"]].count("CALICO_IPV4POOL_VXLAN") == 1
    assert e["CALICO_IPV4POOL_IPIP"] == "Never"
    assert e["FELIX_VXLANPORT"] == "4790"
    assert e["FELIX_IPTABLESBACKEND"] == "NFT"
    assert e["IP_AUTODETECTION_METHOD"] == "kubernetes-internal-ip"
    assert by(docs, "ConfigMap", "calico-config")["data"]["veth_mtu"] == "1450"


def test_each_process_is_its_own_container_after_startup_init_containers():
    spec = pod(adapt(upstream(), [], settings()))
    assert [c["name"] for c in spec["initContainers"]] == ["install-cni", "startup", "allocate-tunnel-addrs-once"]
    # The startup init container also marks the node's network available: no complete-startup container,
    # whose process would block forever (and be restarted as a crash) once it has.
    assert spec["initContainers"][1]["args"] == ["-startup", "-complete-startup"]
    names = [c["name"] for c in spec["containers"]]
    assert names == [
        "calico-node",
        "monitor-addresses",
        "allocate-tunnel-addrs",
        "cni-token-monitor",
        "status-reporter",
    ]
    felix = spec["containers"][0]
    assert felix["args"] == ["-felix"] and "livenessProbe" in felix
    assert env(felix)["FELIX_FELIXHOSTNAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for c in spec["containers"][1:]:
        assert "livenessProbe" not in c and "resources" not in c
        assert env(c) == env(felix) and c["volumeMounts"] == felix["volumeMounts"]
        assert c["securityContext"] == {"privileged": True}


def test_api_endpoint_becomes_the_services_endpoint_config_map():
    docs = adapt(upstream(), [], settings(api_endpoint="127.0.0.1:8443"))
    endpoint = by(docs, "ConfigMap", "kubernetes-services-endpoint")
    assert endpoint["metadata"]["namespace"] == "kube-system"
    assert endpoint["data"] == {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "8443"}
    kinds = [d["kind"] for d in docs]
    assert kinds.index("ConfigMap") < kinds.index("DaemonSet")
    assert not [d for d in adapt(upstream(), [], settings()) if d["metadata"]["name"] == "kubernetes-services-endpoint"]
    with pytest.raises(CalicoManifestError, match="api_endpoint must be host:port"):
        adapt(upstream(), [], settings(api_endpoint="127.0.0.1"))


def test_ebpf_bootstrap_and_its_volumes_are_dropped():
    spec = pod(adapt(upstream(), [], settings()))
    assert "ebpf-bootstrap" not in [c["name"] for c in spec["initContainers"]]
    assert sorted(v["name"] for v in spec["volumes"]) == ["cni-bin-dir", "var-lib-calico"]
    assert [m["name"] for m in spec["containers"][0]["volumeMounts"]] == ["var-lib-calico"]


def test_typha_only_from_the_threshold_on():
    small = adapt(upstream(), typha(), settings(nodes=49))
    assert not [d for d in small if d["metadata"]["name"] == "calico-typha"]
    assert by(small, "ConfigMap", "calico-config")["data"]["typha_service_name"] == "none"
    big = adapt(upstream(), typha(), settings(nodes=500))
    assert by(big, "Deployment", "calico-typha")["spec"]["replicas"] == 3
    assert by(big, "ConfigMap", "calico-config")["data"]["typha_service_name"] == "calico-typha"
    assert "FELIX_TYPHAK8SSERVICENAME" in env(pod(big)["containers"][0])


@pytest.mark.parametrize(
    "nodes,threshold,want", [(3, 50, 0), (50, 50, 2), (399, 50, 2), (401, 50, 3), (5000, 50, 3), (5000, 0, 0)]
)
def test_typha_replicas(nodes, threshold, want):
    assert typha_replicas(nodes, threshold) == want


def test_explicit_mtu_and_legacy_backend():
    out = resolve(settings(mtu=1400, iptables_backend="auto", host_iptables="iptables v1.8.9 (legacy)"))
    assert (out["mtu"], out["iptables_backend"]) == (1400, "Legacy")
    assert resolve(settings(iptables_backend="nft"))["iptables_backend"] == "NFT"


@pytest.mark.parametrize(
    "change,text",
    [
        ({"vxlan_mode": "Never"}, "vxlan_mode must be one of Always, CrossSubnet"),
        ({"vxlan_port": 0}, "vxlan_port must be an integer from 1 to 65535"),
        ({"mtu": 0, "host_mtu": None}, "node interface's MTU is unknown"),
        ({"iptables_backend": "auto", "host_iptables": ""}, "set NFT or Legacy"),
        ({"pod_cidr": ""}, "pod_cidr is required"),
        ({"image_tag": ""}, "image_tag is required"),
    ],
)
def test_bad_settings_say_what_to_fix(change, text):
    with pytest.raises(CalicoManifestError, match=text):
        adapt(upstream(), [], settings(**change))


def test_unknown_image_and_missing_objects_are_refused():
    docs = upstream()
    docs[4]["spec"]["template"]["spec"]["containers"][0]["image"] = "quay.io/calico/whisker:v3.31.0"
    with pytest.raises(CalicoManifestError, match="whisker"):
        adapt(docs, [], settings())
    with pytest.raises(CalicoManifestError, match="no DaemonSet calico-node"):
        adapt([d for d in upstream() if d and d["kind"] != "DaemonSet"], [], settings())


def test_inputs_are_not_modified():
    docs, extra = upstream(), typha()
    before = copy.deepcopy((docs, extra))
    adapt(docs, extra, settings(nodes=100))
    assert (docs, extra) == before
