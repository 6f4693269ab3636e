"""host_probe: packages, systemd units, kernel parameters and modules read in the host_state pass."""

from __future__ import annotations

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils import host_probe as hp

DPKG_STATUS = """\
Package: containerd
Status: install ok installed
Priority: optional
Version: 1.6.20~ds1-1+b1
Description: daemon to control runC
 multi-line description: with a colon

Package: runc
Status: deinstall ok config-files
Version: 1.1.5+ds1-1

Package: haproxy
Status: install ok half-configured
Version: 2.6.12-1

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9
"""


def test_parse_dpkg_status_keeps_only_installed_packages():
    installed = hp.parse_dpkg_status(DPKG_STATUS)
    # runc left only config files, haproxy is half-configured: neither counts as installed.
    assert installed == {"containerd": "1.6.20~ds1-1+b1", "libc6": "2.36-9"}


@pytest.mark.parametrize(
    ("wanted", "missing"),
    [
        (["containerd", "libc6"], []),
        (["containerd", "runc", "haproxy"], ["runc", "haproxy"]),
        (["libc6:amd64", "containerd=1.6.20~ds1-1+b1"], []),
        (["runc", "runc"], ["runc"]),
        ([], []),
    ],
)
def test_missing_packages(wanted, missing):
    assert hp.missing_packages(wanted, hp.parse_dpkg_status(DPKG_STATUS)) == missing


SYSTEMCTL_SHOW = """\
Id=containerd.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=kubelet.service
LoadState=loaded
ActiveState=activating
UnitFileState=disabled

Id=nothere.service
LoadState=not-found
ActiveState=inactive
UnitFileState=
"""


def test_parse_systemctl_show_maps_blocks_to_units_in_order():
    states = hp.parse_systemctl_show(SYSTEMCTL_SHOW, ["containerd", "kubelet", "nothere"])
    assert states == {
        "containerd": {"load": "loaded", "active": "active", "unit_file": "enabled"},
        "kubelet": {"load": "loaded", "active": "activating", "unit_file": "disabled"},
        "nothere": {"load": "not-found", "active": "inactive", "unit_file": ""},
    }


def test_parse_systemctl_show_missing_block_counts_as_unknown_unit():
    states = hp.parse_systemctl_show(
        "Id=a.service\nLoadState=loaded\nActiveState=active\nUnitFileState=static\n", ["a", "b"]
    )
    assert states["a"]["unit_file"] == "static"
    assert states["b"] == {"load": "not-found", "active": "inactive", "unit_file": ""}


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        ("net/ipv4/conf/eth0.100/rp_filter", "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"),
    ],
)
def test_sysctl_path(key, path):
    assert hp.sysctl_path(key) == path


def test_differing_sysctls_normalises_whitespace_and_reports_unreadable():
    live = {
        "/proc/sys/net/ipv4/ip_forward": "1\n",
        "/proc/sys/net/ipv4/ip_local_port_range": "32768\t60999\n",
        "/proc/sys/fs/inotify/max_user_instances": "128\n",
    }
    wanted = {
        "net.ipv4.ip_forward": 1,
        "net.ipv4.ip_local_port_range": "32768 60999",
        "fs.inotify.max_user_instances": 8192,
        "net.bridge.bridge-nf-call-iptables": 1,
    }
    assert hp.differing_sysctls(wanted, live.get) == {
        "fs.inotify.max_user_instances": "128",
        "net.bridge.bridge-nf-call-iptables": None,
    }


def _host(root, paths=(), files=None):
    """A host's root file system under root: directories for paths, files with content."""
    for path in paths:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, text in (files or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return str(root)


# The same vocabulary as the preflight checks (active, builtin, module, missing, unknown): one
# implementation (feature_states) serves os_prepare's modprobe decision and preflight's judgement.
@pytest.mark.parametrize(
    ("name", "paths", "files", "state"),
    [
        ("br_netfilter", ["/sys/module/br_netfilter"], {"/sys/module/br_netfilter/initstate": "live\n"}, "active"),
        ("nf-conntrack", ["/sys/module/nf_conntrack"], {}, "active"),
        ("overlay", [], {"/lib/modules/6.1.0/modules.builtin": "kernel/fs/overlayfs/overlay.ko\n"}, "builtin"),
        ("br_netfilter", ["/proc/sys/net/bridge"], {}, "active"),
        ("overlay", [], {"/proc/filesystems": "nodev\tsysfs\nnodev\toverlay\n"}, "active"),
        # Nothing readable about the kernel: no conclusion.
        ("overlay", [], {"/proc/filesystems": "nodev\tsysfs\n"}, "unknown"),
        ("ip_vs", [], {"/lib/modules/6.1.0/modules.builtin": "kernel/x/not_ip_vs.ko\n"}, "missing"),
        (
            "vxlan",
            [],
            {"/proc/modules": "", "/lib/modules/6.1.0/modules.dep": "kernel/drivers/net/vxlan/vxlan.ko.xz:\n"},
            "module",
        ),
        # Listed as a module, but this kernel cannot load modules (no /proc/modules).
        (
            "vxlan",
            [],
            {
                "/lib/modules/6.1.0/modules.builtin": "",
                "/lib/modules/6.1.0/modules.dep": "kernel/drivers/net/vxlan/vxlan.ko:\n",
            },
            "missing",
        ),
    ],
)
def test_kernel_module_states(tmp_path, name, paths, files, state):
    root = _host(tmp_path, paths, files)
    assert hp.kernel_module_states([name], root=root, release="6.1.0") == {name: state}
