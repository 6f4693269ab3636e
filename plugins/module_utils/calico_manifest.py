# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calico's own manifest, adapted to a cluster (pure; used by the calico_manifest filter).

The builder copies ``manifests/calico-vxlan.yaml`` and ``manifests/calico-typha.yaml`` out of the Calico
Go module it builds from, so the CRDs, RBAC and workloads are upstream's. This module changes only what
a cluster decides: images (the mirror's), the IP pool, VXLAN mode, port and VNI, MTU, the iptables
backend, address detection, Typha, and how calico-node's processes run.

Upstream's calico-node image runs its processes (felix, address monitor, tunnel-address allocator, CNI
token monitor, status reporter, node-condition keeper) under runit. The images built here carry no
supervisor: each process is its own container of the calico-node pod, so the kubelet restarts the one
that exits, and ``calico-node -startup`` (with its run-once tunnel address allocation) runs as init
containers before them, as runit's start script does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

# Upstream image repository path -> the image name the builder gives it.
IMAGE_NAMES = {
    "calico/node": "calico-node",
    "calico/cni": "calico-cni",
    "calico/kube-controllers": "calico-kube-controllers",
    "calico/typha": "calico-typha",
}
VXLAN_MODES = ("Always", "CrossSubnet")
IPTABLES_BACKENDS = ("NFT", "Legacy", "Auto")
# Long-running calico-node processes besides felix (the runit services of upstream's image that a
# VXLAN-only node enables; BIRD and confd are for BGP and are not run).
#
# Not `-complete-startup` on its own: having marked the node's network available, it blocks forever on a
# channel that is never ready, which upstream's runit-supervised (cgo) binary survives; in these builds the
# Go runtime sees every goroutine asleep once its last timer fires (about two minutes after start) and
# exits with "all goroutines are asleep - deadlock!", the kubelet restarts it with a growing back-off, and
# the pod is not Ready for minutes at a time. The startup init container marks the node available instead
# (`-startup -complete-startup`, a combination upstream's calico-node supports for exactly that).
SIDECARS = (
    ("monitor-addresses", ["-monitor-addresses"]),
    ("allocate-tunnel-addrs", ["-allocate-tunnel-addrs"]),
    ("cni-token-monitor", ["-monitor-token"]),
    ("status-reporter", ["-status-reporter"]),
)
STARTUP = (
    ("startup", ["-startup", "-complete-startup"]),
    ("allocate-tunnel-addrs-once", ["-allocate-tunnel-addrs", "-allocate-tunnel-addrs-run-once"]),
)
TYPHA_KINDS = ("PodDisruptionBudget", "Service", "Deployment")
# Volumes only the eBPF dataplane uses.
EBPF_VOLUMES = ("bpffs", "sys-fs", "nodeproc")


class CalicoManifestError(ValueError):
    """The manifest or the settings do not fit; the message says what to fix."""


def _check(settings):
    problems = []
    if settings.get("vxlan_mode") not in VXLAN_MODES:
        problems.append("vxlan_mode must be one of %s, not %r" % (", ".join(VXLAN_MODES), settings.get("vxlan_mode")))
    if settings.get("iptables_backend") not in IPTABLES_BACKENDS:
        problems.append(
            "iptables_backend must be one of %s, not %r"
            % (", ".join(IPTABLES_BACKENDS), settings.get("iptables_backend"))
        )
    for key, low, high in (
        ("mtu", 576, 9000),
        ("vxlan_port", 1, 65535),
        ("vxlan_vni", 1, 16777215),
        ("block_size", 20, 32),
        ("typha_replicas", 0, 20),
    ):
        value = settings.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append("%s must be an integer from %d to %d, not %r" % (key, low, high, value))
    if not settings.get("pod_cidr"):
        problems.append("pod_cidr is required")
    if problems:
        raise CalicoManifestError("calico settings: " + "; ".join(problems))


def _image(ref, repository, tag):
    """quay.io/calico/node:v3.31.0 -> <repository>/calico-node:<tag> (unchanged without a repository)."""
    if not repository:
        return ref
    path = ref.rsplit(":", 1)[0]
    for upstream, name in IMAGE_NAMES.items():
        if path.endswith("/" + upstream) or path == upstream:
            return "%s/%s:%s" % (repository.rstrip("/"), name, tag)
    raise CalicoManifestError("image %s is not one the builder makes (%s)" % (ref, ", ".join(sorted(IMAGE_NAMES))))


