# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster preflight checks: judge the inventory and every host before anything is changed.

Pure logic (no Ansible imports): `evaluate()` takes the facts gathered by the `preflight_facts`
module on each host plus the cluster settings from the inventory and returns *every* problem found,
each naming its check, the host (or None for inventory-wide problems) and what to do about it.
Each check can be skipped by name; skipping all of them, or an unknown name, is itself a problem.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported as a problem by evaluate()
    netaddr = None
    HAS_NETADDR = False

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")

IMPLEMENTED_CNIS = ("flannel", "calico")
# Interfaces that CNIs and kube-proxy create on nodes (flannel, the bridge plugin, Calico, Kube-OVN, IPVS).
CLUSTER_INTERFACES = re.compile(r"^(cni\d*|flannel\.\d+|cali.*|tunl0|vxlan\.calico|kube-ipvs0|ovn0|mirror0|veth.*)$")
PLANNED_CNIS = ("kube_ovn",)
# The CNI configuration file each CNI writes on a node (which CNI a running cluster has).
CNI_CONFIG_FILES = {"flannel": "10-flannel.conflist", "calico": "10-calico.conflist"}

DEFAULTS = {
    "cluster_name": "anvil",
    "pod_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/12",
    "node_cidr_mask": 24,
    "cni": "calico",
    "control_plane_endpoint": "127.0.0.1:8443",
    "kubernetes_version": None,
    # The versions the target may be (the versions manifest's releases); empty: any valid version.
    "kubernetes_releases": [],
    "reserved_cidrs": [],
    "allow_swap": False,
    "supported_os": {"debian": ["12", "13"]},
    "min_resources": {
        "control_plane": {"cpus": 2, "memory_mb": 1700},
        "worker": {"cpus": 1, "memory_mb": 1000},
    },
    "kernel_features": ["overlay", "br_netfilter", "bridge", "veth", "nf_conntrack", "netfilter_nat", "iptables"],
    "cni_kernel_features": {"flannel": ["vxlan"], "calico": ["vxlan", "ip_set", "xt_set", "nf_conntrack"]},
    # UDP ports each CNI's VXLAN device binds on every node.
    "cni_udp_ports": {"flannel": [8472], "calico": [4789]},
    "ports": {
        "control_plane": [6443, 2379, 2380, 10250, 10257, 10259],
        "worker": [10250, 10256],
        "all": [],
    },
    # Processes that may hold the ports above on a host that is already part of this cluster.
    "port_owners": ["kube-apiserver", "etcd", "kubelet", "kube-controller", "kube-scheduler", "kube-proxy", "haproxy"],
    "max_clock_skew": 30,
    "mirror_url": None,
    "registry": None,
    # The registries of anvil_registries: [{host, ca_file, ca_missing}] (the CA is read on the controller).
    "registries": [],
    "max_kubelet_skew": 3,
    "groups": {"control_plane": [], "workers": [], "etcd": []},
    "controller_time_before": None,
    "controller_time_after": None,
}

CHECKS = {
    "reachable": "every host answered and its facts could be gathered",
    "inventory_groups": "control_plane is not empty; no host is both control plane and worker",
    "control_plane_quorum": "an odd number of control planes (etcd quorum)",
    "cluster_name": "the cluster name is a DNS-1123 label",
    "control_plane_endpoint": "the API endpoint is host:port",
    "cni": "the CNI is a known, implemented choice, and the one a running cluster already has",
    "cni_ports_free": "the CNI's VXLAN UDP port is free (or held by this cluster's own VXLAN device)",
    "network_cidrs": "pod/service CIDRs valid, large enough and overlapping neither each other nor host networks",
    "version_skew": "the target Kubernetes version is valid, one the versions manifest holds, and installed kubelets "
    "are within the skew policy",
    "os_supported": "operating system family and version are supported",
    "resources": "CPU and memory minimums per role",
    "swap": "no active swap unless explicitly allowed",
    "kernel_features": "required kernel features are built in, loaded or loadable",
    "unique_identity": "host names, node IPs and machine-ids are unique",
    "node_ip": "the node IP is a valid address configured on the host",
    "time_sync": "host clocks agree with the controller",
    "ports_free": "Kubernetes ports are free (or held by this cluster's own components)",
    "mirror_reachable": "the artifact mirror and registry answer from every host",
    "dns_resolver": "the host has a nameserver configured (CoreDNS forwards to it)",
    "registry_access": "each registry of anvil_registries has its CA, answers over verified TLS, takes its credentials",
}


