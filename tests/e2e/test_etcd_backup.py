"""etcd backups and restore on the testbed cluster: the snapshot timer, copies on a backup host, refusals,
and backup -> disaster -> restore.

Runs on the cluster test_cluster_core.py deploys (1 control plane + 2 workers), with the second worker
also in the inventory group `backup` (a host other than the control plane: the copy must survive the
control plane's loss; a real site uses a separate host). Marked `disaster`: the session runs it after
every other test, because it wipes etcd. Tests run in file order and build on each other.

  site.yml with a 15 s timer, keep 2 -> snapshots on schedule, retention on both ends, copies at the
  destination -> the control plane's key can neither read nor delete there -> backup.yml -> refusals
  (no confirmation, truncated snapshot, snapshot of another cluster): nothing changes -> objects deleted
  and etcd's data directory wiped, the local snapshot removed too -> restore.yml from the backup host ->
  every object back with the same content, the Secret decrypted, pods Running, nodes Ready.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
import yaml

from tests.helpers import etcd_restore as er
from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.testbed import cluster_groups, sh
from tests.helpers.wait import wait_until as poll

pytestmark = pytest.mark.disaster

PLAYBOOKS = REPO_ROOT / "playbooks"
WORK = REPO_ROOT / "build" / "e2e-cluster-core"
CLUSTER = "e2e"
BASE_VARS = {"anvil_kubeconfig_dest": str(WORK / "admin.conf"), "anvil_cluster_name": CLUSTER}
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]
LOCAL_DIR = "/var/lib/anvil/etcd-backup"
STORE_DIR = "/var/lib/anvil-backup"
# Timer settings of the schedule test: seconds between snapshots, and how many each side keeps.
INTERVAL, KEEP = 15, 2
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def bed(testbed, mirror):
    inv, cp, workers = cluster_groups(testbed.inventory)
    store = workers[-1]
    inv["all"]["children"]["backup"] = {"hosts": {store: None}}
    WORK.mkdir(parents=True, exist_ok=True)
    inventory = WORK / "hosts-backup.yml"
    inventory.write_text(yaml.safe_dump(inv, sort_keys=False))
    image = "%s/%s:%s" % (
        inv["all"]["vars"]["anvil_image_repository"],
        VERSIONS["pause"]["image"]["name"],
        VERSIONS["pause"]["image"]["tag"],
    )
    return {"cp": cp, "store": store, "inventory": inventory, "image": image, "testbed": testbed}


def play(bed, name: str, check: bool = False, **extra):
    started = time.monotonic()
    result = run_playbook(
        PLAYBOOKS / name,
        inventory=bed["inventory"],
        extra_vars={**BASE_VARS, **extra},
        check=check,
        workdir=WORK,
        env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"},  # the statistics backup.yml and restore.yml return
    )
    result.seconds = time.monotonic() - started
    return result


def ok(result) -> None:
    assert result.rc == 0, result.failures() or f"rc={result.rc}\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"


def local_snapshots(bed) -> list[str]:
    out = sh(bed["testbed"], bed["cp"], f"ls -1 {LOCAL_DIR}")
    return sorted(line for line in out.split() if line.startswith(f"{CLUSTER}-"))


def stored_snapshots(bed) -> list[str]:
    out = sh(bed["testbed"], bed["store"], f"ls -1 {STORE_DIR}/{CLUSTER}/{bed['cp']}")
    return sorted(line for line in out.split() if line.startswith(f"{CLUSTER}-"))


def snapshot_runs(bed, since: str) -> list[str]:
    """Names of the snapshots the timer's runs took since a journal timestamp."""
    out = sh(
        bed["testbed"],
        bed["cp"],
        f"journalctl -u anvil-etcd-backup.service --since {shlex.quote(since)} -o cat --no-pager",
    )
    names = []
    for line in out.splitlines():
        if line.startswith("{"):
            names.append(json.loads(line)["snapshot"]["name"])
    return names


def stamp_seconds(name: str) -> float:
    stamp = name[len(CLUSTER) + 1 :].split("-", 1)[0]
    return time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))


# ---- the timer ----------------------------------------------------------------------------------------------


