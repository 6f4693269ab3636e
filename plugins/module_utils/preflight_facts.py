# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only probes of one host for the preflight checks (standard library only).

Every function takes the raw text of a /proc or /sys file (or a path root for tests) and returns
plain data, so the parsing is unit-testable and the module that calls it stays thin. Nothing here
changes the host: no modprobe, no sysctl writes. Kernel features and modules are judged in
host_probe (kernel_probe, feature_states), the same code the host_state module uses.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import socket

from ansible_collections.anvil.cluster.plugins.module_utils.host_probe import read_text

TCP_LISTEN = "0A"
# A bound UDP socket (st 07, TCP_CLOSE: UDP has no LISTEN state).
UDP_BOUND = "07"


def parse_os_release(text):
    """/etc/os-release -> dict with lower-case keys (id, version_id, id_like as a list, ...)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip().strip('"').strip("'")
        out[key.strip().lower()] = value
    out["id_like"] = out.get("id_like", "").split()
    return out


def parse_meminfo(text):
    """/proc/meminfo -> {'MemTotal': kB, ...}."""
    out = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+(?:\(\w+\))?):\s+(\d+)", line)
        if match:
            out[match.group(1)] = int(match.group(2))
    return out


def parse_listening_tcp(text, state=None):
    """/proc/net/tcp or tcp6 text -> list of (port, socket inode) for sockets in LISTEN state.

    With /proc/net/udp text and ``state=UDP_BOUND`` -> the bound UDP sockets (a kernel socket, such as a
    VXLAN device's, has inode 0: no process owns it)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != (state or TCP_LISTEN):
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        out.append((port, fields[9]))
    return out


def parse_ipv4_addresses(text):
    """Output of `ip -o -4 addr show` -> list of {'interface', 'address', 'prefix'}."""
    out = []
    for line in text.splitlines():
        match = re.match(r"^\d+:\s+(\S+)\s+inet\s+([\d.]+)/(\d+)", line)
        if match:
            out.append({"interface": match.group(1), "address": match.group(2), "prefix": int(match.group(3))})
    return out


def parse_resolv_conf(text):
    return [
        line.split()[1] for line in text.splitlines() if line.strip().startswith("nameserver") and len(line.split()) > 1
    ]


def listening_ports(root="/", protocol="tcp"):
    """{port: [process names]} for every TCP port in LISTEN state (IPv4 and IPv6), or with
    ``protocol="udp"`` every bound UDP port ([] when only the kernel holds it, e.g. a VXLAN device)."""
    sockets = {}
    kernel = set()
    state = UDP_BOUND if protocol == "udp" else TCP_LISTEN
    for name in ("proc/net/%s" % protocol, "proc/net/%s6" % protocol):
        for port, inode in parse_listening_tcp(read_text(os.path.join(root, name), "") or "", state):
            if inode == "0":
                kernel.add(port)
            else:
                sockets.setdefault(inode, port)
    owners = {}
    proc = os.path.join(root, "proc")
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        comm = (read_text(os.path.join(proc, pid, "comm"), "") or "").strip()
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            match = re.match(r"^socket:\[(\d+)\]$", target)
            if match and match.group(1) in sockets:
                owners.setdefault(sockets[match.group(1)], set()).add(comm)
    result = dict((port, set()) for port in kernel)
    for port in sockets.values():
        result.setdefault(port, set()).update(owners.get(port, set()))
    return {port: sorted(names) for port, names in result.items()}


def cni_configs(directory="/etc/cni/net.d"):
    """Names of the CNI configuration files a host has (which CNI a joined node runs)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n for n in names if n.endswith((".conf", ".conflist", ".json")))


def host_identity():
    return {"hostname": socket.gethostname(), "fqdn": socket.getfqdn()}
