# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd restore logic: the members a restore recreates, and whether a snapshot may be restored.

Pure logic (no I/O): restore.yml reads the control planes' etcd manifests, the snapshot's meta.json, its
checksum and the cluster CA's checksum on the hosts, and the filters in plugins/filter/etcd_backup.py call
these functions on the controller, so every refusal is unit-tested without a cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# <cluster>-<UTC time>-<node>, as the snapshot program on the control planes names them.
SNAPSHOT_NAME_RE = re.compile(
    r"^(?P<cluster>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<stamp>\d{8}T\d{6}Z)-(?P<node>[-a-zA-Z0-9.]+)$"
)
SNAPSHOT_FORMAT = 1


def parse_snapshot_name(name):
    """{cluster, stamp, node} of a snapshot name, or None when it is not one."""
    match = SNAPSHOT_NAME_RE.match(str(name or ""))
    if not match:
        return None
    return {"cluster": match.group("cluster"), "stamp": match.group("stamp"), "node": match.group("node")}


def _flags(command):
    flags = {}
    for arg in command or []:
        arg = str(arg)
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
    return flags


def etcd_member(host, manifest):
    """The member a control plane's etcd static pod runs: {host, name, peer_url, data_dir}.

    manifest: the parsed /etc/kubernetes/manifests/etcd.yaml (kubeadm writes every setting as --flag=value
    in the container's command).
    """
    try:
        container = next(c for c in manifest["spec"]["containers"] if c.get("name") == "etcd")
    except (KeyError, TypeError, StopIteration):
        raise ValueError("%s: the etcd manifest has no etcd container" % host) from None
    flags = _flags(list(container.get("command") or []) + list(container.get("args") or []))
    missing = [key for key in ("name", "initial-advertise-peer-urls", "data-dir") if not flags.get(key)]
    if missing:
        raise ValueError("%s: the etcd manifest sets no %s" % (host, ", ".join("--" + key for key in missing)))
    peer_urls = flags["initial-advertise-peer-urls"].split(",")
    return {"host": host, "name": flags["name"], "peer_url": peer_urls[0], "data_dir": flags["data-dir"]}


def restore_members(manifests):
    """Every control plane's member and the --initial-cluster value that recreates them all.

    manifests: {host: parsed etcd manifest}. Returns {members: [...], initial_cluster: "n1=url1,n2=url2"}
    in host order; two control planes claiming one member name or peer URL is an error.
    """
    members = [etcd_member(host, manifests[host]) for host in sorted(manifests)]
    for key in ("name", "peer_url"):
        seen = {}
        for member in members:
            if member[key] in seen:
                raise ValueError(
                    "%s and %s both run etcd member %s %s" % (seen[member[key]], member["host"], key, member[key])
                )
            seen[member[key]] = member["host"]
    return {
        "members": members,
        "initial_cluster": ",".join("%s=%s" % (m["name"], m["peer_url"]) for m in members),
    }


def snapshot_problems(name, meta, cluster, sha256, ca_sha256s):
    """Why a snapshot must not be restored (an empty list: it may).

    name: the snapshot asked for; meta: its meta.json; cluster: this inventory's cluster name; sha256: the
    checksum of the snapshot.db that was fetched; ca_sha256s: {control plane: checksum of its cluster CA}.
    A snapshot whose CA fingerprint differs comes from another cluster: its Secrets, tokens and node
    credentials belong to that cluster's keys.
    """
    problems = []
    if not isinstance(meta, dict):
        return ["%s has no readable meta.json: not a snapshot this collection took" % name]
    if meta.get("format") != SNAPSHOT_FORMAT:
        problems.append(
            "%s is in format %r; this collection reads format %d" % (name, meta.get("format"), SNAPSHOT_FORMAT)
        )
    if meta.get("name") != name:
        problems.append("%s: its meta.json names it %r" % (name, meta.get("name")))
    if not sha256 or sha256 != meta.get("sha256"):
        problems.append(
            "%s: snapshot.db is damaged or truncated (sha256 %s, taken as %s, %s bytes)"
            % (name, sha256 or "missing", meta.get("sha256"), meta.get("size"))
        )
    if meta.get("cluster") != cluster:
        problems.append("%s was taken of cluster %r, not of this cluster %r" % (name, meta.get("cluster"), cluster))
    differing = sorted(host for host, value in (ca_sha256s or {}).items() if value != meta.get("ca_sha256"))
    if differing:
        problems.append(
            "%s comes from another cluster: its cluster CA differs from the one on %s" % (name, ", ".join(differing))
        )
    return problems
