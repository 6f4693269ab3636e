"""etcd snapshots of one control plane, managed by anvil.cluster (role etcd_backup).

  anvil-etcd-snapshot save  [--config FILE]   snapshot the local member, verify it, keep the newest N,
                                              copy it to the backup hosts; prints the result as JSON
  anvil-etcd-snapshot prune --dir DIR --keep N   (on a backup host) keep the newest N complete snapshots
                                              in each directory below DIR
  anvil-etcd-snapshot list  [--config FILE]   the complete local snapshots, newest first, as JSON

A snapshot is a directory <name>/ (0700) holding snapshot.db (etcdctl snapshot save), the API server's
encryption configuration (needed to read Secrets back) and meta.json (cluster, node, time, etcd revision,
sha256 of snapshot.db, sha256 of the cluster CA certificate that identifies the cluster). It is written
under a hidden name and renamed only once `etcdutl snapshot status` has read it: a directory without the
leading dot is always complete. Standard library only: it runs on every control plane and backup host.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_CONFIG = "/etc/kubernetes/anvil/etcd-backup.json"
SNAPSHOT_FILE = "snapshot.db"
META_FILE = "meta.json"
ENCRYPTION_FILE = "encryption-config.yaml"
# <cluster>-<UTC time>-<node>: sortable by time within one node's directory.
NAME_RE = re.compile(r"^(?P<cluster>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<stamp>\d{8}T\d{6}Z)-(?P<node>[-a-zA-Z0-9.]+)$")


class SnapshotError(Exception):
    """A step failed; the message says which and why."""


def snapshot_name(cluster: str, node: str, when: datetime.datetime) -> str:
    return f"{cluster}-{when.strftime('%Y%m%dT%H%M%SZ')}-{node}"


def complete_snapshots(directory: Path) -> list[Path]:
    """The complete snapshots in a directory, newest first (hidden names are partial writes)."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = NAME_RE.match(entry.name)
        if match and entry.is_dir() and (entry / META_FILE).is_file() and (entry / SNAPSHOT_FILE).is_file():
            found.append((match.group("stamp"), entry.name, entry))
    return [entry for _stamp, _name, entry in sorted(found, reverse=True)]


def to_prune(directory: Path, keep: int) -> list[Path]:
    """What retention removes: complete snapshots beyond the newest `keep`, and partial writes other
    than the newest one (a save that is still running is never older than the last complete one)."""
    if keep < 1:
        raise SnapshotError(f"retention must keep at least 1 snapshot, not {keep}")
    doomed = complete_snapshots(directory)[keep:]
    partial = sorted(p for p in directory.iterdir() if p.name.startswith(".partial-")) if directory.is_dir() else []
    return doomed + partial[:-1]


