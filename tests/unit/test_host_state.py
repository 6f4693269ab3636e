"""host_state: which paths differ from their wanted state."""

from __future__ import annotations

import hashlib
import os
import pwd

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils import host_state as pc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("0755", "0755"), ("755", "0755"), (0o644, "0644"), (None, None), ("1777", "1777")],
)
def test_normalize_mode(mode, expected):
    assert pc.normalize_mode(mode) == expected


@pytest.mark.parametrize("mode", ["rwx", "0999", "", "12345", 0o17777])
def test_normalize_mode_rejects(mode):
    with pytest.raises(ValueError):
        pc.normalize_mode(mode)


def test_validate_names_each_problem():
    errors = pc.validate(
        [
            {"path": "relative/x"},
            {"path": "/a", "state": "socket"},
            {"path": "/d", "state": "directory", "sha256": "0" * 64},
            {"path": "/f", "sha256": "xyz"},
            {"path": "/f", "mode": "rw"},
        ]
    )
    assert errors == [
        "paths[0]: path must be absolute, got 'relative/x'",
        "paths[1]: state must be one of file, directory, got 'socket'",
        "paths[2]: sha256 is only for files",
        "paths[3]: sha256 must be 64 hex digits",
        "paths[4]: /f is listed twice",
        "paths[4]: mode 'rw' is not an octal mode like '0755'",
    ]
    assert pc.validate([{"path": "/usr/local/bin/kubelet", "mode": "0755", "sha256": "A" * 64}]) == []


def test_compare_reports_every_difference():
    want = {"path": "/x", "mode": "0755", "owner": "root", "group": "root", "sha256": "ab" * 32}
    assert pc.compare(want, None) == ["missing"]
    assert pc.compare(want, {"kind": "directory", "mode": "0755"}) == ["is a directory, not a file"]
    same = {"kind": "file", "mode": "0755", "owner": "root", "group": "root", "sha256": "ab" * 32}
    assert pc.compare(want, same) == []
    assert pc.compare(dict(want, sha256=("AB" * 32)), same) == []  # digests compare case-insensitively
    other = {"kind": "file", "mode": "0644", "owner": "bin", "group": "root", "sha256": "cd" * 32}
    assert pc.compare(want, other) == ["mode 0644, wanted 0755", "owner bin, wanted root", "sha256 differs"]
    # Unset attributes are not compared.
    assert pc.compare({"path": "/x"}, other) == []


def test_check_paths_on_a_real_tree(tmp_path):
    data = b"#!/bin/sh\necho hi\n"
    good = tmp_path / "good"
    good.write_bytes(data)
    good.chmod(0o755)
    changed = tmp_path / "changed"
    changed.write_bytes(b"other")
    changed.chmod(0o755)
    loose = tmp_path / "loose"
    loose.write_bytes(data)
    loose.chmod(0o644)
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    items = [
        {"path": str(good), "sha256": _sha(data), "mode": "0755"},
        {"path": str(changed), "sha256": _sha(data), "mode": "0755"},
        {"path": str(loose), "sha256": _sha(data), "mode": "0755"},
        {"path": str(folder), "state": "directory", "mode": "0755"},
        {"path": str(tmp_path / "absent"), "state": "directory"},
        {"path": str(folder / "f"), "state": "file"},
    ]
    result = pc.check_paths(items)
    assert result["mismatched"] == [str(changed), str(loose), str(tmp_path / "absent"), str(folder / "f")]
    assert result["reasons"][str(changed)] == ["sha256 differs"]
    assert result["reasons"][str(loose)] == ["mode 0644, wanted 0755"]
    assert result["reasons"][str(tmp_path / "absent")] == ["missing"]


