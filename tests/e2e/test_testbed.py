"""Acceptance checks of the testbed: machines behave like small, air-gapped bare-metal hosts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.ansible import run_playbook
from tests.helpers.images import busybox_image_tar
from tests.helpers.testbed import host_snapshot
from tools import testbed as tb

PING_PLAY = [{"name": "ping", "hosts": "all", "gather_facts": False, "tasks": [{"ansible.builtin.ping": {}}]}]
MIB = 1024 * 1024


def sh(testbed, name: str, cmd) -> str:
    return testbed.exec(name, cmd, check=True).stdout


def ping(inventory: Path, limit: str | None = None):
    return run_playbook(PING_PLAY, inventory=inventory, limit=limit, timeout=300)


def reachable_hosts(result) -> set[str]:
    stats = result.stats.items()
    return {h for h, s in stats if s.get("ok", 0) > 0 and not s.get("unreachable") and not s.get("failures")}


# --- lifecycle (run first: see conftest) ------------------------------------------------------------


@pytest.mark.testbed_lifecycle
def test_down_leaves_nothing_and_up_again_works(testbed):
    """`down` removes machines, veths, mounts, processes, cgroups; `up` afterwards gives the same machines.
    (Warm `up` time is a benchmark number: tests/bench/bench_site.py prints it.)"""
    nodes = len(testbed.hosts)
    before = host_snapshot()
    assert before["veths"] and before["processes"] and before["cgroups"]  # the snapshot sees a running testbed
    try:
        testbed.down()
        after = host_snapshot()
        inventory_left = tb.INVENTORY.exists()
    finally:
        # Back to the session's testbed, measured: the base root filesystem is cached now.
        seconds = testbed.up(nodes)
    print(f"warm testbed-up of {nodes} machines: {seconds:.1f} s")
    assert after["veths"] == set()
    assert after["mounts"] == (testbed.clean_host or {}).get("mounts", set())
    assert after["processes"] == set()
    assert after["cgroups"] == set()
    assert after["machine_dirs"] == set()
    assert not inventory_left
    # The default testbed shares its bridge with the mirror: it stays exactly while the mirror uses it.
    assert after["bridge"] == ({tb.BRIDGE} if not tb.INSTANCE and tb.mirror_running() else set())
    assert set(testbed.hosts) == {name for name, _ in tb.machine_names(nodes, 1)}


@pytest.mark.testbed_lifecycle
def test_stop_start_keeps_the_machine_reachable(testbed):
    name = sorted(n for n in testbed.hosts if n.startswith(tb.ROLE_PREFIX[tb.WORKERS]))[-1]
    ip = testbed.hosts[name]
    sh(testbed, name, "echo kept > /root/marker")
    testbed.stop(name)
    assert not testbed.machine(name).running()
    assert not tb.link_exists(testbed.machine(name).veth)
    down = ping(testbed.inventory)
    assert name not in reachable_hosts(down)
    assert reachable_hosts(down) == set(testbed.hosts) - {name}
    testbed.start(name)
    assert testbed.hosts[name] == ip
    assert reachable_hosts(ping(testbed.inventory)) == set(testbed.hosts)
    assert sh(testbed, name, "cat /root/marker").strip() == "kept"  # same disk after the reboot


@pytest.mark.testbed_lifecycle
def test_add_puts_one_more_machine_in_the_inventory(testbed):
    workers = sorted(n for n in testbed.hosts if n.startswith(tb.ROLE_PREFIX[tb.WORKERS]))
    name = f"{tb.ROLE_PREFIX[tb.WORKERS]}{len(workers) + 1}"
    ip = testbed.add(name)
    try:
        assert ip not in {addr for host, addr in testbed.hosts.items() if host != name}
        inventory = yaml.safe_load(testbed.inventory.read_text())
        workers_group = inventory["all"]["children"]["k8s_cluster"]["children"]["workers"]["hosts"]
        assert workers_group[name]["ansible_host"] == ip
        assert reachable_hosts(ping(testbed.inventory, limit=name)) == {name}
    finally:
        testbed.remove(name)
    assert (
        name
        not in yaml.safe_load(testbed.inventory.read_text())["all"]["children"]["k8s_cluster"]["children"]["workers"][
            "hosts"
        ]
    )


# --- properties of a running testbed ----------------------------------------------------------------


def test_ansible_reaches_every_machine(testbed):
    result = ping(testbed.inventory)
    assert result.rc == 0, result.stdout[-2000:]
    assert reachable_hosts(result) == set(testbed.hosts)
    inventory = yaml.safe_load(testbed.inventory.read_text())
    children = inventory["all"]["children"]["k8s_cluster"]["children"]
    assert list(children["control_plane"]["hosts"]) == [f"{tb.ROLE_PREFIX[tb.CONTROL_PLANE]}1"]
    assert inventory["all"]["vars"]["anvil_testbed"] is True


def test_machines_are_distinct_hosts(testbed):
    seen = {}
    for name, ip in testbed.hosts.items():
        out = sh(testbed, name, "hostname; cat /etc/machine-id; ip -4 -o addr show dev host0; python3 -V")
        hostname, machine_id, addr, python = out.strip().splitlines()
        assert hostname == name
        assert f"{ip}/24" in addr
        assert python.startswith("Python 3")
        seen[machine_id] = name
    assert len(seen) == len(testbed.hosts), "machine-ids must be unique"


def test_machines_have_writable_cgroups_and_sysctls_and_are_isolated(testbed):
    first, second = sorted(testbed.hosts)[:2]
    sh(testbed, first, "mkdir /sys/fs/cgroup/pids/anvil-probe /sys/fs/cgroup/memory/anvil-probe")
    try:
        # The other machine has its own cgroup tree: it does not see the first machine's cgroups.
        assert sh(testbed, second, "ls /sys/fs/cgroup/pids").split().count("anvil-probe") == 0
    finally:
        sh(testbed, first, "rmdir /sys/fs/cgroup/pids/anvil-probe /sys/fs/cgroup/memory/anvil-probe")
    sh(testbed, first, "sysctl -w net.ipv4.ip_forward=1 vm.overcommit_memory=1 net.bridge.bridge-nf-call-iptables=1")
    assert testbed.exec(first, "systemctl is-system-running --wait", check=False).stdout.strip() == "running"
    # Each machine's systemd manages only its own processes.
    assert sh(testbed, second, "systemctl show -p MainPID --value ssh").strip() != "0"
    pids = sh(testbed, first, "ls /proc | grep -c '^[0-9]'").strip()
    assert int(pids) < 50


def test_machines_cannot_reach_outside_but_reach_the_host(testbed):
    probe = (
        "import socket,sys\n"
        "for addr in sys.argv[1:]:\n"
        "    s = socket.socket(); s.settimeout(4)\n"
        "    try:\n"
        "        s.connect((addr, 80)); print(addr, 'open')\n"
        "    except ConnectionRefusedError:\n"
        "        print(addr, 'refused')\n"
        "    except OSError as e:\n"
        "        print(addr, 'unreachable', type(e).__name__)\n"
    )
    targets = ["9.9.9.9", "192.0.2.1", "1.1.1.1"]
    name = sorted(testbed.hosts)[0]
    out = sh(testbed, name, ["python3", "-c", probe, *targets, tb.MIRROR_ADDR])
    results = dict(line.split(" ", 1) for line in out.strip().splitlines())
    for addr in targets:
        assert results[addr].startswith("unreachable"), f"{name} reached {addr}: {results[addr]}"
    # The host answers (refused or open, not silently dropped): the mirror's address is reachable.
    assert results[tb.MIRROR_ADDR] in ("open", "refused"), results[tb.MIRROR_ADDR]
    route = sh(testbed, name, "ip route get 9.9.9.9")
    assert "host0" in route  # only the testbed interface; its gateway does not exist


@pytest.mark.testbed_lifecycle
def test_containerd_from_the_mirror_runs_a_local_image(testbed, mirror):
    # On an extra machine, removed afterwards: the session's machines stay as fresh as real new hosts.
    name = f"{tb.ROLE_PREFIX[tb.WORKERS]}9"
    testbed.add(name)
    try:
        _containerd_runs_a_local_image(testbed, testbed.machine(name), mirror)
    finally:
        testbed.remove(name)


def _containerd_runs_a_local_image(testbed, machine, mirror):
    name = machine.name
    sh(testbed, name, f"echo 'deb [trusted=yes] {mirror}/apt ./' > /etc/apt/sources.list.d/e2e-mirror.list")
    started = time.monotonic()
    sh(testbed, name, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc")
    print(f"apt-get install containerd from the mirror: {time.monotonic() - started:.1f} s")
    assert sh(testbed, name, "findmnt -no FSTYPE -T /var/lib/containerd").strip() != "overlay"
    # A local image: written into the machine's disk from the host, imported and run by containerd.
    (machine.rootfs / "root/busybox-image.tar").write_bytes(busybox_image_tar("anvil.test/busybox:e2e"))
    sh(testbed, name, "systemctl is-active --wait containerd || systemctl start containerd")
    sh(testbed, name, "ctr -n e2e image import /root/busybox-image.tar")
    run = "ctr -n e2e run --rm anvil.test/busybox:e2e e2e-hello /bin/sh -c 'echo hello-nested'"
    assert sh(testbed, name, run).strip() == "hello-nested"
    # The image was unpacked by the overlayfs snapshotter (containerd's state is on a plain filesystem).
    assert len(sh(testbed, name, "ctr -n e2e snapshots --snapshotter overlayfs ls").strip().splitlines()) >= 2