class Report:
    def __init__(self):
        self.problems = []
        self.warnings = []

    def problem(self, check, host, message):
        self.problems.append({"check": check, "host": host, "message": message})

    def warn(self, check, host, message):
        self.warnings.append({"check": check, "host": host, "message": message})


def parse_version(text):
    match = VERSION_RE.match(str(text or "").strip())
    if not match:
        return None
    return tuple(int(x) for x in match.groups())


def _roles(name, groups):
    roles = []
    if name in groups.get("control_plane", []):
        roles.append("control_plane")
    if name in groups.get("workers", []):
        roles.append("worker")
    return roles


def _live_hosts(hosts):
    return {name: h for name, h in hosts.items() if not h.get("unreachable") and h.get("facts")}


# --- inventory-wide checks -------------------------------------------------------------------


def check_reachable(cluster, hosts, report):
    for name, host in sorted(hosts.items()):
        if host.get("unreachable"):
            report.problem("reachable", name, "host is unreachable: %s" % (host.get("error") or "no answer"))
        elif not host.get("facts"):
            report.problem(
                "reachable", name, "facts could not be gathered: %s" % (host.get("error") or "unknown error")
            )


def check_inventory_groups(cluster, hosts, report):
    groups = cluster["groups"]
    cps = groups.get("control_plane", [])
    workers = groups.get("workers", [])
    if not cps:
        report.problem("inventory_groups", None, "the control_plane group is empty: put at least one host in it")
    for name in sorted(set(cps) & set(workers)):
        report.problem(
            "inventory_groups",
            name,
            "host is in both control_plane and workers: keep it in one group (control planes run workloads "
            "only if you remove their taint)",
        )
    if groups.get("etcd"):
        report.problem(
            "inventory_groups",
            None,
            "an etcd group is defined but external etcd is not implemented yet: remove the group "
            "(etcd runs stacked on the control planes)",
        )


def check_control_plane_quorum(cluster, hosts, report):
    count = len(cluster["groups"].get("control_plane", []))
    if count and count % 2 == 0:
        report.problem(
            "control_plane_quorum",
            None,
            "%d control planes: etcd needs an odd number (1, 3 or 5) to keep quorum; add or remove one" % count,
        )


def check_cluster_name(cluster, hosts, report):
    name = cluster.get("cluster_name")
    if not isinstance(name, str) or not DNS1123_LABEL.match(name):
        report.problem(
            "cluster_name",
            None,
            "anvil_cluster_name %r is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)" % (name,),
        )


def check_control_plane_endpoint(cluster, hosts, report):
    endpoint = str(cluster.get("control_plane_endpoint") or "")
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        report.problem(
            "control_plane_endpoint",
            None,
            "anvil_control_plane_endpoint %r must be host:port (e.g. 127.0.0.1:8443 or api.example.com:6443)"
            % endpoint,
        )


def check_cni(cluster, hosts, report):
    cni = cluster.get("cni")
    if cni in IMPLEMENTED_CNIS:
        check_cni_unchanged(cluster, hosts, report)
        return
    if cni in PLANNED_CNIS:
        report.problem(
            "cni",
            None,
            "anvil_cni %r is not implemented yet; use one of: %s" % (cni, ", ".join(IMPLEMENTED_CNIS)),
        )
    else:
        report.problem(
            "cni",
            None,
            "anvil_cni %r is not a known CNI; choose one of: %s" % (cni, ", ".join(IMPLEMENTED_CNIS + PLANNED_CNIS)),
        )


def check_cni_unchanged(cluster, hosts, report):
    """A joined node whose CNI configuration is another CNI's: the CNI of a running cluster cannot change."""
    cni = cluster.get("cni")
    for name, host in sorted(_live_hosts(hosts).items()):
        if not host["facts"].get("joined"):
            continue
        configs = host["facts"].get("cni_configs") or []
        running = sorted(c for c, f in CNI_CONFIG_FILES.items() if f in configs and c != cni)
        if running and CNI_CONFIG_FILES.get(cni) not in configs:
            report.problem(
                "cni",
                name,
                "anvil_cni is %r but this node runs %s (/etc/cni/net.d/%s): changing the CNI of a running "
                "cluster is not supported; keep anvil_cni: %s, or reset the cluster and deploy it again"
                % (cni, running[0], CNI_CONFIG_FILES[running[0]], running[0]),
            )