def test_the_timer_takes_snapshots_on_schedule_and_both_ends_keep_the_newest(bed):
    tb = bed["testbed"]
    since = sh(tb, bed["cp"], "date -u '+%Y-%m-%d %H:%M:%S'").strip()
    result = play(
        bed,
        "site.yml",
        etcd_backup_interval=f"{INTERVAL}s",
        etcd_backup_keep=KEEP,
        etcd_backup_store_keep=KEEP,
        etcd_backup_store_prune_interval="5s",
    )
    ok(result)

    def enough_runs():
        found = snapshot_runs(bed, since)
        return found if len(found) >= KEEP + 2 else None

    runs = poll(enough_runs, 180, f"{KEEP + 2} timer runs")
    gaps = [stamp_seconds(b) - stamp_seconds(a) for a, b in zip(runs, runs[1:])]
    print(f"\ntimer snapshots {runs}, gaps {gaps} s")
    # On schedule: one snapshot per interval (a run takes about a second; AccuracySec=1s).
    assert all(INTERVAL - 1 <= gap <= INTERVAL + 5 for gap in gaps), gaps
    # Retention: the control plane keeps the newest KEEP; the backup host had every one and prunes to KEEP.
    local = local_snapshots(bed)
    runs = snapshot_runs(bed, since)  # a run may have finished since: local is the newest KEEP of these
    assert local in (sorted(runs)[-KEEP:], sorted(runs)[-KEEP - 1 : -1]), (local, runs)
    assert runs[0] not in local
    poll(lambda: len(stored_snapshots(bed)) == KEEP, 60, f"the backup host to keep {KEEP} copies")
    stored = stored_snapshots(bed)
    assert runs[0] not in stored and set(local) & set(stored), (local, stored)
    # Each copy is whole: the checksum recorded on the control plane matches the file on the backup host.
    newest = sorted(set(local) & set(stored))[-1]
    meta = json.loads(sh(tb, bed["store"], f"cat {STORE_DIR}/{CLUSTER}/{bed['cp']}/{newest}/meta.json"))
    copy_sum = sh(tb, bed["store"], f"sha256sum {STORE_DIR}/{CLUSTER}/{bed['cp']}/{newest}/snapshot.db").split()[0]
    assert meta["sha256"] == copy_sum and meta["cluster"] == CLUSTER and meta["revision"] > 0
    mode = sh(tb, bed["store"], f"stat -c '%a %U' {STORE_DIR}/{CLUSTER}/{bed['cp']}/{newest}/encryption-config.yaml")
    assert mode.split() == ["600", "anvil-backup"], mode
    # Back to the default schedule: the timer is rewritten and nothing else changes.
    ok(play(bed, "site.yml"))
    assert "6h" in sh(tb, bed["cp"], "systemctl cat anvil-etcd-backup.timer")


def test_the_control_planes_key_can_neither_read_nor_delete_copies(bed):
    tb = bed["testbed"]
    ssh = (
        "ssh -i /etc/kubernetes/anvil/etcd-backup/id_ed25519 -o BatchMode=yes"
        " -o UserKnownHostsFile=/etc/kubernetes/anvil/etcd-backup/known_hosts -o StrictHostKeyChecking=yes"
    )
    address = sh(tb, bed["store"], "hostname -I").split()[0]
    target = f"anvil-backup@{address}"
    shell = tb.exec(bed["cp"], f"{ssh} {target} cat /etc/hostname")
    assert shell.returncode != 0 and bed["store"] not in shell.stdout, shell.stdout
    read = tb.exec(bed["cp"], f"rsync -e {shlex.quote(ssh)} -a {target}:./ /tmp/anvil-read-back/")
    assert read.returncode != 0, read.stdout
    before = stored_snapshots(bed)
    delete = tb.exec(
        bed["cp"], f"mkdir -p /tmp/anvil-empty && rsync -e {shlex.quote(ssh)} -r --delete /tmp/anvil-empty/ {target}:"
    )
    assert delete.returncode != 0 and stored_snapshots(bed) == before, delete.stdout


# ---- backup, refusals, disaster, restore --------------------------------------------------------------------


@pytest.fixture(scope="module")
def workload(bed):
    er.create_workload(bed["testbed"], bed["cp"], bed["image"])


@pytest.fixture(scope="module")
def snapshot(bed, workload):
    result = play(bed, "backup.yml")
    ok(result)
    TIMINGS["backup.yml"] = result.seconds
    stats = result.data.get("global_custom_stats", {}).get("etcd_backup_snapshot") or {}
    assert stats.get("name", "").startswith(f"{CLUSTER}-") and stats.get("copied_to") == [bed["store"]], stats
    print(f"\nbackup.yml: {result.seconds:.1f} s, snapshot {stats['name']} revision {stats['revision']}")
    return stats


def control_plane_state(bed) -> dict:
    """What a restore changes on the control plane: the etcd container, the data directories kept aside,
    the static pod manifests in place, and whether the API answers with the workload."""
    tb, cp = bed["testbed"], bed["cp"]
    return {
        "etcd": sh(tb, cp, "crictl ps -q --name '^etcd$'").strip(),
        "kept": sh(tb, cp, "ls -d /var/lib/etcd.before-restore-* 2>/dev/null || true").split(),
        "manifests": sh(tb, cp, "ls /etc/kubernetes/manifests").split(),
        "workload": "namespace/restore-a" in sh(tb, cp, f"{er.KUBECTL} get ns -o name"),
    }


