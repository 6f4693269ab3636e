# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only host state beyond paths: installed packages, systemd units, kernel parameters and modules.

The host_state module reports these in the same round trip as the paths, so that a role can skip its
package, service, sysctl and modprobe tasks on a host that already has what it wants. Without it, each
of those tasks costs a module run per host on every re-run (ansible.builtin.package alone opens the apt
cache, about a second). The parsing functions are pure (text in, data out) and unit-tested; the
modules do the reading.

Kernel features and modules are judged here, once, for both the host_state module (os_prepare decides
whether to modprobe) and the preflight_facts module (preflight decides whether a host is fit), in one
vocabulary (see feature_states): active, builtin, module, missing, unknown.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import re

SERVICE_PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState")


def parse_dpkg_status(text):
    """{package name: version} of the packages dpkg lists as installed in /var/lib/dpkg/status text."""
    installed = {}
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _sep, value = line.partition(":")
            fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if name and fields.get("Status", "").endswith(" installed"):
            installed[name] = fields.get("Version", "")
    return installed


def missing_packages(wanted, installed):
    """The wanted names (an optional ':arch' or '=version' suffix is ignored) that are not installed."""
    missing = []
    for name in wanted:
        base = str(name).split("=", 1)[0].split(":", 1)[0]
        if base not in installed and name not in missing:
            missing.append(name)
    return missing


def parse_systemctl_show(text, units):
    """Map `systemctl show --property=Id,LoadState,ActiveState,UnitFileState U1 U2 ...` output to units.

    systemctl prints one block per unit, in the order asked, separated by empty lines. Returns
    {unit as asked: {'load': ..., 'active': ..., 'unit_file': ...}}; a unit systemd does not know has
    load 'not-found'.
    """
    blocks = [block for block in text.strip().split("\n\n") if block.strip()]
    states = {}
    for index, unit in enumerate(units):
        fields = {}
        if index < len(blocks):
            for line in blocks[index].splitlines():
                key, _sep, value = line.partition("=")
                fields[key] = value
        states[unit] = {
            "load": fields.get("LoadState", "not-found"),
            "active": fields.get("ActiveState", "inactive"),
            "unit_file": fields.get("UnitFileState", ""),
        }
    return states


def normalize_sysctl(value):
    """Kernel parameter values compared with whitespace normalised (multi-value ones print tab-separated)."""
    return " ".join(str(value).split())


def sysctl_path(key):
    """/proc/sys path of a kernel parameter name ('net.ipv4.ip_forward' or 'net/ipv4/ip_forward')."""
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def differing_sysctls(wanted, read_fn):
    """{key: live value or None when unreadable} for the wanted parameters whose live value differs."""
    differing = {}
    for key, value in wanted.items():
        live = read_fn(sysctl_path(key))
        if live is None or normalize_sysctl(live) != normalize_sysctl(value):
            differing[key] = None if live is None else normalize_sysctl(live)
    return differing