def check_cni_ports_free(cluster, hosts, report):
    ports = (cluster.get("cni_udp_ports") or {}).get(cluster.get("cni"), [])
    for name, host in sorted(_live_hosts(hosts).items()):
        bound = host["facts"].get("udp_ports") or {}
        for port in (int(p) for p in ports):
            procs = bound.get(str(port))
            if procs is None or (host["facts"].get("joined") and not procs):
                continue  # free, or the cluster's own VXLAN device (a kernel socket) on a joined node
            report.problem(
                "cni_ports_free",
                name,
                "UDP port %d (the %s VXLAN port) is already bound by %s: free it or choose another port"
                % (port, cluster.get("cni"), ", ".join(procs) or "the kernel (another VXLAN device)"),
            )


def _network(check, label, value, report):
    try:
        net = netaddr.IPNetwork(str(value))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        report.problem(check, None, "%s %r is not a valid CIDR" % (label, value))
        return None
    if net.version != 4:
        report.problem(check, None, "%s %s: only IPv4 clusters are supported yet" % (label, value))
        return None
    if net.network != net.ip:
        report.problem(check, None, "%s %s has host bits set; did you mean %s?" % (label, value, net.cidr))
        return None
    return net


def check_network_cidrs(cluster, hosts, report):
    if not HAS_NETADDR:
        report.problem("network_cidrs", None, "the Python library netaddr is missing on the controller")
        return
    pod = _network("network_cidrs", "anvil_pod_cidr", cluster.get("pod_cidr"), report)
    svc = _network("network_cidrs", "anvil_service_cidr", cluster.get("service_cidr"), report)
    mask = int(cluster.get("node_cidr_mask") or 24)
    nodes = len(set(cluster["groups"].get("control_plane", [])) | set(cluster["groups"].get("workers", [])))
    if pod is not None:
        if pod.prefixlen > mask:
            report.problem(
                "network_cidrs", None, "anvil_pod_cidr %s is smaller than one node's /%d pod range" % (pod, mask)
            )
        elif nodes > 2 ** (mask - pod.prefixlen):
            report.problem(
                "network_cidrs",
                None,
                "anvil_pod_cidr %s holds only %d node ranges of /%d for %d nodes"
                % (pod, 2 ** (mask - pod.prefixlen), mask, nodes),
            )
    if svc is not None and svc.prefixlen < 12:
        report.problem(
            "network_cidrs", None, "anvil_service_cidr %s is too large: Kubernetes allows at most a /12" % svc
        )
    if pod is not None and svc is not None and pod.first <= svc.last and svc.first <= pod.last:
        report.problem("network_cidrs", None, "anvil_pod_cidr %s overlaps anvil_service_cidr %s" % (pod, svc))
    reserved = []
    for cidr in cluster.get("reserved_cidrs") or []:
        net = _network("network_cidrs", "reserved CIDR", cidr, report)
        if net is not None:
            reserved.append((str(net), "a reserved network"))
    for name, host in sorted(_live_hosts(hosts).items()):
        for addr in host["facts"].get("ipv4") or []:
            if addr.get("address", "").startswith("127."):
                continue
            # On a host that already runs Kubernetes, the pod network's own interfaces are not host networks.
            if host["facts"].get("joined") and CLUSTER_INTERFACES.match(addr.get("interface") or ""):
                continue
            net = netaddr.IPNetwork("%s/%s" % (addr["address"], addr["prefix"])).cidr
            reserved.append((str(net), "the network of %s on %s" % (addr.get("interface"), name)))
    for label, net in (("anvil_pod_cidr", pod), ("anvil_service_cidr", svc)):
        if net is None:
            continue
        seen = set()
        for cidr, what in reserved:
            other = netaddr.IPNetwork(cidr)
            if net.first <= other.last and other.first <= net.last and cidr not in seen:
                seen.add(cidr)
                report.problem(
                    "network_cidrs", None, "%s %s overlaps %s (%s): choose another range" % (label, net, what, cidr)
                )


