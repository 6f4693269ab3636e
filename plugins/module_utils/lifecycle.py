# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node lifecycle logic: which hosts are new, whether a control plane may go, what a reset removes.

Pure logic (no AnsibleModule, no I/O): the playbooks gather plain data (node lists, etcd member lists,
`iptables-save` output, /proc/mounts, ...) on the hosts and the filters in plugins/filter/lifecycle.py
call these functions on the controller, so every decision here is unit-tested without a cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import shlex

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"

# Netfilter objects Kubernetes components create: kube-proxy and the kubelet (KUBE-*), the CNI reference
# plugins bridge/portmap/firewall (CNI-*), flannel (FLANNEL-*), Calico's felix (cali-*). Nothing else is
# ever touched by a reset.
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-", "FLANNEL", "cali-")
# Rules that live in built-in chains without jumping to an owned chain, recognised by the comment their
# creator writes (older flannel releases put their masquerade rules straight into POSTROUTING).
OWNED_RULE_COMMENTS = ("flanneld masq", "flanneld forward")
# nftables tables created by kube-proxy's nftables mode, flannel's nftables mode and felix's nftables mode.
OWNED_NFT_TABLE_PREFIXES = ("kube-proxy", "flannel", "calico")
# Network links created by the CNI plugins and kube-proxy, and the host ends of Calico's pod veths
# ("cali" + 11 hexadecimal characters of a hash of the pod's endpoint).
OWNED_LINKS = (
    "cni0",
    "flannel.1",
    "flannel-v6.1",
    "kube-ipvs0",
    "kube-bridge",
    "cbr0",
    "vxlan.calico",
    "vxlan-v6.calico",
)
OWNED_LINK_PATTERN = re.compile(r"^cali[0-9a-f]{11}$")
# Routes felix programs (its route protocol number): blackhole routes of the node's address blocks and
# routes to pods; the routes through vxlan.calico go with the device.
FELIX_ROUTE_PROTOCOL = "80"

RESET_PATHS = (
    "/etc/kubernetes",
    "/var/lib/kubelet",
    "/var/lib/etcd",
    "/var/lib/cni",
    "/run/flannel",
    "/var/lib/calico",
    "/var/run/calico",
    "/var/log/calico",
    "/run/kubernetes",
    "/root/.kube/config",
    "/etc/default/kubelet",
    "/etc/systemd/system/kubelet.service",
    "/etc/systemd/system/kubelet.service.d",
)
RESET_MOUNT_PREFIXES = ("/var/lib/kubelet",)


class LifecycleError(ValueError):
    """Input the playbook should never pass (a bug or a corrupt observation)."""


# ---------------------------------------------------------------------------------------------------------
# etcd quorum and control-plane removal
# ---------------------------------------------------------------------------------------------------------


def quorum(members):
    """Votes an etcd cluster of `members` voting members needs to commit anything."""
    if members < 1:
        raise LifecycleError("an etcd cluster has at least one member, got %d" % members)
    return members // 2 + 1


def fault_tolerance(members):
    """How many members may fail while the cluster keeps a quorum."""
    return members - quorum(members)


def _member_name(member):
    return member.get("name") or ""