def test_observe_reads_owner_names_and_small_chunks(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    observed = pc.observe({"path": str(path), "sha256": "0" * 64}, chunk=3)
    assert observed["sha256"] == _sha(b"x" * 10)
    assert observed["kind"] == "file"
    assert observed["owner"] == pwd.getpwuid(os.getuid())[0]
    link = tmp_path / "link"
    link.symlink_to(path)
    assert pc.observe({"path": str(link)})["kind"] == "other"  # a symlink is not the wanted file


def test_want_path_filter_looks_up_checksums_by_base_name():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.anvil.cluster.plugins.filter.host_state import want_path

    assert want_path("/usr/local/bin/kubelet", "file", "0755", checksums={"kubelet": "ab" * 32}) == {
        "path": "/usr/local/bin/kubelet",
        "state": "file",
        "owner": "root",
        "group": "root",
        "mode": "0755",
        "sha256": "ab" * 32,
    }
    assert "sha256" not in want_path("/etc/kubernetes", "directory", "0755")
    with pytest.raises(AnsibleFilterError, match="no checksum for 'kubeadm'"):
        want_path("/usr/local/bin/kubeadm", checksums={"kubelet": "ab" * 32})


def test_want_path_filter_digests_content_like_the_file_it_becomes(tmp_path):
    from ansible.errors import AnsibleFilterError
    from ansible_collections.anvil.cluster.plugins.filter.host_state import want_path

    text = "KUBELET_EXTRA_ARGS=--node-ip=198.18.0.11 é\n"
    target = tmp_path / "kubelet"
    target.write_text(text, encoding="utf-8")
    entry = want_path(str(target), "file", None, owner=None, group=None, content=text)
    assert entry["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert pc.check_paths([entry])["mismatched"] == []
    assert pc.check_paths([dict(entry, sha256=want_path("x", content=text + " ")["sha256"])])["mismatched"] == [
        str(target)
    ]
    with pytest.raises(AnsibleFilterError, match="either checksums or content"):
        want_path(str(target), checksums={"kubelet": "ab" * 32}, content=text)


def test_plan_lists_what_the_role_changes_and_whether_anything_differs():
    files = [
        {"want": {"path": "/etc/a"}, "apply": "template", "src": "a.j2"},
        {"want": {"path": "/etc/b"}, "apply": "copy", "content": "b"},
        {"want": {"path": "/etc/kubernetes/admin.conf"}, "apply": "none"},
    ]
    services = [
        {"name": "haproxy", "state": "started", "enabled": True},
        {"name": "kubelet", "enabled": True},
        {"name": "containerd", "state": "started", "enabled": True},
    ]
    result = {
        "mismatched": ["/etc/a", "/etc/kubernetes/admin.conf"],
        "packages_missing": [],
        "sysctls_differing": {},
        "services": {
            "haproxy": {"active": "active", "unit_file": "disabled"},
            "kubelet": {"active": "inactive", "unit_file": "enabled"},
            "containerd": {"active": "active", "unit_file": "enabled"},
        },
    }
    planned = pc.plan(result, files, services)
    # admin.conf is only compared (apply none); the kubelet is only to be enabled, and it is.
    assert planned["files"] == [files[0]]
    assert planned["services"] == [services[0]]
    # Running ones, and the ones wanted running (a fresh package may have started one): not the kubelet.
    assert planned["restartable"] == ["haproxy", "containerd"]
    fresh = dict(result, services={"haproxy": {"active": "inactive", "unit_file": ""}})
    assert pc.plan(fresh, files, services)["restartable"] == ["haproxy", "containerd"]
    assert planned["differs"] is True
    settled = dict(result, mismatched=["/etc/kubernetes/admin.conf"])
    settled["services"] = dict(result["services"], haproxy={"active": "active", "unit_file": "enabled"})
    assert pc.plan(settled, files, services)["differs"] is False
    assert pc.plan(dict(settled, packages_missing=["haproxy"]), files, services)["differs"] is True
    assert pc.plan(dict(settled, sysctls_differing={"net.ipv4.ip_forward": "0"}), files, services)["differs"] is True


def test_plan_stops_and_disables_a_service_wanted_off_and_never_restarts_it():
    services = [{"name": "backup.timer", "state": "stopped", "enabled": False}]
    changed_file = [
        {"want": {"path": "/etc/systemd/system/backup.timer"}, "apply": "template", "restart": ["backup.timer"]}
    ]
    running = {
        "mismatched": ["/etc/systemd/system/backup.timer"],
        "services": {"backup.timer": {"active": "active", "unit_file": "enabled"}},
    }
    planned = pc.plan(running, changed_file, services)
    assert planned["services"] == services
    # A changed unit file must not start (restart) what is wanted stopped.
    assert "backup.timer" not in planned["restartable"]
    off = {"mismatched": [], "services": {"backup.timer": {"active": "inactive", "unit_file": "disabled"}}}
    assert pc.plan(off, changed_file, services)["differs"] is False


def test_restarts_only_running_services_restart_wins_over_reload():
    changed = [
        {"want": {"path": "/etc/containerd/config.toml"}, "restart": ["containerd"]},
        {"want": {"path": "/etc/haproxy/haproxy.cfg"}, "reload": ["haproxy"]},
        {"want": {"path": "/etc/default/kubelet"}, "restart": ["kubelet"]},
        {"want": {"path": "/etc/x"}, "reload": ["containerd"]},
        {"want": {"path": "/etc/crictl.yaml"}},
    ]
    assert pc.restarts(changed, ["containerd", "haproxy"]) == [
        {"name": "containerd", "state": "restarted"},
        {"name": "haproxy", "state": "reloaded"},
    ]
    assert pc.restarts(changed, []) == []