def check_version_skew(cluster, hosts, report):
    target = parse_version(cluster.get("kubernetes_version"))
    if target is None:
        report.problem(
            "version_skew",
            None,
            "the Kubernetes version %r from vars/versions.yml is not a valid version"
            % (cluster.get("kubernetes_version"),),
        )
        return
    releases = [str(v) for v in cluster.get("kubernetes_releases") or []]
    if releases and str(cluster.get("kubernetes_version")) not in releases:
        report.problem(
            "version_skew",
            None,
            "anvil_kubernetes_version %s is not a Kubernetes release of the versions manifest (vars/versions.yml "
            "holds %s): choose one of those, or add the release to the manifest and build it"
            % (cluster.get("kubernetes_version"), ", ".join(releases)),
        )
        return
    max_skew = int(cluster.get("max_kubelet_skew", 3))
    for name, host in sorted(_live_hosts(hosts).items()):
        installed = parse_version(host["facts"].get("kubelet_version"))
        if installed is None:
            continue
        if installed[:2] > target[:2]:
            report.problem(
                "version_skew",
                name,
                "installed kubelet v%d.%d.%d is newer than the target v%d.%d.%d: kubelets may not be newer than "
                "the API server" % (installed + target),
            )
        elif target[1] - installed[1] > max_skew or installed[0] != target[0]:
            report.problem(
                "version_skew",
                name,
                "installed kubelet v%d.%d.%d is more than %d minor versions older than the target v%d.%d.%d: "
                "upgrade one minor version at a time"
                % (installed[0], installed[1], installed[2], max_skew, target[0], target[1], target[2]),
            )
        elif installed[:2] != target[:2]:
            report.warn(
                "version_skew",
                name,
                "installed kubelet v%d.%d.%d differs from the target v%d.%d.%d: use the upgrade playbook to "
                "upgrade nodes" % (installed + target),
            )


# --- per-host checks -------------------------------------------------------------------------


def check_os_supported(cluster, hosts, report):
    supported = cluster.get("supported_os") or {}
    for name, host in sorted(_live_hosts(hosts).items()):
        osr = host["facts"].get("os") or {}
        os_id = osr.get("id", "")
        version = str(osr.get("version_id", ""))
        if os_id not in supported:
            report.problem(
                "os_supported",
                name,
                "operating system %r is not supported (supported: %s)"
                % (osr.get("pretty_name") or os_id or "unknown", ", ".join(sorted(supported))),
            )
        elif version not in [str(v) for v in supported[os_id]]:
            report.problem(
                "os_supported",
                name,
                "%s %s is not a supported version (supported: %s)"
                % (os_id, version or "(no VERSION_ID)", ", ".join(str(v) for v in supported[os_id])),
            )
        if host["facts"].get("cgroup_version") == 1:
            report.warn(
                "os_supported",
                name,
                "host uses cgroup v1 (deprecated by Kubernetes); the kubelet runs with failCgroupV1: false",
            )


def check_resources(cluster, hosts, report):
    minimums = cluster.get("min_resources") or {}
    for name, host in sorted(_live_hosts(hosts).items()):
        for role in _roles(name, cluster["groups"]) or ["worker"]:
            need = minimums.get(role) or {}
            cpus = host["facts"].get("cpus") or 0
            mem = host["facts"].get("memory_mb") or 0
            if cpus < need.get("cpus", 0):
                report.problem(
                    "resources", name, "%d CPUs, a %s needs at least %d" % (cpus, role.replace("_", " "), need["cpus"])
                )
            if mem < need.get("memory_mb", 0):
                report.problem(
                    "resources",
                    name,
                    "%d MiB memory, a %s needs at least %d MiB" % (mem, role.replace("_", " "), need["memory_mb"]),
                )


def check_swap(cluster, hosts, report):
    if cluster.get("allow_swap"):
        return
    for name, host in sorted(_live_hosts(hosts).items()):
        total = host["facts"].get("swap_total_mb") or 0
        if total > 0:
            report.problem(
                "swap",
                name,
                "swap is active (%d MiB): disable it (swapoff -a, remove it from /etc/fstab) or set "
                "anvil_allow_swap: true to run the kubelet with swap" % total,
            )


