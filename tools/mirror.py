"""The offline mirror: what an air-gapped customer runs inside the data center, served from this host.

    http://<addr>:8080/files/<component>/<version>/linux-amd64/<binary>   ($ANVIL_CACHE/files)
    http://<addr>:8080/apt/         deb [trusted=yes] http://<addr>:8080/apt ./
    <addr>:5000/anvil/<image>:<tag>  OCI registry (Debian's docker-registry, distribution v2)

It listens on loopback and on the testbed bridge address (never on all interfaces). Every address
gets its own pair of processes: Python's standard http.server (static files; no code of ours in
the request path) and a docker-registry sharing one storage directory. Pushes go through loopback.

    python tools/mirror.py up       # idempotent: builds the apt repo once, starts what is not running,
                                    # waits until every endpoint answers, pushes the built images
    python tools/mirror.py down     # stops every mirror process (and their process groups)
    python tools/mirror.py status   # exit 0 when everything answers
    python tools/mirror.py push     # push the built images the running registry lacks (after make artifacts-upgrade)

Settings (environment): ANVIL_MIRROR_ADDRS (default "127.0.0.1,<bridge address>"),
ANVIL_MIRROR_HTTP_PORT (8080), ANVIL_REGISTRY_PORT (5000), ANVIL_CACHE, ANVIL_STATE.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import anvil_env
from tools.artifacts import load_manifest

STATE = Path(anvil_env.ANVIL_STATE) / "mirror"
CACHE = Path(anvil_env.ANVIL_CACHE)
REGISTRY_ROOT = CACHE / "registry"
APT_ROOT = CACHE / "apt"
WWW = STATE / "www"


def mirror_addrs(with_bridge: bool = True) -> List[str]:
    env = os.environ.get("ANVIL_MIRROR_ADDRS")
    if env:
        return [a.strip() for a in env.split(",") if a.strip()]
    return ["127.0.0.1", anvil_env.ANVIL_BRIDGE_ADDR] if with_bridge else ["127.0.0.1"]


def services(addrs: List[str]) -> Dict[str, Dict]:
    """name -> {cmd, addr, port, kind}: the processes that make up the mirror."""
    http_port = anvil_env.ANVIL_MIRROR_HTTP_PORT
    reg_port = anvil_env.ANVIL_REGISTRY_PORT
    out = {}
    for addr in addrs:
        out[f"http-{addr}"] = {
            "kind": "http",
            "addr": addr,
            "port": http_port,
            "cmd": [sys.executable, "-m", "http.server", "--bind", addr, "--directory", str(WWW), str(http_port)],
        }
        out[f"registry-{addr}"] = {
            "kind": "registry",
            "addr": addr,
            "port": reg_port,
            "cmd": ["docker-registry", "serve", str(registry_config(addr, reg_port))],
        }
    return out


def registry_config(addr: str, port: int) -> Path:
    """Write the registry's config (plain HTTP; nodes list it as an insecure mirror endpoint)."""
    path = STATE / f"registry-{addr}.yml"
    text = f"""version: 0.1
log:
  level: info
  fields:
    service: anvil-mirror-registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {REGISTRY_ROOT}
  delete:
    enabled: true
http:
  addr: {addr}:{port}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# apt repository
# --------------------------------------------------------------------------------------------


def apt_repo_key(packages: List[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(set(packages))).encode()).hexdigest()[:12]


def ensure_apt_repo(packages: List[str]) -> Path:
    """Download the packages with their closure into $ANVIL_CACHE/apt/<key>/ and index it once.

    The key is a hash of the package list, so changing the list in the manifest makes a new repo;
    `apt/current` points at the one the mirror serves.
    """
    from tools.images import download_deb_closure  # shared with the image userland

    repo = APT_ROOT / apt_repo_key(packages)
    if not (repo / ".done").exists():
        t0 = time.monotonic()
        print(f"apt: downloading {len(packages)} packages with their dependencies ...", flush=True)
        debs = download_deb_closure(packages, repo / "work")
        for deb in debs:
            target = repo / deb.name
            if not target.exists():
                os.link(deb, target)
        with open(repo / "Packages", "w") as fh:
            subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=repo, stdout=fh, check=True,
                           stderr=subprocess.DEVNULL)  # fmt: skip
        subprocess.run(["gzip", "-9kf", "Packages"], cwd=repo, check=True)
        release = subprocess.run(
            ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=anvil-mirror", "release", "."],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (repo / "Release").write_text(release)
        (repo / ".done").write_text("\n".join(sorted(packages)) + "\n")
        print(f"apt: {len(debs)} .debs indexed in {time.monotonic() - t0:.0f}s", flush=True)
    current = APT_ROOT / "current"
    if not current.is_symlink() or os.readlink(current) != repo.name:
        tmp = APT_ROOT / ".current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(repo.name)
        os.replace(tmp, current)
    return repo


def ensure_www() -> None:
    """The HTTP root: symlinks to the cache (http.server follows them)."""
    WWW.mkdir(parents=True, exist_ok=True)
    (CACHE / "files").mkdir(parents=True, exist_ok=True)
    for name, target in (("files", CACHE / "files"), ("apt", APT_ROOT / "current")):
        link = WWW / name
        if not link.is_symlink() or Path(os.readlink(link)) != target:
            link.unlink(missing_ok=True)
            link.symlink_to(target)


# --------------------------------------------------------------------------------------------
# process management
# --------------------------------------------------------------------------------------------


def _pidfile(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def _running_pid(name: str, cmd: List[str]) -> Optional[int]:
    """The pid of our process `name` if it is alive and still runs `cmd`."""
    pf = _pidfile(name)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (ValueError, OSError):
        return None
    if [c.decode() for c in cmdline if c] != cmd:
        return None
    return pid


def _port_open(addr: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((addr, port)) == 0


def _endpoint_ok(svc: Dict) -> bool:
    url = f"http://{svc['addr']}:{svc['port']}" + ("/v2/" if svc["kind"] == "registry" else "/files/")
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_service(name: str, svc: Dict) -> str:
    if _running_pid(name, svc["cmd"]):
        return "running"
    if _port_open(svc["addr"], svc["port"]):
        raise RuntimeError(
            f"{svc['addr']}:{svc['port']} is already in use by a process this mirror did not start; "
            f"stop it or set ANVIL_MIRROR_HTTP_PORT / ANVIL_REGISTRY_PORT"
        )
    logs = STATE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pidfile(name).parent.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            svc["cmd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    _pidfile(name).write_text(f"{proc.pid}\n")
    return "started"


def stop_service(name: str, timeout: float = 10.0) -> Optional[int]:
    pf = _pidfile(name)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
    except ValueError:
        pf.unlink()
        return None
    try:
        os.killpg(pid, signal.SIGTERM)  # started with start_new_session: pgid == pid
    except ProcessLookupError:
        pf.unlink()
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    pf.unlink()
    return pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_ready(svcs: Dict[str, Dict], timeout: float = 30.0) -> List[str]:
    deadline = time.monotonic() + timeout
    pending = dict(svcs)
    while pending and time.monotonic() < deadline:
        for name in [n for n, s in pending.items() if _endpoint_ok(s)]:
            pending.pop(name)
        if pending:
            time.sleep(0.2)
    return sorted(pending)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def push_images(registry: str) -> None:
    """Push every built image once; a stamp in the registry storage remembers what is there.

    The images of the manifest's older Kubernetes releases are pushed when they are built
    (`make artifacts-upgrade`); when they are not, one line says so."""
    from tools import images
    from tools.artifacts import releases

    manifest = load_manifest()
    stamp_file = REGISTRY_ROOT / ".anvil-pushed.json"
    pushed = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}
    default = {(s["name"], s["tag"]) for s in images.plan_images(manifest)}
    older = releases.kubernetes_versions(manifest["anvil_versions"])[1:]
    not_built = []
    for spec, _source in images.plan_all_images(manifest, older):
        index = images.layout_dir(spec) / "index.json"
        ref = f"{spec['name']}:{spec['tag']}"
        if not index.exists():
            if (spec["name"], spec["tag"]) in default:
                print(f"registry: {ref} not built (run `make images`); skipped", flush=True)
            else:
                not_built.append(ref)
            continue
        digest = hashlib.sha256(index.read_bytes()).hexdigest()
        if pushed.get(ref) == digest:
            continue
        t0 = time.monotonic()
        dest = images.push_image(spec, registry)
        pushed[ref] = digest
        stamp_file.write_text(json.dumps(pushed, indent=1, sort_keys=True))
        print(f"registry: pushed {dest} in {time.monotonic() - t0:.1f}s", flush=True)
    if not_built:
        print(
            f"registry: {len(not_built)} images of Kubernetes {', '.join(older)} not built "
            "(`make artifacts-upgrade` builds them); skipped",
            flush=True,
        )


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def cmd_up(args) -> int:
    if not os.environ.get("ANVIL_MIRROR_ADDRS"):
        anvil_env.ensure_bridge()
    addrs = mirror_addrs()
    manifest = load_manifest()
    ensure_apt_repo(list(manifest.get("anvil_apt_packages") or []))
    ensure_www()
    REGISTRY_ROOT.mkdir(parents=True, exist_ok=True)
    svcs = services(addrs)
    for name, svc in svcs.items():
        print(f"{name}: {start_service(name, svc)}", flush=True)
    not_ready = wait_ready(svcs)
    if not_ready:
        print(f"not answering after 30s: {', '.join(not_ready)}; see {STATE / 'logs'}", file=sys.stderr)
        return 1
    if not args.no_push:
        push_images(f"127.0.0.1:{anvil_env.ANVIL_REGISTRY_PORT}")
    for addr in addrs:
        print(f"mirror: http://{addr}:{anvil_env.ANVIL_MIRROR_HTTP_PORT}/files/  "
              f"deb [trusted=yes] http://{addr}:{anvil_env.ANVIL_MIRROR_HTTP_PORT}/apt ./  "
              f"images {addr}:{anvil_env.ANVIL_REGISTRY_PORT}/anvil")  # fmt: skip
    return 0


def cmd_down(_args) -> int:
    pids_dir = STATE / "pids"
    names = sorted(p.stem for p in pids_dir.glob("*.pid")) if pids_dir.exists() else []
    for name in names:
        pid = stop_service(name)
        print(f"{name}: {'stopped (pid %d)' % pid if pid else 'was not running'}", flush=True)
    if not names:
        print("mirror: nothing running")
    return 0


def cmd_status(_args) -> int:
    svcs = services(mirror_addrs())
    ok = True
    for name, svc in svcs.items():
        pid = _running_pid(name, svc["cmd"])
        answering = _endpoint_ok(svc)
        ok = ok and bool(pid) and answering
        print(f"{name:<24} {svc['addr']}:{svc['port']:<6} pid={pid or '-':<8} {'answering' if answering else 'DOWN'}")
    return 0 if ok else 3


def cmd_push(_args) -> int:
    registry = {"kind": "registry", "addr": "127.0.0.1", "port": anvil_env.ANVIL_REGISTRY_PORT}
    if not _endpoint_ok(registry):
        print("the mirror's registry does not answer on 127.0.0.1: run `make mirror-up`", file=sys.stderr)
        return 1
    push_images(f"127.0.0.1:{anvil_env.ANVIL_REGISTRY_PORT}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--no-push", action="store_true", help="do not push the built images")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("push", help="push the built images the running registry lacks")
    args = parser.parse_args(argv)
    return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "push": cmd_push}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