# Kernel features Kubernetes nodes need: name -> (Kconfig symbols, any of which is enough; module
# name; a /proc or /sys path whose presence proves the feature is active). A name not listed here is
# taken as a plain module name (no Kconfig symbols, no proof path).
KERNEL_FEATURES = {
    "overlay": (("CONFIG_OVERLAY_FS",), "overlay", None),
    "br_netfilter": (("CONFIG_BRIDGE_NETFILTER",), "br_netfilter", "/proc/sys/net/bridge"),
    "bridge": (("CONFIG_BRIDGE",), "bridge", None),
    "veth": (("CONFIG_VETH",), "veth", None),
    "nf_conntrack": (("CONFIG_NF_CONNTRACK",), "nf_conntrack", "/proc/sys/net/netfilter/nf_conntrack_max"),
    "netfilter_nat": (("CONFIG_NF_NAT", "CONFIG_IP_NF_NAT", "CONFIG_NFT_NAT"), "nf_nat", None),
    "iptables": (("CONFIG_NF_TABLES", "CONFIG_IP_NF_IPTABLES"), "nf_tables", None),
    "vxlan": (("CONFIG_VXLAN",), "vxlan", None),
    # IP sets and the iptables set match (Calico's policy dataplane).
    "ip_set": (("CONFIG_IP_SET",), "ip_set", None),
    "xt_set": (("CONFIG_NETFILTER_XT_SET",), "xt_set", None),
    # Needed only by some choices (kube-proxy IPVS mode, IPIP/WireGuard CNIs, Kube-OVN's datapath).
    "ip_vs": (("CONFIG_IP_VS",), "ip_vs", "/proc/net/ip_vs"),
    "ipip": (("CONFIG_NET_IPIP",), "ipip", None),
    "wireguard": (("CONFIG_WIREGUARD",), "wireguard", None),
    "openvswitch": (("CONFIG_OPENVSWITCH",), "openvswitch", None),
}


def kernel_feature(name):
    """(Kconfig symbols, module name, proof path) of a feature or plain module name."""
    return KERNEL_FEATURES.get(name) or ((), str(name).replace("-", "_"), None)


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


def read_text(path, default=None):
    """The text of a file (a .gz file decompressed), or ``default`` when it cannot be read."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt") as handle:
                return handle.read()
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def kernel_probe(root="/", release=None, names=None):
    """Raw kernel facts for the features of KERNEL_FEATURES plus the module names in names: which Kconfig
    symbols are set, which modules are loaded, built in or available."""
    release = release or os.uname()[2]
    features = dict(KERNEL_FEATURES)
    features.update((n, kernel_feature(n)) for n in names or () if n not in features)
    symbols = sorted({s for feature in features.values() for s in feature[0]})
    config_text = read_text(os.path.join(root, "proc/config.gz")) or read_text(
        os.path.join(root, "boot/config-" + release)
    )
    moddir = os.path.join(root, "lib/modules", release)
    builtin_text = read_text(os.path.join(moddir, "modules.builtin"))
    dep_text = read_text(os.path.join(moddir, "modules.dep"))
    sys_module = os.path.join(root, "sys/module")
    loaded = set()
    for feature in features.values():
        if os.path.isdir(os.path.join(sys_module, feature[1])):
            loaded.add(feature[1])
    active_paths = {}
    for name, feature in features.items():
        if feature[2]:
            active_paths[name] = os.path.exists(os.path.join(root, feature[2].lstrip("/")))
    filesystems = read_text(os.path.join(root, "proc/filesystems"), "")
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


def feature_states(probe, names=None):
    """Kernel probe -> {feature or module: state} for names (default: every feature of KERNEL_FEATURES).

    The one vocabulary of kernel states:
      active   loaded, or in use (its /sys/module entry, its /proc path, overlay in /proc/filesystems)
      builtin  built into the kernel (Kconfig =y, or listed in modules.builtin)
      module   a loadable module this kernel can load (Kconfig =m or modules.dep, and /proc/modules
               exists); os_prepare loads it
      missing  none of these, while the kernel config or module lists are readable
      unknown  the host exposes neither a kernel config nor module lists: nothing can be concluded
    """
    states = {}
    builtin = set(probe.get("modules_builtin") or [])
    available = set(probe.get("modules_available") or [])
    loaded = set(probe.get("modules_loaded") or [])
    config = probe.get("config") or {}
    for name in KERNEL_FEATURES if names is None else names:
        symbols, module, _path = kernel_feature(name)
        if probe.get("active", {}).get(name) or module in loaded:
            states[name] = "active"
        elif module == "overlay" and "overlay" in probe.get("filesystems", []):
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


def kernel_module_states(names, root="/", release=None):
    """{name: state} (see feature_states) for kernel modules or feature names, read from this host."""
    return feature_states(kernel_probe(root, release, names), names)
