"""Host probes behind the preflight checks: parsing of /proc, /sys and kernel configuration."""

from __future__ import annotations

import gzip

from ansible_collections.anvil.cluster.plugins.module_utils import host_probe as hp
from ansible_collections.anvil.cluster.plugins.module_utils import preflight_facts as pf

PROC_NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 20 0
   1: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 20 0
   2: 0B0012C6:0016 0100A8C0:D431 01 00000000:00000000 02:000A7214 00000000     0        0 3333 2 0 20 4
"""


def test_listening_tcp_keeps_only_listen_state():
    assert pf.parse_listening_tcp(PROC_NET_TCP) == [(22, "1111"), (8443, "2222")]


def test_os_release():
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n# comment\n'
    osr = pf.parse_os_release(text)
    assert osr["id"] == "debian" and osr["version_id"] == "12" and osr["id_like"] == []
    assert pf.parse_os_release('ID=ubuntu\nID_LIKE="debian"\n')["id_like"] == ["debian"]


def test_meminfo_and_addresses_and_resolv():
    mem = pf.parse_meminfo("MemTotal:       4028440 kB\nSwapTotal:             0 kB\nActive(anon):  1 kB\n")
    assert mem["MemTotal"] == 4028440 and mem["SwapTotal"] == 0 and mem["Active(anon)"] == 1
    ip = (
        "1: lo    inet 127.0.0.1/8 scope host lo\n2: host0    inet 198.18.0.11/24 brd 198.18.0.255 scope global host0\n"
    )
    assert pf.parse_ipv4_addresses(ip)[1] == {"interface": "host0", "address": "198.18.0.11", "prefix": 24}
    assert pf.parse_resolv_conf("search x\nnameserver 10.0.0.2\nnameserver\n") == ["10.0.0.2"]


def _root(tmp_path, *, config=None, builtin=None, dep=None, modules=True, sys_modules=(), bridge_proc=False):
    release = "6.1.0-test"
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/filesystems").write_text("nodev\tsysfs\n\text4\n")
    if modules:
        (tmp_path / "proc/modules").write_text("")
    if config is not None:
        with gzip.open(tmp_path / "proc/config.gz", "wt") as handle:
            handle.write(config)
    moddir = tmp_path / "lib/modules" / release
    moddir.mkdir(parents=True)
    if builtin is not None:
        (moddir / "modules.builtin").write_text(builtin)
    if dep is not None:
        (moddir / "modules.dep").write_text(dep)
    for name in sys_modules:
        (tmp_path / "sys/module" / name).mkdir(parents=True)
    if bridge_proc:
        (tmp_path / "proc/sys/net/bridge").mkdir(parents=True)
    return hp.feature_states(hp.kernel_probe(str(tmp_path), release))


def test_kernel_without_modules_built_in_features(tmp_path):
    config = (
        "CONFIG_OVERLAY_FS=y\nCONFIG_BRIDGE=y\nCONFIG_BRIDGE_NETFILTER=y\nCONFIG_VXLAN=y\n# CONFIG_IP_VS is not set\n"
    )
    states = _root(tmp_path, config=config, modules=False, sys_modules=["bridge"], bridge_proc=True)
    assert states["overlay"] == "builtin"
    assert states["bridge"] == "active"
    assert states["br_netfilter"] == "active"
    assert states["vxlan"] == "builtin"
    assert states["veth"] == "missing"


def test_loadable_module_on_a_regular_host(tmp_path):
    dep = "kernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz\nkernel/net/bridge/br_netfilter.ko:\n"
    builtin = "kernel/fs/overlayfs/overlay.ko\n"
    states = _root(tmp_path, builtin=builtin, dep=dep)
    assert states["vxlan"] == "module"
    assert states["br_netfilter"] == "module"
    assert states["overlay"] == "builtin"
    assert states["veth"] == "missing"


def test_module_listed_but_kernel_cannot_load_modules_is_missing(tmp_path):
    states = _root(tmp_path, config="CONFIG_VXLAN=m\n", modules=False)
    assert states["vxlan"] == "missing"


def test_nothing_known_is_unknown(tmp_path):
    states = _root(tmp_path)
    assert states["overlay"] == "unknown"


def test_module_names_normalise():
    assert hp.module_names("kernel/net/nf-conntrack.ko.zst: x\n") == {"nf_conntrack"}