def test_restore_refuses_without_confirmation_and_changes_nothing(bed, snapshot):
    before = control_plane_state(bed)
    assert before["workload"] and len(before["manifests"]) == 4, before
    result = play(bed, "restore.yml", anvil_restore_snapshot=snapshot["name"])
    assert result.rc != 0
    assert "confirm with -e anvil_restore_confirm=yes" in result.stdout
    assert control_plane_state(bed) == before
    # Check mode needs no confirmation: it shows the plan and changes nothing.
    plan = play(bed, "restore.yml", check=True, anvil_restore_snapshot=snapshot["name"])
    ok(plan)
    assert f"Would restore {snapshot['name']}" in plan.stdout and f"onto members {bed['cp']}" in plan.stdout
    assert control_plane_state(bed) == before


def forged(bed, snapshot, suffix: str, edit: str) -> str:
    """A copy of the snapshot under another name on the control plane, changed by a shell command run in
    its directory (meta.json names it as the copy)."""
    name = snapshot["name"].replace(snapshot["name"].split("-")[-3], suffix)
    src, dst = f"{LOCAL_DIR}/{snapshot['name']}", f"{LOCAL_DIR}/{name}"
    sh(
        bed["testbed"],
        bed["cp"],
        f"cp -a {src} {dst} && cd {dst} && sed -i 's/{snapshot['name']}/{name}/' meta.json && {edit}",
    )
    return name


def test_restore_refuses_a_truncated_snapshot_and_changes_nothing(bed, snapshot):
    before = control_plane_state(bed)
    name = forged(bed, snapshot, "20200101T000000Z", "truncate -s 65536 snapshot.db")
    try:
        result = play(bed, "restore.yml", anvil_restore_snapshot=name, anvil_restore_confirm="yes")
        assert result.rc != 0
        assert f"Not restoring: {name}: snapshot.db is damaged or truncated" in result.stdout, result.stdout[-3000:]
        assert "65536 bytes" not in result.stdout  # the size reported is the one recorded when it was taken
        assert control_plane_state(bed) == before
    finally:
        sh(bed["testbed"], bed["cp"], f"rm -rf {LOCAL_DIR}/{name}")


def test_restore_refuses_a_snapshot_of_another_cluster_and_changes_nothing(bed, snapshot):
    """The snapshot of another cluster is this snapshot with that cluster's CA fingerprint in its record: a
    freshly made CA stands for the other cluster's (kubeadm makes one per cluster)."""
    tb = bed["testbed"]
    before = control_plane_state(bed)
    other_ca = (
        "openssl req -x509 -newkey ed25519 -nodes -keyout /dev/null -subj /CN=kubernetes -days 1 2>/dev/null"
        " | sha256sum | cut -d' ' -f1"
    )
    rewrite = (
        "import json, sys; m = json.load(open('meta.json')); m['ca_sha256'] = sys.argv[1];"
        " json.dump(m, open('meta.json', 'w'))"
    )
    name = forged(bed, snapshot, "20200102T000000Z", f"python3 -c {shlex.quote(rewrite)} $({other_ca})")
    try:
        assert snapshot["ca_sha256"] not in sh(tb, bed["cp"], f"cat {LOCAL_DIR}/{name}/meta.json")
        result = play(bed, "restore.yml", anvil_restore_snapshot=name, anvil_restore_confirm="yes")
        assert result.rc != 0
        assert f"{name} comes from another cluster: its cluster CA differs from the one on {bed['cp']}" in result.stdout
        assert control_plane_state(bed) == before
    finally:
        sh(tb, bed["cp"], f"rm -rf {LOCAL_DIR}/{name}")


def test_restore_brings_back_every_object_after_etcd_is_wiped(bed, workload, snapshot):
    tb, cp = bed["testbed"], bed["cp"]
    keys_before = er.etcd_keys(tb, cp)
    assert keys_before > 300
    # The disaster: the objects deleted, etcd's data directory wiped (etcd stopped first, so it cannot write
    # its old state back), etcd started empty; the control plane's own snapshot goes too, so the restore
    # must take the copy on the backup host.
    er.wipe_etcd(tb, [cp])
    sh(tb, cp, f"rm -rf {LOCAL_DIR}/{snapshot['name']}")
    keys_after_wipe = er.wait_nearly_empty(tb, cp, keys_before)
    print(f"\netcd keys: {keys_before} before the wipe, {keys_after_wipe} after")

    result = play(bed, "restore.yml", anvil_restore_snapshot=snapshot["name"], anvil_restore_confirm="yes")
    ok(result)
    TIMINGS["restore.yml"] = result.seconds
    restored = result.data.get("global_custom_stats", {}).get("etcd_restored") or {}
    assert restored.get("name") == snapshot["name"] and restored.get("revision") == snapshot["revision"], restored
    assert restored.get("source") == bed["store"] and restored.get("members") == [cp], restored
    print(f"restore.yml: {result.seconds:.1f} s from {restored['source']}, revision {restored['revision']}")
    er.assert_restored(tb, cp, nodes=3)


def test_a_rerun_of_site_after_the_restore_changes_nothing(bed):
    result = play(bed, "site.yml")
    ok(result)
    assert result.changed() == 0, [
        t["task"]["name"] for t in result.tasks if any(h.get("changed") for h in t["hosts"].values())
    ]
    print(f"\ntimings: {TIMINGS}")
