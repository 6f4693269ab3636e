"""OCI images from the cached binaries, named and tagged the way kubeadm expects.

Each image is one layer: the static binary (at its entrypoint path), a few files every process
expects (/etc/passwd, /etc/group, /etc/nsswitch.conf, a CA bundle, /tmp) and, only where the
component needs it, Debian userland unpacked from bookworm packages (kube-proxy and flannel run
iptables/nft; flannel's init containers run `cp`). Images are assembled with umoci into OCI layouts
under $ANVIL_CACHE/images/<name>/<tag>/ and copied to a registry with skopeo (Debian packages;
no hand-written registry client).

Images of older Kubernetes releases (the manifest's `releases`) are built, verified, pushed and listed only
when asked for with `--kubernetes-releases v1.34.12` (or `all`): the release's control-plane images and the
etcd, CoreDNS and pause images it expects, each under its own tag.

CLI:
    python tools/images.py build [--only kube-apiserver,pause] [--force] [--kubernetes-releases all]
    python tools/images.py verify [--only ...]   # inspect config + run the binary's --version in a chroot
    python tools/images.py push --registry 127.0.0.1:5000 [--repo anvil]
    python tools/images.py list [--repo 198.18.0.1:5000/anvil]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import anvil_env
from tools.artifacts import component_dir, component_images, kubernetes_release_list, load_manifest, releases

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed timestamps so that the same inputs give the same layer and config (2026-01-01T00:00:00Z).
EPOCH = 1767225600
CREATED = "2026-01-01T00:00:00Z"
IPTABLES_ALTERNATIVES = (
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)
# Bump when the way userland trees are assembled changes (they are cached by package list).
USERLAND_REV = 2
# The registry repository path images are pushed under (kubeadm: imageRepository <addr>:5000/anvil).
DEFAULT_REPO = os.environ.get("ANVIL_IMAGE_REPO_PATH", "anvil")


def images_root() -> Path:
    return Path(anvil_env.ANVIL_CACHE) / "images"


def plan_images(manifest: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Everything needed to build each image, derived from the manifest alone (pure)."""
    specs = []
    for comp_name, comp in manifest["anvil_versions"].items():
        source = comp["source"]
        for img in component_images(comp):
            binary = img.get("binary") or img["name"]
            entrypoint = img.get("entrypoint") or f"/usr/local/bin/{binary}"
            files = {entrypoint: f"{comp_name}/{binary}"}
            files.update(img.get("extra_files") or {})
            origin = source.get("module") or source.get("path") or source.get("package") or ""
            labels = {
                "org.opencontainers.image.title": img["name"],
                "org.opencontainers.image.version": comp["version"],
                "org.opencontainers.image.source": origin,
                "org.opencontainers.image.description": f"{img['name']} built from source by anvil.cluster",
                "io.anvil.source.type": source["type"],
                "io.anvil.source.module": origin,
                "io.anvil.source.version": comp["version"],
            }
            specs.append(
                {
                    "name": img["name"],
                    "tag": str(img["tag"]),
                    "component": comp_name,
                    "entrypoint": entrypoint,
                    "files": files,
                    "userland": list(img.get("userland") or []),
                    "labels": labels,
                    "version_args": list(img.get("version_args") or _default_version_args(img["name"])),
                    # Numeric user the image runs as (pods with runAsNonRoot need one); default root.
                    "user": str(img.get("user") or ""),
                    # Directories the (non-root) user writes to, created in the image and owned by it.
                    "writable_dirs": list(img.get("writable_dirs") or []),
                    # What `verify` runs with version_args: the entrypoint, unless it has no version flag.
                    "version_binary": img.get("version_binary") or entrypoint,
                }
            )
    return specs


def release_manifest(manifest: Dict[str, Any], version: str) -> Dict[str, Any]:
    """The manifest as Kubernetes `version` deploys it: its components (kubernetes, etcd, coredns, pause) at the
    versions that release has or expects, every other component as it is."""
    view = dict(manifest)
    view["anvil_versions"] = {
        **manifest["anvil_versions"],
        **releases.kubernetes_release(manifest["anvil_versions"], version),
    }
    return view


