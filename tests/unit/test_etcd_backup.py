"""etcd backup logic: snapshot names, retention of the snapshot program, restore members and refusals."""

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils import etcd_backup as eb

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "etcd_backup" / "files" / "anvil_etcd_snapshot.py"


@pytest.fixture(scope="module")
def prog():
    loader = importlib.machinery.SourceFileLoader("anvil_etcd_snapshot", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def make_snapshot(directory: Path, name: str, complete: bool = True) -> Path:
    path = directory / name
    path.mkdir(parents=True)
    (path / "snapshot.db").write_bytes(b"x")
    if complete:
        (path / "meta.json").write_text(json.dumps({"name": name}))
    return path


# --- names -----------------------------------------------------------------------------------------------


def test_snapshot_names_round_trip(prog):
    import datetime

    when = datetime.datetime(2026, 12, 1, 6, 0, 5, tzinfo=datetime.timezone.utc)
    name = prog.snapshot_name("prod-eu", "cp-1.example", when)
    assert name == "prod-eu-20261201T060005Z-cp-1.example"
    assert eb.parse_snapshot_name(name) == {"cluster": "prod-eu", "stamp": "20261201T060005Z", "node": "cp-1.example"}
    # The program and the restore filter read names the same way.
    assert prog.NAME_RE.pattern == eb.SNAPSHOT_NAME_RE.pattern


@pytest.mark.parametrize(
    "name", ["", "prod", "prod-2026-cp1", "Prod-20261201T060005Z-cp1", "../x-20261201T060005Z-cp1"]
)
def test_other_strings_are_not_snapshot_names(name):
    assert eb.parse_snapshot_name(name) is None


# --- retention -------------------------------------------------------------------------------------------


def test_retention_keeps_the_newest_complete_snapshots(prog, tmp_path):
    names = [f"c-2026120{d}T000000Z-cp1" for d in range(1, 6)]
    for name in names:
        make_snapshot(tmp_path, name)
    assert [p.name for p in prog.complete_snapshots(tmp_path)] == names[::-1]
    assert sorted(prog.prune(tmp_path, 2)) == names[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[3:]


def test_retention_ignores_incomplete_and_foreign_entries(prog, tmp_path):
    make_snapshot(tmp_path, "c-20261201T000000Z-cp1")
    make_snapshot(tmp_path, "c-20261202T000000Z-cp1", complete=False)  # a copy still arriving
    (tmp_path / "notes.txt").write_text("operator's file")
    (tmp_path / "lost+found").mkdir()
    assert [p.name for p in prog.complete_snapshots(tmp_path)] == ["c-20261201T000000Z-cp1"]
    assert prog.prune(tmp_path, 1) == []
    assert {p.name for p in tmp_path.iterdir()} == {
        "c-20261201T000000Z-cp1",
        "c-20261202T000000Z-cp1",
        "notes.txt",
        "lost+found",
    }


def test_retention_removes_stale_partial_writes_but_the_newest(prog, tmp_path):
    make_snapshot(tmp_path, "c-20261203T000000Z-cp1")
    for stamp in ("20261201", "20261204"):
        (tmp_path / f".partial-c-{stamp}T000000Z-cp1").mkdir()
    assert [p.name for p in prog.to_prune(tmp_path, 3)] == [".partial-c-20261201T000000Z-cp1"]


def test_retention_refuses_to_keep_nothing(prog, tmp_path):
    with pytest.raises(prog.SnapshotError, match="at least 1"):
        prog.to_prune(tmp_path, 0)


def test_prune_command_prunes_every_control_planes_directory(prog, tmp_path, capsys):
    for node in ("cp1", "cp2"):
        for day in (1, 2, 3):
            make_snapshot(tmp_path / node, f"c-2026120{day}T000000Z-{node}")
    assert prog.main(["prune", "--dir", str(tmp_path), "--keep", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["pruned"]) == ["cp1/c-20261201T000000Z-cp1", "cp2/c-20261201T000000Z-cp2"]
    assert len(list((tmp_path / "cp1").iterdir())) == 2


def test_save_reports_a_missing_configuration_without_a_traceback(prog, tmp_path, capsys):
    assert prog.main(["save", "--config", str(tmp_path / "absent.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("anvil-etcd-snapshot: ") and "absent.json" in err


# --- restore members -------------------------------------------------------------------------------------


def etcd_manifest(name: str, ip: str, data_dir: str = "/var/lib/etcd") -> dict:
    """The shape of kubeadm's /etc/kubernetes/manifests/etcd.yaml (every setting a --flag=value)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {
            "containers": [
                {
                    "name": "etcd",
                    "command": [
                        "etcd",
                        f"--advertise-client-urls=https://{ip}:2379",
                        f"--data-dir={data_dir}",
                        f"--initial-advertise-peer-urls=https://{ip}:2380",
                        f"--initial-cluster={name}=https://{ip}:2380",
                        f"--name={name}",
                        "--snapshot-count=10000",
                    ],
                }
            ]
        },
    }


def test_restore_members_recreate_every_control_plane():
    plan = eb.restore_members(
        {"cp2": etcd_manifest("cp2", "10.0.0.12"), "cp1": etcd_manifest("cp1", "10.0.0.11", "/data/etcd")}
    )
    assert plan["members"] == [
        {"host": "cp1", "name": "cp1", "peer_url": "https://10.0.0.11:2380", "data_dir": "/data/etcd"},
        {"host": "cp2", "name": "cp2", "peer_url": "https://10.0.0.12:2380", "data_dir": "/var/lib/etcd"},
    ]
    assert plan["initial_cluster"] == "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380"


def test_restore_members_refuse_a_manifest_without_the_flags():
    manifest = etcd_manifest("cp1", "10.0.0.11")
    manifest["spec"]["containers"][0]["command"] = ["etcd", "--data-dir=/var/lib/etcd"]
    with pytest.raises(ValueError, match="cp1: the etcd manifest sets no --name, --initial-advertise-peer-urls"):
        eb.restore_members({"cp1": manifest})
    with pytest.raises(ValueError, match="no etcd container"):
        eb.restore_members({"cp1": {"spec": {"containers": [{"name": "other"}]}}})


def test_restore_members_refuse_two_hosts_with_one_member():
    with pytest.raises(ValueError, match="cp1 and cp2 both run etcd member name cp1"):
        eb.restore_members({"cp1": etcd_manifest("cp1", "10.0.0.11"), "cp2": etcd_manifest("cp1", "10.0.0.12")})


# --- refusals --------------------------------------------------------------------------------------------

NAME = "prod-20261201T060000Z-cp1"
META = {
    "format": 1,
    "name": NAME,
    "cluster": "prod",
    "sha256": "a" * 64,
    "size": 1454112,
    "ca_sha256": "c" * 64,
}


def test_a_whole_snapshot_of_this_cluster_may_be_restored():
    assert eb.snapshot_problems(NAME, META, "prod", "a" * 64, {"cp1": "c" * 64, "cp2": "c" * 64}) == []


def test_a_damaged_or_truncated_snapshot_is_refused():
    problems = eb.snapshot_problems(NAME, META, "prod", "b" * 64, {"cp1": "c" * 64})
    assert problems == [
        f"{NAME}: snapshot.db is damaged or truncated (sha256 {'b' * 64}, taken as {'a' * 64}, 1454112 bytes)"
    ]
    assert "missing" in eb.snapshot_problems(NAME, META, "prod", "", {"cp1": "c" * 64})[0]


def test_a_snapshot_of_another_cluster_is_refused():
    problems = eb.snapshot_problems(NAME, META, "prod", "a" * 64, {"cp1": "c" * 64, "cp2": "d" * 64})
    assert problems == [f"{NAME} comes from another cluster: its cluster CA differs from the one on cp2"]
    problems = eb.snapshot_problems(NAME, META, "staging", "a" * 64, {"cp1": "c" * 64})
    assert problems == [f"{NAME} was taken of cluster 'prod', not of this cluster 'staging'"]


def test_an_unreadable_or_renamed_meta_is_refused():
    assert "no readable meta.json" in eb.snapshot_problems(NAME, None, "prod", "a" * 64, {})[0]
    renamed = dict(META, name="prod-20261101T060000Z-cp1")
    assert eb.snapshot_problems(NAME, renamed, "prod", "a" * 64, {}) == [
        f"{NAME}: its meta.json names it 'prod-20261101T060000Z-cp1'"
    ]
    assert "format 2" in eb.snapshot_problems(NAME, dict(META, format=2), "prod", "a" * 64, {})[0]
