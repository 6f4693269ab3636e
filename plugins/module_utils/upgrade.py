# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade preflight: may a running cluster go to the target Kubernetes release, and in which order.

Pure logic (no Ansible imports): playbooks/upgrade.yml reads the API server's version and the Node objects
on the first control plane and the filter upgrade_preflight (plugins/filter/upgrade.py) calls `preflight()`
on the controller. Every refusal is named before anything changes: a target the versions manifest does not
hold, a downgrade, a skipped minor (the cluster's, or a node's kubelet), a NotReady node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def parse(version):
    """(major, minor, patch) of a release such as v1.35.4; None for anything else (pre-releases included)."""
    match = VERSION_RE.match(str(version or "").strip())
    return tuple(int(n) for n in match.groups()) if match else None


def _ready(node):
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _role(node):
    labels = (node.get("metadata") or {}).get("labels") or {}
    return "control_plane" if CONTROL_PLANE_LABEL in labels else "worker"


def preflight(target, held, server_version, nodes):
    """Judge an upgrade of the cluster to `target`.

    target: the Kubernetes version to upgrade to (anvil_kubernetes_version).
    held: the Kubernetes versions of the versions manifest (filter kubernetes_versions).
    server_version: the API server's gitVersion (`kubectl version -o json`), the cluster's version.
    nodes: the Node objects (`kubectl get nodes -o json`'s items); each node's kubelet version is read from
        status.nodeInfo.kubeletVersion.

    Returns {problems: [str], current, target, kind: none|patch|minor, plan: [{node, role, from, to}]}: the plan
    lists the nodes whose kubelet is not at the target, control planes first, each group by name.
    """
    problems = []
    want = parse(target)
    have = parse(server_version)
    held = [str(v) for v in held or []]
    if want is None:
        problems.append("the target %r is not a Kubernetes release version (vX.Y.Z)" % (target,))
    elif str(target) not in held:
        problems.append(
            "Kubernetes %s is not a release of the versions manifest (vars/versions.yml holds %s)"
            % (target, ", ".join(held) or "none")
        )
    if have is None:
        problems.append("the API server reports version %r, not a Kubernetes release version" % (server_version,))
    kind = "none"
    downgrade = want is not None and have is not None and want < have
    if want is not None and have is not None:
        if want[0] != have[0]:
            problems.append(
                "upgrades stay within a major version: the cluster runs %s, the target is %s" % (server_version, target)
            )
        elif want < have:
            problems.append(
                "the cluster runs %s, newer than the target %s: downgrades are refused (restore a backup taken at the "
                "older release instead)" % (server_version, target)
            )
        elif want[1] > have[1] + 1:
            problems.append(
                "the target %s skips minor 1.%d (the cluster runs %s): upgrade one minor at a time, to a 1.%d release "
                "first" % (target, have[1] + 1, server_version, have[1] + 1)
            )
        elif want[1] == have[1] + 1:
            kind = "minor"
        elif want > have:
            kind = "patch"
    plan = []
    for node in sorted(nodes or [], key=lambda n: (_role(n) != "control_plane", n["metadata"]["name"])):
        name = node["metadata"]["name"]
        kubelet = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
        if not _ready(node):
            problems.append(
                "node %s is NotReady: repair it (or remove it with remove_node.yml) before an upgrade" % name
            )
        version = parse(kubelet)
        if version is None:
            problems.append("node %s reports kubelet version %r, not a Kubernetes release version" % (name, kubelet))
            continue
        if want is None:
            continue
        if version > want and not downgrade:  # (a downgrade of the cluster is one problem, not one per node)
            problems.append(
                "node %s runs kubelet %s, newer than the target %s: downgrades are refused" % (name, kubelet, target)
            )
        elif version[0] == want[0] and version[1] < want[1] - 1:
            problems.append(
                "node %s runs kubelet %s: the target %s would skip a minor on it; upgrade it one minor at a time"
                % (name, kubelet, target)
            )
        if version != want:
            plan.append({"node": name, "role": _role(node), "from": kubelet, "to": str(target)})
    if kind == "none" and plan and not problems:
        kind = "patch" if all(parse(p["from"])[:2] == want[:2] for p in plan) else "minor"
    return {
        "problems": problems,
        "current": str(server_version),
        "target": str(target),
        "kind": kind,
        "plan": plan,
    }


def plan_lines(result):
    """The plan as lines for the run's output (which node, from which version to which)."""
    lines = ["cluster: %s -> %s (%s)" % (result["current"], result["target"], result["kind"])]
    if not result["plan"]:
        lines.append("every node already runs %s: nothing to upgrade" % result["target"])
    for step in result["plan"]:
        lines.append("%s (%s): %s -> %s" % (step["node"], step["role"].replace("_", " "), step["from"], step["to"]))
    return lines