def plan_control_plane_removal(control_planes, members, removing):
    """Decide whether the control planes in `removing` can leave, one after the other.

    control_planes: names of the control-plane nodes the cluster has now (Node objects with the
        control-plane label, or the inventory group when the API does not answer).
    members: etcd members, dicts with `name`, `id` and `healthy` (bool; False when unreachable).
        Learners (`is_learner`) do not vote and are not counted.
    removing: control-plane node names to remove, in order.

    Returns {"ok", "problems", "warnings", "steps"}; steps list {"node", "member_id", "member_name",
    "healthy"} for members to remove (a node whose member is already gone needs no etcd step). The
    rule: removing a member is a membership change that the current members must commit, so the
    current healthy voters must reach the current quorum; afterwards the remaining healthy voters
    must reach the new, smaller quorum, or etcd (and the API) stops serving.
    """
    problems = []
    warnings = []
    steps = []
    remaining_cps = list(control_planes)
    voters = [dict(m) for m in members if not m.get("is_learner")]
    for node in removing:
        if node not in remaining_cps:
            if any(_member_name(m) == node for m in voters):
                # An etcd member without a Node object (e.g. a half-removed control plane).
                pass
            else:
                # Already gone (or not a control plane): nothing to decide for this node.
                continue
        others = [cp for cp in remaining_cps if cp != node]
        if not others:
            problems.append(
                "refusing to remove %s: it is the last control plane of the cluster; removing it would "
                "destroy the cluster (use playbooks/reset.yml on every host to tear a cluster down)" % node
            )
            break
        member = next((m for m in voters if _member_name(m) == node), None)
        if member is not None:
            total = len(voters)
            healthy = sum(1 for m in voters if m.get("healthy"))
            need_now = quorum(total)
            if healthy < need_now:
                problems.append(
                    "refusing to remove %s: etcd has %d of %d members healthy, below its quorum of %d, so it "
                    "cannot commit a membership change; bring members back first (unhealthy: %s)"
                    % (
                        node,
                        healthy,
                        total,
                        need_now,
                        ", ".join(sorted(_member_name(m) or str(m.get("id")) for m in voters if not m.get("healthy"))),
                    )
                )
                break
            after_total = total - 1
            after_healthy = healthy - (1 if member.get("healthy") else 0)
            if after_total < 1:
                problems.append("refusing to remove %s: it is the only etcd member" % node)
                break
            need_after = quorum(after_total)
            if after_healthy < need_after:
                problems.append(
                    "refusing to remove %s: afterwards etcd would have %d healthy of %d members, below its "
                    "quorum of %d, and the cluster would stop serving; repair the unhealthy members (%s) first"
                    % (
                        node,
                        after_healthy,
                        after_total,
                        need_after,
                        ", ".join(
                            sorted(
                                _member_name(m) or str(m.get("id"))
                                for m in voters
                                if not m.get("healthy") and m is not member
                            )
                        ),
                    )
                )
                break
            steps.append(
                {
                    "node": node,
                    "member_id": member.get("id"),
                    "member_name": _member_name(member),
                    "healthy": bool(member.get("healthy")),
                }
            )
            voters = [m for m in voters if m is not member]
            if after_total % 2 == 0:
                warnings.append(
                    "after removing %s etcd has %d members: an even count tolerates no more failures than %d "
                    "members do (fault tolerance %d); add a control plane to get back to an odd count"
                    % (node, after_total, after_total - 1, fault_tolerance(after_total))
                )
        remaining_cps = others
    return {"ok": not problems, "problems": problems, "warnings": warnings, "steps": steps}


def parse_etcd_members(member_list):
    """Normalise etcd's JSON member list (gRPC gateway `/v3/cluster/member/list` or `etcdctl -w json`).

    IDs stay strings (the gateway encodes uint64 as strings; etcdctl prints numbers).
    """
    out = []
    for raw in (member_list or {}).get("members", []) or []:
        out.append(
            {
                "id": str(raw.get("ID", raw.get("id", ""))),
                "name": raw.get("name", ""),
                "peer_urls": list(raw.get("peerURLs", []) or []),
                "client_urls": list(raw.get("clientURLs", []) or []),
                "is_learner": bool(raw.get("isLearner", False)),
            }
        )
    return out


def members_with_health(probe_results):
    """Members with `healthy` from the per-member results of probing etcd's /health endpoint.

    probe_results: Ansible loop results of the uri module, each with `item` (a member from
    parse_etcd_members), `status` and the body ({"health": "true"}) in `json` or, as etcd sends it
    as text/plain, in `content`. A member with no answer, another
    status, or no client URL (a member that never started) is unhealthy.
    """
    out = []
    for result in probe_results or []:
        member = dict(result.get("item") or {})
        body = result.get("json")
        if not isinstance(body, dict):
            # etcd answers /health as text/plain, so the uri module leaves the JSON in `content`.
            try:
                body = json.loads(result.get("content") or "{}")
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
        member["healthy"] = bool(
            not result.get("skipped") and result.get("status") == 200 and str(body.get("health")).lower() == "true"
        )
        out.append(member)
    return out


# ---------------------------------------------------------------------------------------------------------
# Which hosts are new
# ---------------------------------------------------------------------------------------------------------


