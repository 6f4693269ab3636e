# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only probes of one host for the preflight checks (standard library only).

Every function takes the raw text of a /proc or /sys file (or a path root for tests) and returns
plain data, so the parsing is unit-testable and the module that calls it stays thin. Nothing here
changes the host: no modprobe, no sysctl writes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import re
import socket

# Kernel features Kubernetes nodes need: name -> (Kconfig symbols, any of which is enough; module
# name; a /proc or /sys path whose presence proves the feature is active).
KERNEL_FEATURES = {
    "overlay": (("CONFIG_OVERLAY_FS",), "overlay", None),
    "br_netfilter": (("CONFIG_BRIDGE_NETFILTER",), "br_netfilter", "/proc/sys/net/bridge"),
    "bridge": (("CONFIG_BRIDGE",), "bridge", None),
    "veth": (("CONFIG_VETH",), "veth", None),
    "nf_conntrack": (("CONFIG_NF_CONNTRACK",), "nf_conntrack", "/proc/sys/net/netfilter/nf_conntrack_max"),
    "netfilter_nat": (("CONFIG_NF_NAT", "CONFIG_IP_NF_NAT", "CONFIG_NFT_NAT"), "nf_nat", None),
    "iptables": (("CONFIG_NF_TABLES", "CONFIG_IP_NF_IPTABLES"), "nf_tables", None),
    "vxlan": (("CONFIG_VXLAN",), "vxlan", None),
    # Needed only by some choices (kube-proxy IPVS mode, IPIP/WireGuard CNIs, Kube-OVN's datapath).
    "ip_vs": (("CONFIG_IP_VS",), "ip_vs", "/proc/net/ip_vs"),
    "ipip": (("CONFIG_NET_IPIP",), "ipip", None),
    "wireguard": (("CONFIG_WIREGUARD",), "wireguard", None),
    "openvswitch": (("CONFIG_OPENVSWITCH",), "openvswitch", None),
}

TCP_LISTEN = "0A"


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


def parse_kconfig(text, symbols):
    """Kernel .config text -> {symbol: 'y'|'m'} for the requested symbols that are set."""
    wanted = set(symbols)
    out = {}
    for line in text.splitlines():
        match = re.match(r"^(CONFIG_\w+)=(y|m)$", line.strip())
        if match and match.group(1) in wanted:
            out[match.group(1)] = match.group(2)
    return out


def module_names(text):
    """modules.builtin / modules.dep text -> set of module names (dashes normalised to underscores)."""
    names = set()
    for line in text.splitlines():
        path = line.split(":", 1)[0].strip()
        if not path:
            continue
        base = os.path.basename(path)
        base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base)
        names.add(base.replace("-", "_"))
    return names


def parse_listening_tcp(text):
    """/proc/net/tcp or tcp6 text -> list of (port, socket inode) for sockets in LISTEN state."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
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


def _read(path, default=None):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt") as handle:
                return handle.read()
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def kernel_probe(root="/", release=None):
    """Raw kernel facts: which Kconfig symbols are set, which modules are loaded/built in/available."""
    release = release or os.uname()[2]
    symbols = sorted({s for feature in KERNEL_FEATURES.values() for s in feature[0]})
    config_text = _read(os.path.join(root, "proc/config.gz")) or _read(os.path.join(root, "boot/config-" + release))
    moddir = os.path.join(root, "lib/modules", release)
    builtin_text = _read(os.path.join(moddir, "modules.builtin"))
    dep_text = _read(os.path.join(moddir, "modules.dep"))
    sys_module = os.path.join(root, "sys/module")
    loaded = set()
    for feature in KERNEL_FEATURES.values():
        if os.path.isdir(os.path.join(sys_module, feature[1])):
            loaded.add(feature[1])
    active_paths = {}
    for name, feature in KERNEL_FEATURES.items():
        if feature[2]:
            active_paths[name] = os.path.exists(os.path.join(root, feature[2].lstrip("/")))
    filesystems = _read(os.path.join(root, "proc/filesystems"), "")
    return {
        "config_available": config_text is not None,
        "config": parse_kconfig(config_text or "", symbols),
        "modules_supported": os.path.exists(os.path.join(root, "proc/modules")),
        "modules_builtin": sorted(module_names(builtin_text)) if builtin_text is not None else None,
        "modules_available": sorted(module_names(dep_text)) if dep_text is not None else None,
        "modules_loaded": sorted(loaded),
        "active": active_paths,
        "filesystems": sorted({line.split()[-1] for line in filesystems.splitlines() if line.strip()}),
    }


def feature_states(probe):
    """Kernel probe -> {feature: 'active'|'builtin'|'module'|'missing'|'unknown'}.

    'module' means the feature is a loadable module that os_prepare will load; 'unknown' means the
    host exposes neither a kernel config nor module lists, so nothing can be concluded.
    """
    states = {}
    builtin = set(probe.get("modules_builtin") or [])
    available = set(probe.get("modules_available") or [])
    loaded = set(probe.get("modules_loaded") or [])
    config = probe.get("config") or {}
    for name, (symbols, module, _path) in KERNEL_FEATURES.items():
        if probe.get("active", {}).get(name) or module in loaded:
            states[name] = "active"
        elif name == "overlay" and "overlay" in probe.get("filesystems", []):
            states[name] = "active"
        elif any(config.get(s) == "y" for s in symbols) or module in builtin:
            states[name] = "builtin"
        elif (any(config.get(s) == "m" for s in symbols) or module in available) and probe.get("modules_supported"):
            states[name] = "module"
        elif probe.get("config_available") or probe.get("modules_builtin") is not None:
            states[name] = "missing"
        else:
            states[name] = "unknown"
    return states


def listening_ports(root="/"):
    """{port: [process names]} for every TCP port in LISTEN state (IPv4 and IPv6)."""
    sockets = {}
    for name in ("proc/net/tcp", "proc/net/tcp6"):
        for port, inode in parse_listening_tcp(_read(os.path.join(root, name), "") or ""):
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
        comm = (_read(os.path.join(proc, pid, "comm"), "") or "").strip()
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            match = re.match(r"^socket:\[(\d+)\]$", target)
            if match and match.group(1) in sockets:
                owners.setdefault(sockets[match.group(1)], set()).add(comm)
    result = {}
    for port in sockets.values():
        result.setdefault(port, set()).update(owners.get(port, set()))
    return {port: sorted(names) for port, names in result.items()}


def host_identity():
    return {"hostname": socket.gethostname(), "fqdn": socket.getfqdn()}