def prune(directory: Path, keep: int) -> list[str]:
    removed = []
    for path in to_prune(directory, keep):
        shutil.rmtree(path)
        removed.append(path.name)
    return removed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(cmd: list[str], what: str, timeout: int) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        raise SnapshotError(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def status(etcdutl: str, db: Path, timeout: int = 300) -> dict:
    """`etcdutl snapshot status` of a file: hash, revision, totalKey, totalSize (fails on a damaged file)."""
    out = run([etcdutl, "snapshot", "status", str(db), "--write-out=json"], f"etcdutl snapshot status {db}", timeout)
    try:
        data = json.loads(out)
    except ValueError as exc:
        raise SnapshotError(f"etcdutl snapshot status {db}: unreadable answer {out[:200]!r}") from exc
    if not isinstance(data, dict) or "revision" not in data:
        raise SnapshotError(f"etcdutl snapshot status {db}: no revision in {out[:200]!r}")
    return data


def save(cfg: dict) -> dict:
    directory = Path(cfg["dir"])
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    name = snapshot_name(cfg["cluster"], cfg["node"], now)
    final = directory / name
    if final.exists():
        raise SnapshotError(f"{final} exists already (two snapshots within one second)")
    work = directory / f".partial-{name}"
    work.mkdir(mode=0o700)
    try:
        db = work / SNAPSHOT_FILE
        run(
            [
                cfg["etcdctl"],
                f"--endpoints={cfg['endpoint']}",
                f"--cacert={cfg['ca']}",
                f"--cert={cfg['cert']}",
                f"--key={cfg['key']}",
                f"--command-timeout={cfg.get('timeout', 300)}s",
                "snapshot",
                "save",
                str(db),
            ],
            "etcdctl snapshot save",
            int(cfg.get("timeout", 300)) + 30,
        )
        os.chmod(db, 0o600)
        info = status(cfg["etcdutl"], db)
        encryption = Path(cfg["encryption_config"])
        if encryption.is_file():
            shutil.copyfile(encryption, work / ENCRYPTION_FILE)
            os.chmod(work / ENCRYPTION_FILE, 0o600)
        meta = {
            "format": 1,
            "name": name,
            "cluster": cfg["cluster"],
            "node": cfg["node"],
            "time": now.isoformat().replace("+00:00", "Z"),
            "revision": info["revision"],
            "total_keys": info.get("totalKey"),
            "total_size": info.get("totalSize"),
            "etcd_hash": info.get("hash"),
            "etcd_version": info.get("version", ""),
            "sha256": sha256_file(db),
            "size": db.stat().st_size,
            "ca_sha256": sha256_file(Path(cfg["cluster_ca"])),
            "encryption_config": (work / ENCRYPTION_FILE).is_file(),
        }
        with open(work / META_FILE, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(work / META_FILE, 0o600)
        os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result = {"snapshot": meta, "path": str(final), "pruned": prune(directory, int(cfg["keep"])), "copied_to": []}
    # Every complete local snapshot, not only the new one: a copy missed while a backup host was down is
    # caught up by the next run (rsync sends only what the host lacks).
    local = complete_snapshots(directory)
    for dest in cfg.get("destinations", []):
        push(cfg, local, dest)
        result["copied_to"].append(dest["host"])
    return result


def push(cfg: dict, snapshots: list[Path], dest: dict) -> None:
    """rsync over SSH with this node's own key; the backup host confines the key to this node's directory,
    write-only and without deletes (rrsync -wo -no-del), so a node can neither read nor remove copies."""
    ssh = " ".join(
        [
            "ssh",
            f"-i {cfg['ssh_key']}",
            f"-o UserKnownHostsFile={cfg['known_hosts']}",
            "-o StrictHostKeyChecking=yes",
            "-o BatchMode=yes",
            f"-o ConnectTimeout={int(cfg.get('connect_timeout', 10))}",
            f"-p {int(dest.get('port', 22))}",
        ]
    )
    run(
        ["rsync", "-a", "--delay-updates", "-e", ssh, *map(str, snapshots), f"{dest['user']}@{dest['address']}:"],
        f"copy to {dest['host']} ({dest['address']})",
        int(cfg.get("copy_timeout", 1800)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anvil-etcd-snapshot", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_save = sub.add_parser("save")
    p_save.add_argument("--config", default=DEFAULT_CONFIG)
    p_list = sub.add_parser("list")
    p_list.add_argument("--config", default=DEFAULT_CONFIG)
    p_prune = sub.add_parser("prune")
    p_prune.add_argument("--dir", required=True, type=Path)
    p_prune.add_argument("--keep", required=True, type=int)
    args = parser.parse_args(argv)
    os.umask(0o077)
    try:
        if args.cmd == "prune":
            removed = []
            for sub_dir in sorted(p for p in args.dir.iterdir() if p.is_dir()) if args.dir.is_dir() else []:
                removed += [f"{sub_dir.name}/{name}" for name in prune(sub_dir, args.keep)]
            print(json.dumps({"pruned": removed}))
            return 0
        with open(args.config, encoding="utf-8") as fh:
            cfg = json.load(fh)
        if args.cmd == "list":
            snaps = [json.loads((p / META_FILE).read_text()) for p in complete_snapshots(Path(cfg["dir"]))]
            print(json.dumps({"snapshots": snaps}))
            return 0
        print(json.dumps(save(cfg)))
        return 0
    except (SnapshotError, OSError, ValueError, KeyError) as exc:
        print(f"anvil-etcd-snapshot: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
