"""Pure parts of the testbed tool: Debian archive detection, machine naming, inventory shape."""

from __future__ import annotations

import pytest
import yaml

from tools import testbed as tb
from tools.testbed import inventory


def test_detects_the_archive_from_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("ANVIL_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://archive.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# a comment: with a colon\nURIs: http://archive.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
    )
    assert tb.detect_debian_mirror(tmp_path) == "http://archive.example/debian"


def test_detects_the_archive_from_one_line_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("ANVIL_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://archive.example/debian bookworm main\n"
    )
    assert tb.detect_debian_mirror(tmp_path) == "http://archive.example/debian"


def test_no_archive_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ANVIL_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text("deb http://archive.example/debian trixie main\n")
    with pytest.raises(tb.TestbedError, match="ANVIL_DEBIAN_MIRROR"):
        tb.detect_debian_mirror(tmp_path)


def test_machine_names_put_control_planes_first():
    names = tb.machine_names(4, 2)
    assert [role for _name, role in names] == [tb.CONTROL_PLANE, tb.CONTROL_PLANE, tb.WORKERS, tb.WORKERS]
    assert [n for n, _role in names] == [f"{tb.PREFIX}-cp1", f"{tb.PREFIX}-cp2", f"{tb.PREFIX}-w1", f"{tb.PREFIX}-w2"]
    assert tb.role_for_name(f"{tb.PREFIX}-w7") == tb.WORKERS
    for nodes, cps in ((2, 3), (0, 0), (3, 0)):
        with pytest.raises(tb.TestbedError):
            tb.machine_names(nodes, cps)
    with pytest.raises(tb.TestbedError, match="--role"):
        tb.role_for_name("db1")


def test_inventory_has_the_groups_and_connection_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(inventory, "INVENTORY", tmp_path / "hosts.yml")  # where write_inventory writes
    machines = [
        tb.Machine("anvil-cp1", tb.CONTROL_PLANE, "198.18.0.11"),
        tb.Machine("anvil-w1", tb.WORKERS, "198.18.0.12"),
    ]
    data = yaml.safe_load(tb.write_inventory(machines).read_text())
    groups = data["all"]["children"]["k8s_cluster"]["children"]
    assert list(groups["control_plane"]["hosts"]) == ["anvil-cp1"]
    host = groups["workers"]["hosts"]["anvil-w1"]
    assert host["ansible_host"] == "198.18.0.12"
    assert host["ansible_user"] == "root"
    assert "StrictHostKeyChecking=no" in host["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/dev/null" in host["ansible_ssh_common_args"]
    assert data["all"]["vars"]["anvil_testbed"] is True
    assert data["all"]["vars"]["anvil_image_repository"].endswith(":5000/anvil")


def test_next_free_address_skips_used_ones_and_the_gateway():
    used = [tb.Machine(f"m{i}", tb.WORKERS, str(tb.NETWORK[tb.FIRST_MACHINE_OFFSET + i])) for i in range(3)]
    assert tb.next_free_ip(used) == str(tb.NETWORK[tb.FIRST_MACHINE_OFFSET + 3])