def _set_env(container, name, value=None, value_from=None):
    env = container.setdefault("env", [])
    item = {"name": name, "valueFrom": value_from} if value_from else {"name": name, "value": str(value)}
    for i, existing in enumerate(env):
        if existing.get("name") == name:
            env[i] = item
            return
    env.append(item)


def _find(docs, kind, name):
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise CalicoManifestError("the Calico manifest has no %s %s" % (kind, name))


def _pod_images(doc, repository, tag):
    spec = doc["spec"]["template"]["spec"]
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        container["image"] = _image(container["image"], repository, tag)


def _calico_node(ds, settings):
    spec = ds["spec"]["template"]["spec"]
    felix = next((c for c in spec["containers"] if c["name"] == "calico-node"), None)
    if felix is None:
        raise CalicoManifestError("the calico-node DaemonSet has no calico-node container")
    node_name = {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for name, value in (
        ("CALICO_IPV4POOL_CIDR", settings["pod_cidr"]),
        ("CALICO_IPV4POOL_BLOCK_SIZE", settings["block_size"]),
        ("CALICO_IPV4POOL_IPIP", "Never"),
        ("CALICO_IPV4POOL_VXLAN", settings["vxlan_mode"]),
        ("FELIX_VXLANPORT", settings["vxlan_port"]),
        ("FELIX_VXLANVNI", settings["vxlan_vni"]),
        ("FELIX_IPTABLESBACKEND", settings["iptables_backend"]),
        ("IP_AUTODETECTION_METHOD", settings.get("ip_autodetection_method") or "kubernetes-internal-ip"),
        ("FELIX_DATASTORETYPE", "kubernetes"),
        # At start felix removes what an earlier eBPF-mode Calico may have left (its connect-time load
        # balancer). That needs libbpf, which a CGO-off build has only as a stub that panics; hosts this
        # collection deploys never ran the eBPF dataplane, so there is nothing to remove.
        ("FELIX_DebugSkipCTLBCleanup", "true"),
    ):
        _set_env(felix, name, value)
    _set_env(felix, "FELIX_FELIXHOSTNAME", value_from=node_name)
    if settings["typha_replicas"]:
        _set_env(
            felix,
            "FELIX_TYPHAK8SSERVICENAME",
            value_from={"configMapKeyRef": {"name": "calico-config", "key": "typha_service_name"}},
        )
    if settings.get("resources"):
        felix["resources"] = copy.deepcopy(settings["resources"])

    # The eBPF dataplane's bootstrap (mounts bpffs and cgroup2 with bidirectional propagation) and felix's
    # view of the BPF filesystem are not needed by the iptables/nftables dataplane these builds run (and a
    # host without /sys/fs/bpf, such as a container-based machine, could not start the pod).
    spec["initContainers"] = [c for c in spec.get("initContainers", []) if "-init" not in (c.get("command") or [])]
    felix["volumeMounts"] = [m for m in felix.get("volumeMounts", []) if m["name"] not in EBPF_VOLUMES]
    used = {m["name"] for c in spec["initContainers"] + [felix] for m in c.get("volumeMounts", [])}
    spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] in used]

    def process(name, args):
        c = {
            "name": name,
            "image": felix["image"],
            "imagePullPolicy": felix.get("imagePullPolicy", "IfNotPresent"),
            "args": list(args),
            "envFrom": copy.deepcopy(felix.get("envFrom", [])),
            "env": copy.deepcopy(felix["env"]),
            "securityContext": copy.deepcopy(felix.get("securityContext", {"privileged": True})),
            "volumeMounts": copy.deepcopy(felix.get("volumeMounts", [])),
        }
        return c

    spec["initContainers"] += [process(n, a) for n, a in STARTUP]
    felix["args"] = ["-felix"]
    spec["containers"] = [felix] + [process(n, a) for n, a in SIDECARS]


VXLAN_OVERHEAD = 50  # outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers


def resolve(settings):
    """Settings with the derived values filled in (a new dict):

    - ``mtu`` 0: ``host_mtu`` (the node interface's MTU) less the VXLAN overhead;
    - ``iptables_backend`` ``auto``: ``NFT`` or ``Legacy`` from ``host_iptables`` (``iptables -V`` output);
    - ``typha_replicas`` unset: from ``nodes`` and ``typha_threshold`` (see typha_replicas()).
    """
    out = dict(settings)
    if not out.get("mtu"):
        host_mtu = out.get("host_mtu")
        if not isinstance(host_mtu, int) or isinstance(host_mtu, bool) or host_mtu <= VXLAN_OVERHEAD:
            raise CalicoManifestError("mtu is 0 (derive it) but the node interface's MTU is unknown (%r)" % (host_mtu,))
        out["mtu"] = host_mtu - VXLAN_OVERHEAD
    backend = str(out.get("iptables_backend") or "auto")
    if backend.lower() == "auto":
        version = str(out.get("host_iptables") or "")
        if "nf_tables" in version:
            backend = "NFT"
        elif "legacy" in version:
            backend = "Legacy"
        else:
            raise CalicoManifestError(
                "iptables_backend is auto but `iptables -V` said %r; set NFT or Legacy" % (version,)
            )
    out["iptables_backend"] = {"nft": "NFT", "legacy": "Legacy"}.get(backend.lower(), backend)
    if out.get("typha_replicas") is None:
        out["typha_replicas"] = typha_replicas(int(out.get("nodes") or 0), int(out.get("typha_threshold") or 0))
    return out


def adapt(docs, typha_docs, settings):
    """The cluster's Calico manifest: a list of objects built from upstream's (inputs are not changed).

    ``settings``: image_repository, image_tag, pod_cidr, block_size, vxlan_mode, vxlan_port, vxlan_vni,
    mtu (or host_mtu), iptables_backend (or host_iptables), typha_replicas (or nodes and typha_threshold),
    and optionally ip_autodetection_method, resources (of felix) and api_endpoint (host:port Calico reaches
    the API server at, such as the node-local load balancer). See resolve().
    """
    settings = resolve(settings)
    _check(settings)
    docs = [copy.deepcopy(d) for d in docs if d]
    repo, tag = settings.get("image_repository") or "", settings.get("image_tag") or ""
    if repo and not tag:
        raise CalicoManifestError("image_tag is required with image_repository")

    config = _find(docs, "ConfigMap", "calico-config")
    config["data"]["veth_mtu"] = str(settings["mtu"])
    config["data"]["calico_backend"] = "vxlan"
    config["data"]["typha_service_name"] = "calico-typha" if settings["typha_replicas"] else "none"

    endpoint = settings.get("api_endpoint")
    if endpoint:
        # calico-node, the CNI plugin (its kubeconfig) and kube-controllers reach the API server here instead
        # of through the kubernetes Service: a pod's network teardown then needs neither kube-proxy's rules
        # nor a Service endpoint that may be the API server of a control plane being removed.
        host, sep, port = str(endpoint).rpartition(":")
        if not sep or not host or not port.isdigit():
            raise CalicoManifestError("api_endpoint must be host:port, not %r" % (endpoint,))
        docs.insert(
            docs.index(config) + 1,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kubernetes-services-endpoint", "namespace": "kube-system"},
                "data": {"KUBERNETES_SERVICE_HOST": host.strip("[]"), "KUBERNETES_SERVICE_PORT": port},
            },
        )

    ds = _find(docs, "DaemonSet", "calico-node")
    _pod_images(ds, repo, tag)
    _calico_node(ds, settings)
    _pod_images(_find(docs, "Deployment", "calico-kube-controllers"), repo, tag)

    if settings["typha_replicas"]:
        typha = [copy.deepcopy(d) for d in typha_docs or [] if d]
        extra = [_find(typha, kind, "calico-typha") for kind in TYPHA_KINDS]
        deployment = extra[-1]
        deployment["spec"]["replicas"] = settings["typha_replicas"]
        _pod_images(deployment, repo, tag)
        docs += extra
    return docs


def typha_replicas(nodes, threshold, per_replica=200, most=3):
    """Typha replicas for a cluster of ``nodes``: none below ``threshold`` nodes, else one per
    ``per_replica`` nodes, at least 2 (one may be restarting) and at most ``most``."""
    if threshold <= 0 or nodes < threshold:
        return 0
    return max(2, min(most, -(-nodes // per_replica)))