def check_kernel_features(cluster, hosts, report):
    wanted = list(cluster.get("kernel_features") or [])
    wanted += (cluster.get("cni_kernel_features") or {}).get(cluster.get("cni"), [])
    for name, host in sorted(_live_hosts(hosts).items()):
        states = host["facts"].get("kernel_features") or {}
        missing = [f for f in wanted if states.get(f, "unknown") == "missing"]
        unknown = [f for f in wanted if states.get(f, "unknown") == "unknown"]
        if missing:
            report.problem(
                "kernel_features",
                name,
                "kernel features missing (neither built in nor available as modules): %s" % ", ".join(missing),
            )
        if unknown:
            report.warn(
                "kernel_features",
                name,
                "could not determine kernel features (no kernel config or module list): %s" % ", ".join(unknown),
            )


def check_unique_identity(cluster, hosts, report):
    live = _live_hosts(hosts)
    for key, label in (("hostname", "host name"), ("machine_id", "machine-id")):
        seen = {}
        for name, host in sorted(live.items()):
            value = (host["facts"].get(key) or "").strip()
            if key == "machine_id" and not value:
                report.problem("unique_identity", name, "/etc/machine-id is empty: run systemd-machine-id-setup")
                continue
            seen.setdefault(value.lower() if key == "hostname" else value, []).append(name)
        for value, names in sorted(seen.items()):
            if len(names) > 1:
                report.problem(
                    "unique_identity",
                    None,
                    "hosts %s share the same %s %r: every node needs its own" % (", ".join(names), label, value),
                )
    seen = {}
    for name, host in sorted(hosts.items()):
        if host.get("node_ip"):
            seen.setdefault(str(host["node_ip"]), []).append(name)
    for value, names in sorted(seen.items()):
        if len(names) > 1:
            report.problem("unique_identity", None, "hosts %s share the same node IP %s" % (", ".join(names), value))


def check_node_ip(cluster, hosts, report):
    for name, host in sorted(_live_hosts(hosts).items()):
        node_ip = host.get("node_ip")
        addresses = [a.get("address") for a in host["facts"].get("ipv4") or []]
        if not node_ip:
            report.problem("node_ip", name, "no node IP: set anvil_node_ip or ansible_host to the host's address")
            continue
        if HAS_NETADDR:
            try:
                netaddr.IPAddress(str(node_ip))
            except (netaddr.AddrFormatError, ValueError):
                report.problem("node_ip", name, "node IP %r is not an IP address: set anvil_node_ip" % node_ip)
                continue
        if addresses and str(node_ip) not in addresses:
            report.problem(
                "node_ip",
                name,
                "node IP %s is not configured on the host (it has %s): set anvil_node_ip"
                % (node_ip, ", ".join(addresses)),
            )


def check_time_sync(cluster, hosts, report):
    skew = float(cluster.get("max_clock_skew", 30))
    for name, host in sorted(_live_hosts(hosts).items()):
        # The controller's clock just before and just after it probed this host.
        before = host.get("time_before", cluster.get("controller_time_before"))
        after = host.get("time_after", cluster.get("controller_time_after"))
        epoch = host["facts"].get("time_epoch")
        if epoch is None or before is None or after is None:
            continue
        epoch = float(epoch)
        if epoch < float(before) - skew or epoch > float(after) + skew:
            offset = epoch - float(before) if epoch < float(before) else epoch - float(after)
            report.problem(
                "time_sync",
                name,
                "clock is %+.0f s off the controller (allowed %d s): synchronise time (chrony/systemd-timesyncd)"
                % (offset, skew),
            )


def check_ports_free(cluster, hosts, report):
    ports = cluster.get("ports") or {}
    owners = set(cluster.get("port_owners") or [])
    for name, host in sorted(_live_hosts(hosts).items()):
        wanted = set(ports.get("all") or [])
        for role in _roles(name, cluster["groups"]):
            wanted |= set(ports.get(role) or [])
        listening = host["facts"].get("listening_ports") or {}
        for port in sorted(wanted):
            procs = listening.get(str(port))
            if procs is None:
                continue
            if host["facts"].get("joined") and procs and set(procs) <= owners:
                continue
            report.problem(
                "ports_free",
                name,
                "port %d is already in use by %s: stop it or move it"
                % (port, ", ".join(procs) or "an unknown process"),
            )