def node_is_ready(node):
    for cond in (node.get("status") or {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def classify_hosts(requested, node_names, cluster_nodes):
    """Split the hosts an operator asked for into new ones and ones already in the cluster.

    requested: inventory host names (the play's hosts under --limit).
    node_names: inventory host name -> Kubernetes node name (host var `node_name`, default the host).
    cluster_nodes: Node objects (dicts) from the API.

    Returns {"new": [...], "present": [...], "not_ready": [...]} (host names; not_ready is a subset of
    present: registered but not Ready, which a re-run does not repair by joining again).
    """
    by_name = {}
    for node in cluster_nodes or []:
        by_name[((node.get("metadata") or {}).get("name"))] = node
    new, present, not_ready = [], [], []
    for host in requested:
        name = (node_names or {}).get(host) or host
        node = by_name.get(name)
        if node is None:
            new.append(host)
        else:
            present.append(host)
            if not node_is_ready(node):
                not_ready.append(host)
    return {"new": new, "present": present, "not_ready": not_ready}


def control_plane_nodes(cluster_nodes):
    return sorted(
        ((n.get("metadata") or {}).get("name"))
        for n in cluster_nodes or []
        if CONTROL_PLANE_LABEL in ((n.get("metadata") or {}).get("labels") or {})
    )


# ---------------------------------------------------------------------------------------------------------
# Reset: what Kubernetes created on a host
# ---------------------------------------------------------------------------------------------------------


def _owned_chain(name):
    return name.startswith(OWNED_CHAIN_PREFIXES)


_TARGET_RE = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")


def _rule_target(spec):
    match = _TARGET_RE.search(spec)
    return match.group(1) if match else None


def _rule_comment(spec):
    try:
        words = shlex.split(spec)
    except ValueError:
        return ""
    for i, word in enumerate(words[:-1]):
        if word == "--comment":
            return words[i + 1]
    return ""


def parse_iptables_save(text):
    """Parse `iptables-save` output into {table: {"chains": {name: policy}, "rules": [(chain, spec)]}}."""
    tables = {}
    current = None
    for lineno, line in enumerate((text or "").splitlines(), 1):
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = {"chains": {}, "rules": []}
            tables[line[1:]] = current
        elif line == "COMMIT":
            current = None
        elif current is None:
            raise LifecycleError("iptables-save line %d outside a table: %s" % (lineno, line))
        elif line.startswith(":"):
            parts = line[1:].split()
            current["chains"][parts[0]] = parts[1] if len(parts) > 1 else "-"
        elif line.startswith("-A "):
            parts = line.split(None, 2)
            current["rules"].append((parts[1], parts[2] if len(parts) > 2 else ""))
        else:
            raise LifecycleError("iptables-save line %d not understood: %s" % (lineno, line))
    return tables


def netfilter_cleanup(save_output):
    """Plan the removal of Kubernetes' iptables objects from one `iptables-save` (or ip6tables-save) dump.

    Returns {"script": text for `iptables-restore --noflush` (empty when nothing to do), "items": human
    readable list}. The script deletes, per table and atomically: rules in chains Kubernetes did not
    create that jump to (or go to) a chain it did, or that carry a flannel comment; then flushes and
    deletes the owned chains. Built-in chains, their policies and every other rule stay as they are
    (no flush: an operator's firewall and the SSH session survive).
    """
    tables = parse_iptables_save(save_output)
    script = []
    items = []
    for table in sorted(tables):
        data = tables[table]
        owned = [c for c, policy in data["chains"].items() if policy == "-" and _owned_chain(c)]
        owned_set = set(owned)
        deletes = []
        for chain, spec in data["rules"]:
            if chain in owned_set:
                continue
            target = _rule_target(spec)
            comment = _rule_comment(spec)
            if (target and target in owned_set) or (target and _owned_chain(target)) or comment in OWNED_RULE_COMMENTS:
                deletes.append((chain, spec))
        if not owned and not deletes:
            continue
        script.append("*%s" % table)
        for chain, spec in deletes:
            script.append("-D %s %s" % (chain, spec))
            items.append("%s: rule -A %s %s" % (table, chain, spec))
        for chain in owned:
            script.append("-F %s" % chain)
        for chain in owned:
            script.append("-X %s" % chain)
            count = sum(1 for c, _rule in data["rules"] if c == chain)
            items.append("%s: chain %s (%d rules)" % (table, chain, count))
        script.append("COMMIT")
    return {"script": "\n".join(script) + "\n" if script else "", "items": items}


def nft_cleanup(list_tables_output):
    """Owned nftables tables from `nft list tables` output, as "family name" strings."""
    out = []
    for line in (list_tables_output or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(OWNED_NFT_TABLE_PREFIXES):
            out.append("%s %s" % (parts[1], parts[2]))
    return out


def _unescape_mount(path):
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_to_unmount(proc_mounts, prefixes=RESET_MOUNT_PREFIXES):
    """Mount points at or under `prefixes`, deepest first (the order umount needs)."""
    found = []
    for line in (proc_mounts or "").splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        point = _unescape_mount(parts[1])
        for prefix in prefixes:
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
                break
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda p: (-p.count("/"), p))


def owned_links(link_names):
    return [name for name in link_names or [] if name in OWNED_LINKS or OWNED_LINK_PATTERN.match(name)]


def owned_routes(routes):
    """Routes felix created, from `ip -j route show proto 80` (which leaves the `protocol` key out, as
    it leaves `proto 80` out of its text: the filter says it), or from any route list with `protocol`,
    as `ip route del` arguments; the routes through Calico's own devices go with them and are left out."""
    out = []
    for route in routes or []:
        if str(route.get("protocol", FELIX_ROUTE_PROTOCOL)) not in (FELIX_ROUTE_PROTOCOL, "felix"):
            continue
        if route.get("dev") and (route["dev"] in OWNED_LINKS or OWNED_LINK_PATTERN.match(route["dev"])):
            continue
        args = ([route["type"]] if route.get("type") and route["type"] != "unicast" else []) + [route["dst"]]
        out.append(" ".join([*args, "proto", FELIX_ROUTE_PROTOCOL]))
    return out


def reset_plan(observed):
    """Everything a reset would remove from one host, from what the reset role observed on it.

    observed keys (all optional): candidate_paths (what a reset removes; default RESET_PATHS),
    existing_paths (those of them present on the host), iptables_save, ip6tables_save, nft_tables,
    links (names), routes (`ip -j route show proto 80`), proc_mounts, pods (CRI pod sandbox ids),
    control_plane_pods (those of them that are kubeadm's static control-plane pods: stopped last),
    containers (k8s.io containerd ids), images (k8s.io image refs), kubelet_active (bool).

    Returns {"empty": bool, "items": [...], "paths": [...], "mounts": [...], "links": [...], "routes": [...],
    "iptables": {...}, "ip6tables": {...}, "nft_tables": [...], "pods", "containers", "images",
    "stop_kubelet": bool}.
    """
    observed = observed or {}
    existing = set(observed.get("existing_paths") or [])
    paths = [p for p in (observed.get("candidate_paths") or RESET_PATHS) if p in existing]
    mounts = mounts_to_unmount(observed.get("proc_mounts", ""))
    links = owned_links(observed.get("links"))
    routes = owned_routes(observed.get("routes"))
    v4 = netfilter_cleanup(observed.get("iptables_save", ""))
    v6 = netfilter_cleanup(observed.get("ip6tables_save", ""))
    nft = nft_cleanup(observed.get("nft_tables", ""))
    pods = list(observed.get("pods") or [])
    static = [p for p in observed.get("control_plane_pods") or [] if p in pods]
    containers = list(observed.get("containers") or [])
    images = list(observed.get("images") or [])
    stop_kubelet = bool(observed.get("kubelet_active"))
    items = []
    if stop_kubelet:
        items.append("service: stop and disable kubelet")
    items += ["pod sandbox: %s" % p for p in pods]
    items += ["containerd k8s.io container: %s" % c for c in containers]
    items += ["containerd k8s.io image: %s" % i for i in images]
    items += ["mount: %s" % m for m in mounts]
    items += ["path: %s" % p for p in paths]
    items += ["link: %s" % name for name in links]
    items += ["route: %s" % r for r in routes]
    items += ["iptables %s" % i for i in v4["items"]]
    items += ["ip6tables %s" % i for i in v6["items"]]
    items += ["nftables table: %s" % t for t in nft]
    return {
        "empty": not items,
        "items": items,
        "paths": paths,
        "mounts": mounts,
        "links": links,
        "routes": routes,
        "iptables": v4,
        "ip6tables": v6,
        "nft_tables": nft,
        "pods": pods,
        "control_plane_pods": static,
        "containers": containers,
        "images": images,
        "stop_kubelet": stop_kubelet,
    }