def plan_all_images(
    manifest: Dict[str, Any], kubernetes: List[str] = ()
) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(spec, manifest it is built from) of every default image, then of each image the given Kubernetes
    releases add (an image name and tag once)."""
    plans = [(spec, manifest) for spec in plan_images(manifest)]
    seen = {(s["name"], s["tag"]) for s, _ in plans}
    for version in kubernetes:
        view = release_manifest(manifest, version)
        own = set(releases.kubernetes_release(manifest["anvil_versions"], version))
        for spec in plan_images(view):
            if spec["component"] in own and (spec["name"], spec["tag"]) not in seen:
                seen.add((spec["name"], spec["tag"]))
                plans.append((spec, view))
    return plans


def _default_version_args(name: str) -> List[str]:
    return {"pause": ["-v"], "coredns": ["-version"], "flannel": ["--version"]}.get(name, ["--version"])


def layout_dir(spec: Dict[str, Any]) -> Path:
    return images_root() / spec["name"] / spec["tag"]


def oci_ref(spec: Dict[str, Any]) -> str:
    """The image in skopeo's transport syntax."""
    return f"oci:{layout_dir(spec)}:{spec['tag']}"


def umoci_ref(spec: Dict[str, Any]) -> str:
    """The image in umoci's syntax (layout:tag, no transport)."""
    return f"{layout_dir(spec)}:{spec['tag']}"