def check_mirror_reachable(cluster, hosts, report):
    for name, host in sorted(_live_hosts(hosts).items()):
        for key, label in (("mirror", "artifact mirror"), ("registry", "registry mirror")):
            probe = host["facts"].get(key)
            if probe and not probe.get("ok"):
                report.problem(
                    "mirror_reachable",
                    name,
                    "%s %s is not reachable from the host: %s" % (label, probe.get("url"), probe.get("error")),
                )


def check_registry_access(cluster, hosts, report):
    registries = cluster.get("registries") or []
    for registry in registries:
        if registry.get("ca_missing"):
            report.problem(
                "registry_access",
                None,
                "the CA file %s of registry %s does not exist on the controller: set its ca_file in anvil_registries, "
                "or run playbooks/registry.yml first (it writes the CA there)"
                % (registry.get("ca_file"), registry["host"]),
            )
    missing = {r["host"] for r in registries if r.get("ca_missing")}
    for name, host in sorted(_live_hosts(hosts).items()):
        for probe in host["facts"].get("registries") or []:
            if probe["host"] in missing:
                continue
            if not probe.get("ok"):
                report.problem(
                    "registry_access",
                    name,
                    "registry %s does not answer over TLS verified against its CA (%s): %s; check the address, "
                    "the port and that its certificate was signed by that CA"
                    % (probe["host"], probe["url"], probe.get("error")),
                )
            elif probe.get("auth") is False:
                report.problem(
                    "registry_access",
                    name,
                    "registry %s refused the username and password of anvil_registries (%s): fix the credentials"
                    % (probe["host"], probe.get("error")),
                )


def check_dns_resolver(cluster, hosts, report):
    for name, host in sorted(_live_hosts(hosts).items()):
        if not host["facts"].get("nameservers"):
            report.problem(
                "dns_resolver",
                name,
                "/etc/resolv.conf has no nameserver: CoreDNS forwards outside names to it; configure one",
            )


CHECK_FUNCTIONS = {
    "reachable": check_reachable,
    "inventory_groups": check_inventory_groups,
    "control_plane_quorum": check_control_plane_quorum,
    "cluster_name": check_cluster_name,
    "control_plane_endpoint": check_control_plane_endpoint,
    "cni": check_cni,
    "cni_ports_free": check_cni_ports_free,
    "network_cidrs": check_network_cidrs,
    "version_skew": check_version_skew,
    "os_supported": check_os_supported,
    "resources": check_resources,
    "swap": check_swap,
    "kernel_features": check_kernel_features,
    "unique_identity": check_unique_identity,
    "node_ip": check_node_ip,
    "time_sync": check_time_sync,
    "ports_free": check_ports_free,
    "mirror_reachable": check_mirror_reachable,
    "dns_resolver": check_dns_resolver,
    "registry_access": check_registry_access,
}


def evaluate(hosts, cluster=None, skip=None):
    """Run every check not skipped; return {'problems', 'warnings', 'checks', 'skipped'}.

    hosts: {inventory name: {'facts': <preflight_facts result> or None, 'unreachable': bool,
            'error': str, 'node_ip': str}}
    cluster: settings (see DEFAULTS); missing keys take the defaults.
    skip: names of checks to skip.
    """
    settings = dict(DEFAULTS)
    settings.update({k: v for k, v in (cluster or {}).items() if v is not None})
    settings["groups"] = dict(DEFAULTS["groups"], **(settings.get("groups") or {}))
    skip = list(skip or [])
    report = Report()
    unknown = sorted(set(skip) - set(CHECKS))
    if unknown:
        report.problem(
            "preflight",
            None,
            "unknown check name(s) in preflight_skip_checks: %s (valid: %s)" % (", ".join(unknown), ", ".join(CHECKS)),
        )
    if set(CHECKS) <= set(skip):
        report.problem(
            "preflight", None, "preflight_skip_checks names every check: skipping all preflight checks is not allowed"
        )
    ran = []
    for name, func in CHECK_FUNCTIONS.items():
        if name in skip:
            continue
        func(settings, hosts or {}, report)
        ran.append(name)
    return {
        "problems": report.problems,
        "warnings": report.warnings,
        "checks": ran,
        "skipped": [name for name in CHECKS if name in skip],
    }


def format_problems(problems):
    """One line per problem, grouped by host, for the failure message."""
    lines = []
    for item in problems:
        where = item["host"] or "inventory"
        lines.append("[%s] %s: %s" % (item["check"], where, item["message"]))
    return lines
