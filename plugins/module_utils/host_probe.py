# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only host state beyond paths: installed packages, systemd units, kernel parameters and modules.

The paths_check module reports these in the same round trip as the paths, so that a role can skip its
package, service, sysctl and modprobe tasks on a host that already has what it wants. Without it, each
of those tasks costs a module run per host on every re-run (ansible.builtin.package alone opens the apt
cache, about a second). The functions here are pure (text in, data out) and unit-tested; the module
does the reading.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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


def module_state(name, exists, read):
    """'loaded', 'builtin' or 'absent' for a kernel module.

    exists(path) and read(path) (text or None) look at the host. A module built into the kernel may
    have no /sys/module entry (br_netfilter without parameters), so modules.builtin and the feature
    itself (/proc/sys/net/bridge, /proc/filesystems) are consulted too.
    """
    module = name.replace("-", "_")
    if exists("/sys/module/%s/initstate" % module):
        return "loaded"
    if exists("/sys/module/%s" % module):
        return "builtin"
    builtin = read("/lib/modules/%s/modules.builtin" % (read("/proc/sys/kernel/osrelease") or "").strip()) or ""
    if any(line.endswith("/%s.ko" % module) for line in builtin.splitlines()):
        return "builtin"
    if module == "br_netfilter" and exists("/proc/sys/net/bridge"):
        return "builtin"
    if module == "overlay" and "overlay" in (read("/proc/filesystems") or "").split():
        return "builtin"
    return "absent"