def _run(cmd: List[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


# --------------------------------------------------------------------------------------------
# Debian userland
# --------------------------------------------------------------------------------------------


def download_deb_closure(packages: List[str], dest: Path) -> List[Path]:
    """Download `packages` and their whole dependency closure (as for an empty bookworm host) to dest.

    apt resolves against an empty dpkg status, so nothing installed on this build host is assumed
    present on the target. Returns the .deb files. Used for image userland and the apt mirror.
    """
    archives = dest / "archives"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    status = dest / "empty-status"
    status.write_text("")
    _run(
        [
            "apt-get",
            "install",
            "--download-only",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            f"Dir::State::status={status}",
            "-o",
            f"Dir::Cache::archives={archives}",
            "-o",
            "Debug::NoLocking=1",
            *packages,
        ],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return sorted(archives.glob("*.deb"))


def userland_dir(groups: List[str], manifest: Dict[str, Any]) -> Optional[Path]:
    """An unpacked, trimmed root tree with the Debian packages of the given userland groups."""
    if not groups:
        return None
    table = manifest.get("anvil_image_userland") or {}
    packages = sorted({p for g in groups for p in table[g]})
    key = hashlib.sha256(json.dumps([USERLAND_REV, packages]).encode()).hexdigest()[:12]
    base = images_root() / "userland" / f"{'-'.join(groups)}-{key}"
    root = base / "rootfs"
    if (base / ".done").exists():
        return root
    if base.exists():
        shutil.rmtree(base)
    debs = download_deb_closure(packages, base / "debs")
    root.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)])
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian"):
        shutil.rmtree(root / junk, ignore_errors=True)
    sbin = root / "usr/sbin"
    # dpkg-deb -x does not run maintainer scripts: set up what update-alternatives would (nft mode).
    for name in IPTABLES_ALTERNATIVES:
        nft_name = name.replace("tables", "tables-nft", 1)  # iptables-restore -> iptables-nft-restore
        if (sbin / nft_name).exists() and not (sbin / name).exists():
            (sbin / name).symlink_to(nft_name)
    busybox = root / "bin/busybox"
    if busybox.exists():
        applets = _run([str(busybox), "--list-full"]).stdout.split()
        for applet in applets:
            link = root / applet
            if not link.exists() and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    _run(["ldconfig", "-r", str(root)])
    (base / ".done").write_text("\n".join(d.name for d in debs) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# Image assembly
# --------------------------------------------------------------------------------------------


def _base_files(root: Path) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    if not (etc / "passwd").exists():
        (etc / "passwd").write_text(
            "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        )
    if not (etc / "group").exists():
        (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        (etc / "ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle, etc / "ssl/certs/ca-certificates.crt")
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)


def _fix_times(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))


def input_digest(spec: Dict[str, Any], manifest: Dict[str, Any]) -> str:
    """Hash of everything the image is made of: a changed binary or spec rebuilds the image."""
    versions = manifest["anvil_versions"]
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for src in sorted(spec["files"].values()):
        comp, _, binary = src.partition("/")
        path = component_dir(comp, versions[comp]["version"]) / binary
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    table = manifest.get("anvil_image_userland") or {}
    h.update(json.dumps([USERLAND_REV, [table.get(g) for g in spec["userland"]]]).encode())
    return h.hexdigest()[:16]


def build_image(spec: Dict[str, Any], manifest: Dict[str, Any], force: bool = False) -> str:
    """Build one image into its OCI layout; returns "cached" or "built"."""
    versions = manifest["anvil_versions"]
    layout = layout_dir(spec)
    digest = input_digest(spec, manifest)
    stamp = layout / ".anvil-inputs"
    if not force and stamp.exists() and stamp.read_text().strip() == digest:
        return "cached"
    for src in spec["files"].values():
        comp, _, binary = src.partition("/")
        if not (component_dir(comp, versions[comp]["version"]) / binary).is_file():
            raise RuntimeError(f"{spec['name']}: {src} is not built; run `make artifacts` first")
    if layout.exists():
        shutil.rmtree(layout)
    layout.parent.mkdir(parents=True, exist_ok=True)
    userland = userland_dir(spec["userland"], manifest)
    with tempfile.TemporaryDirectory(dir=layout.parent) as tmp:
        root = Path(tmp) / "rootfs"
        if userland:
            shutil.copytree(userland, root, symlinks=True)
        else:
            root.mkdir()
        _base_files(root)
        for dest, src in spec["files"].items():
            comp, _, binary = src.partition("/")
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(component_dir(comp, versions[comp]["version"]) / binary, target)
            target.chmod(0o755)
        owner = int(spec["user"]) if spec["user"].isdigit() else 0
        for rel in spec["writable_dirs"]:
            target = root / rel.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o755)
            os.chown(target, owner, owner)
        _fix_times(root)
        ref = umoci_ref(spec)
        _run(["umoci", "init", "--layout", str(layout)])
        _run(["umoci", "new", "--image", ref])
        _run(["umoci", "insert", "--no-history", "--image", ref, str(root), "/"])
        cfg = [
            "umoci",
            "config",
            "--image",
            ref,
            "--no-history",
            "--os",
            "linux",
            "--architecture",
            "amd64",
            "--created",
            CREATED,
            "--config.env",
            PATH_ENV,
            "--config.entrypoint",
            spec["entrypoint"],
            "--config.workingdir",
            "/",
        ]
        if spec["user"]:
            cfg += ["--config.user", spec["user"]]
        for k, v in spec["labels"].items():
            cfg += ["--config.label", f"{k}={v}", "--manifest.annotation", f"{k}={v}"]
        _run(cfg)
        _run(["umoci", "gc", "--layout", str(layout)])
    stamp.write_text(digest + "\n")
    return "built"


def inspect_image(spec: Dict[str, Any]) -> Dict[str, Any]:
    out = _run(["skopeo", "inspect", "--config", oci_ref(spec)]).stdout
    return json.loads(out)


def verify_image(spec: Dict[str, Any]) -> str:
    """Check entrypoint/architecture/labels, then run the entrypoint's version flag inside the rootfs.

    The rootfs is unpacked with umoci and the binary run under chroot (no container runtime
    needed): this proves the image carries a runnable binary and every library it loads.
    """
    cfg = inspect_image(spec)
    problems = []
    if cfg.get("architecture") != "amd64" or cfg.get("os") != "linux":
        problems.append(f"platform {cfg.get('os')}/{cfg.get('architecture')}")
    if cfg.get("config", {}).get("Entrypoint") != [spec["entrypoint"]]:
        problems.append(f"entrypoint {cfg.get('config', {}).get('Entrypoint')}")
    if (cfg.get("config", {}).get("User") or "") != spec["user"]:
        problems.append(f"user {cfg.get('config', {}).get('User')!r}, want {spec['user']!r}")
    labels = cfg.get("config", {}).get("Labels") or {}
    if labels.get("io.anvil.source.version") != spec["labels"]["io.anvil.source.version"]:
        problems.append("labels")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "rootfs"
        _run(["umoci", "raw", "unpack", "--image", umoci_ref(spec), str(root)])
        run = subprocess.run(
            ["chroot", str(root), spec["version_binary"], *spec["version_args"]],
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": PATH_ENV.split("=", 1)[1]},
            timeout=60,
        )
        first = (run.stdout + run.stderr).strip().splitlines()
        version_line = first[0] if first else ""
        if run.returncode != 0:
            problems.append(f"{spec['version_binary']} {' '.join(spec['version_args'])} rc={run.returncode}")
        for tool in ("iptables", "nft", "ip6tables-restore") if "netfilter" in spec["userland"] else ():
            t = subprocess.run(["chroot", str(root), tool, "--version"], capture_output=True, text=True, check=False)
            if t.returncode != 0:
                problems.append(f"{tool} --version rc={t.returncode}: {t.stderr.strip()[:200]}")
    if problems:
        raise RuntimeError(f"{spec['name']}:{spec['tag']}: " + "; ".join(problems))
    return version_line


def push_image(spec: Dict[str, Any], registry: str, repo: str = DEFAULT_REPO) -> str:
    dest = f"docker://{registry}/{repo}/{spec['name']}:{spec['tag']}"
    _run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", oci_ref(spec), dest])
    return dest[len("docker://") :]


def select(specs: List[Any], only: Optional[str]) -> List[Any]:
    """The specs (or (spec, manifest) pairs) of the named images; all when `only` is empty."""
    if not only:
        return specs
    spec_of = (lambda s: s[0]) if specs and isinstance(specs[0], tuple) else (lambda s: s)
    names = {s.strip() for s in only.split(",") if s.strip()}
    unknown = names - {spec_of(s)["name"] for s in specs}
    if unknown:
        raise SystemExit(f"unknown image(s): {', '.join(sorted(unknown))}")
    return [s for s in specs if spec_of(s)["name"] in names]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("build", "verify", "push", "list"):
        p = sub.add_parser(name)
        p.add_argument("--only", help="comma-separated image names")
        if name == "build":
            p.add_argument("--force", action="store_true")
        if name == "push":
            p.add_argument("--registry", default=f"127.0.0.1:{anvil_env.ANVIL_REGISTRY_PORT}")
        if name in ("push", "list"):
            p.add_argument("--repo", default=DEFAULT_REPO)
        p.add_argument(
            "--kubernetes-releases", help="also the images of these Kubernetes releases ('all' or v1.34.12,...)"
        )
    args = parser.parse_args(argv)
    if args.cmd == "build":
        with anvil_env.build_lock("images build"):
            return run(args)
    return run(args)


def run(args: argparse.Namespace) -> int:
    manifest = load_manifest()
    plans = select(plan_all_images(manifest, kubernetes_release_list(args.kubernetes_releases, manifest)), args.only)
    failed = []
    for spec, source in plans:
        t0 = time.monotonic()
        label = f"{spec['name']}:{spec['tag']}"
        try:
            if args.cmd == "build":
                state = build_image(spec, source, force=args.force)
                size = sum(f.stat().st_size for f in (layout_dir(spec) / "blobs").rglob("*") if f.is_file())
                print(f"[{state:<6}] {label:<36} {size / 1e6:6.1f}MB  {time.monotonic() - t0:5.1f}s", flush=True)
            elif args.cmd == "verify":
                line = verify_image(spec)
                print(f"[ok    ] {label:<36} entrypoint {spec['entrypoint']}  linux/amd64  -> {line}", flush=True)
            elif args.cmd == "push":
                print(
                    f"[pushed] {push_image(spec, args.registry, args.repo)}  {time.monotonic() - t0:.1f}s", flush=True
                )
            else:
                print(f"{args.repo}/{label}")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failed.append(label)
            print(f"[FAIL  ] {label}: {exc}", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
