"""Artifact builder: the "source" producer of the offline mirror.

Builds every binary listed in vars/versions.yml from its upstream Go module (or from this
repository for our own programs) into a cache outside the repository, keyed by version:

    $ANVIL_CACHE/files/<component>/<version>/linux-amd64/<binary>

A binary whose recipe (module, version, package, flags, Go toolchain) has not changed is not rebuilt,
so a warm run only hashes files. After a build the sha256 of each binary is written back into the
manifest. Python API for the other tools and tests:

    from tools.artifacts import binary_path
    binary_path("kubernetes", "kube-apiserver")  # -> Path in the cache (may not exist yet)

Older releases kept for upgrades (a component's `releases` in the manifest) are built only when asked for:
`--kubernetes-releases v1.34.12` (or `all`) adds each named Kubernetes release and the etcd, CoreDNS and pause
versions it expects (`make artifacts-upgrade`); their sha256 are written into the release's own block.

CLI:
    python tools/artifacts.py build [--only etcd,kwok,kubernetes/kube-apiserver] [--force]
    python tools/artifacts.py build --kubernetes-releases all
    python tools/artifacts.py path <component> <binary>
    python tools/artifacts.py table
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import yaml

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import anvil_env

ARCH_DIR = "linux-amd64"
SOURCE_TYPES = ("go", "own", "deb", "unavailable")
BUILDABLE = ("go", "own")
# What a local API server (kube-apiserver + etcd + kwok) needs: `make artifacts-api`.
API_SELECTION = (
    "etcd/etcd",
    "etcd/etcdctl",
    "kubernetes/kube-apiserver",
    "kubernetes/kube-controller-manager",
    "kubernetes/kube-scheduler",
    "kubernetes/kubectl",
    "kwok/kwok",
)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# The Go toolchain: $GO, else `go` on PATH, else the standard install location.
GO = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"


class ManifestError(ValueError):
    """The versions manifest is malformed; the message lists every problem found."""


def _collection_module_utils(name: str):
    """A pure module of the collection (plugins/module_utils/<name>.py), loaded from this checkout: the
    builders and the roles share one implementation of what a release is."""
    path = anvil_env.REPO_ROOT / "plugins" / "module_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"anvil_cluster_module_utils_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


releases = _collection_module_utils("kubernetes_releases")


# --------------------------------------------------------------------------------------------
# Manifest: loading and validation (pure; unit-tested)
# --------------------------------------------------------------------------------------------


def load_manifest(path: Optional[Path] = None) -> Dict[str, Any]:
    path = Path(path or anvil_env.VERSIONS_FILE)
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    problems = validate_manifest(data)
    if problems:
        raise ManifestError(f"{path}: " + "; ".join(problems))
    return data


def component_images(comp: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The images of a component: `images:` (a list) or `image:` (a single mapping), or none."""
    if comp.get("images"):
        return list(comp["images"])
    if comp.get("image"):
        return [comp["image"]]
    return []


def validate_manifest(data: Any) -> List[str]:
    """Return a list of human-readable problems (empty when the manifest is usable)."""
    problems: List[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("anvil_versions"), dict):
        return ["top-level mapping `anvil_versions` is missing"]
    versions = data["anvil_versions"]
    if not versions:
        problems.append("anvil_versions is empty")
    image_names: Dict[str, str] = {}
    for name, comp in versions.items():
        where = f"anvil_versions.{name}"
        if not re.match(r"^[a-z0-9][a-z0-9-]*$", str(name)):
            problems.append(f"{where}: component names are lower-case words joined by '-'")
        if not isinstance(comp, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += _component_problems(name, where, comp, image_names)
        if isinstance(comp.get("releases"), dict) and "version" in comp:
            default_images = {(i.get("name"), i.get("tag")) for i in component_images(comp) if isinstance(i, dict)}
            for version in comp["releases"]:
                rwhere = f"{where}.releases.{version}"
                try:
                    entry = releases.component_at(versions, name, version)
                except releases.ReleaseError as exc:
                    problems.append(f"{rwhere}: {exc}")
                    continue
                problems += _component_problems(name, rwhere, entry, None)
                for img in component_images(entry):
                    if isinstance(img, dict) and (img.get("name"), img.get("tag")) in default_images:
                        problems.append(
                            f"{rwhere}: image {img['name']}:{img['tag']} is also the default's (give it its own tag)"
                        )
    problems += releases.release_problems(versions)
    apt = data.get("anvil_apt_packages", [])
    if not isinstance(apt, list) or not all(isinstance(p, str) and p for p in apt):
        problems.append("anvil_apt_packages: a list of Debian package names is required")
    return problems


def _component_problems(
    name: str, where: str, comp: Dict[str, Any], image_names: Optional[Dict[str, str]]
) -> List[str]:
    """Problems of one component entry (or of a release merged over it; `image_names` None: not checked for
    image names used by other components, a release reuses its own component's names)."""
    problems: List[str] = []
    version = comp.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.append(f"{where}.version: a non-empty string is required (quote numeric versions)")
    source = comp.get("source")
    if not isinstance(source, dict) or source.get("type") not in SOURCE_TYPES:
        problems.append(f"{where}.source.type: one of {', '.join(SOURCE_TYPES)} is required")
        return problems
    binaries = comp.get("binaries")
    if not isinstance(binaries, list) or not all(isinstance(b, str) and b for b in binaries):
        problems.append(f"{where}.binaries: a list of file names is required (may be empty)")
        binaries = []
    if len(set(binaries)) != len(binaries):
        problems.append(f"{where}.binaries: duplicate names")
    stype = source["type"]
    if stype == "go":
        if not source.get("module"):
            problems.append(f"{where}.source.module: required for type go")
        packages = source.get("packages")
        if not isinstance(packages, dict) or not packages:
            problems.append(f"{where}.source.packages: a mapping binary -> Go package is required")
        elif sorted(packages) != sorted(binaries):
            problems.append(f"{where}: source.packages keys must equal binaries")
        problems += _validate_sums(where, source)
    elif stype == "own" and not source.get("path"):
        problems.append(f"{where}.source.path: required for type own")
    elif stype == "deb" and not source.get("package"):
        problems.append(f"{where}.source.package: required for type deb")
    if stype in BUILDABLE and not binaries:
        problems.append(f"{where}.binaries: a buildable component must list its binaries")
    sha = comp.get("sha256")
    if sha is not None:
        if not isinstance(sha, dict):
            problems.append(f"{where}.sha256: must be a mapping binary -> sha256")
        else:
            for b, digest in sha.items():
                if b not in binaries:
                    problems.append(f"{where}.sha256.{b}: not one of the component's binaries")
                if not isinstance(digest, str) or not _SHA256_RE.match(digest):
                    problems.append(f"{where}.sha256.{b}: not a lower-case hex sha256")
    for img in component_images(comp):
        if not isinstance(img, dict) or not img.get("name") or img.get("tag") in (None, ""):
            problems.append(f"{where}: each image needs a name and a tag")
            continue
        if not isinstance(img["tag"], str):
            problems.append(f"{where}: image {img['name']} tag must be a string (quote it)")
        if img.get("binary") and img["binary"] not in binaries:
            problems.append(f"{where}: image {img['name']} binary {img['binary']} is not listed in binaries")
        if image_names is None:
            continue
        if img["name"] in image_names:
            problems.append(f"{where}: image name {img['name']} also used by {image_names[img['name']]}")
        image_names[img["name"]] = name
    return problems


def _validate_sums(where: str, source: Dict[str, Any]) -> List[str]:
    """Checksum-database exceptions: only named module prefixes, each with its hashes pinned."""
    problems: List[str] = []
    nosumdb = source.get("nosumdb") or []
    sums = source.get("sums") or {}
    if not isinstance(nosumdb, list) or not all(isinstance(p, str) and p for p in nosumdb):
        problems.append(f"{where}.source.nosumdb: a list of module path prefixes is required")
        nosumdb = []
    if not isinstance(sums, dict):
        return [*problems, f"{where}.source.sums: a mapping 'module version[/go.mod]' -> 'h1:...' is required"]
    for key, digest in sums.items():
        mod = str(key).split(" ", 1)[0]
        if not re.fullmatch(r"\S+ v\S+", str(key)) or not re.fullmatch(r"h1:[A-Za-z0-9+/]{43}=", str(digest)):
            problems.append(f"{where}.source.sums[{key!r}]: want 'module version' -> 'h1:<base64 sha256>'")
        elif not any(mod == p or mod.startswith(p.rstrip("/") + "/") for p in nosumdb):
            problems.append(f"{where}.source.sums[{key!r}]: pinned, but {mod} is not under source.nosumdb")
    for prefix in nosumdb:
        if not any(str(k).split(" ", 1)[0].startswith(prefix) for k in sums):
            problems.append(f"{where}.source.nosumdb: {prefix} skips the checksum database with no hash pinned")
    files = source.get("module_files") or {}
    if not isinstance(files, dict) or not all(isinstance(v, str) and not v.startswith("/") for v in files.values()):
        problems.append(f"{where}.source.module_files: a mapping file name -> path inside the module is required")
    return problems


def parse_selection(spec: Optional[str], manifest: Dict[str, Any]) -> List[Tuple[str, str]]:
    """Turn "etcd,kubernetes/kubectl" into [(component, binary), ...] (all binaries when spec is None)."""
    versions = manifest["anvil_versions"]
    wanted: List[Tuple[str, str]] = []
    items = [s.strip() for s in spec.split(",") if s.strip()] if spec else list(versions)
    for item in items:
        comp, _, binary = item.partition("/")
        if comp not in versions:
            raise ManifestError(f"unknown component {comp!r}; known: {', '.join(versions)}")
        binaries = versions[comp].get("binaries") or []
        if binary:
            if binary not in binaries:
                raise ManifestError(f"{comp} has no binary {binary!r}; it has: {', '.join(binaries)}")
            pairs = [(comp, binary)]
        else:
            pairs = [(comp, b) for b in binaries]
        wanted.extend(p for p in pairs if p not in wanted)
    return wanted


# --------------------------------------------------------------------------------------------
# Cache paths
# --------------------------------------------------------------------------------------------


def component_dir(component: str, version: str, cache: Optional[Path] = None) -> Path:
    return Path(cache or anvil_env.ANVIL_CACHE) / "files" / component / version / ARCH_DIR


def binary_path(component: str, binary: str, manifest: Optional[Dict[str, Any]] = None) -> Path:
    """Where `binary` of `component` (at the manifest's version) lives in the cache."""
    manifest = manifest or load_manifest()
    comp = manifest["anvil_versions"].get(component)
    if comp is None:
        raise KeyError(f"unknown component {component!r}")
    if binary not in (comp.get("binaries") or []):
        raise KeyError(f"component {component!r} has no binary {binary!r}")
    return component_dir(component, comp["version"]) / binary


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Go builds
# --------------------------------------------------------------------------------------------


def go_default_name(package: str) -> str:
    """The file name `go build -o dir/` gives a main package (last element, skipping a /vN suffix)."""
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


def render_ldflags(source: Dict[str, Any], version: str) -> str:
    extra = " ".join(str(source.get("ldflags", "")).split())
    return " ".join(["-s", "-w", extra.replace("{version}", version)]).strip()


def module_version(comp: Dict[str, Any]) -> str:
    """The Go module version to build: `source.module_version` where the proxy serves the release only
    as a pseudo-version (the component keeps its upstream version for cache paths and image tags)."""
    return str(comp["source"].get("module_version") or comp["version"])


def wrapper_gomod(name: str, comp: Dict[str, Any]) -> str:
    """go.mod of the wrapper module that requires the component's module at its version.

    Building through a wrapper (instead of `go install mod@version`) is what makes modules with
    local-path replace directives (k8s.io/kubernetes, etcd) buildable: replaces of a dependency are
    ignored, so the wrapper pins the published versions of those modules itself.
    """
    source = comp["source"]
    lines = [f"module anvil.local/build/{name}", "", "go 1.22", "", "require ("]
    lines.append(f"\t{source['module']} {module_version(comp)}")
    for mod, ver in sorted((source.get("requires") or {}).items()):
        lines.append(f"\t{mod} {ver}")
    lines.append(")")
    local = source.get("replace_local") or {}
    if local:  # stand-ins kept in this repository for modules the Go proxy does not serve
        lines += ["", "replace ("]
        lines += [f"\t{m} => {(anvil_env.REPO_ROOT / p).resolve()}" for m, p in sorted(local.items())]
        lines.append(")")
    staging = source.get("staging_version")
    if staging:
        mod_file = _module_gomod(source["module"], module_version(comp), source.get("nosumdb") or ())
        staged = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", mod_file, flags=re.M)
        lines += ["", "replace ("] + [f"\t{m} => {m} {staging}" for m in staged] + [")"]
    if source.get("inherit_replace"):
        # The module's own version replaces (a dependency's replaces are ignored by Go) are what it was
        # tested with; its local-path replaces are covered by `requires` / `replace_local` above.
        inherited = module_version_replaces(
            _module_gomod(source["module"], module_version(comp), source.get("nosumdb") or ())
        )
        inherited = [r for r in inherited if r[0] not in local]
        if inherited:
            lines += ["", "replace ("] + [f"\t{m} => {t} {v}" for m, t, v in inherited] + [")"]
    return "\n".join(lines) + "\n"


def module_version_replaces(gomod: str) -> List[Tuple[str, str, str]]:
    """The `old => new version` replace directives of a go.mod (local-path replaces left out)."""
    body = "\n".join(re.findall(r"^replace\s*\((.*?)^\)", gomod, flags=re.M | re.S))
    body += "\n" + "\n".join(re.findall(r"^replace\s+([^(\n].*)$", gomod, flags=re.M))
    out = []
    for line in body.splitlines():
        line = line.split("//", 1)[0].strip()
        m = re.fullmatch(r"(\S+)(?:\s+\S+)?\s+=>\s+(\S+)\s+(v\S+)", line)
        if m and not m.group(2).startswith((".", "/")):
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def pinned_sums(source: Dict[str, Any]) -> str:
    """go.sum lines for the modules the checksum database does not know (hashes kept in the manifest)."""
    return "".join(f"{mod} {h}\n" for mod, h in sorted((source.get("sums") or {}).items()))


def _module_gomod(module: str, version: str, nosumdb: Iterable[str] = ()) -> str:
    out = subprocess.run(
        [GO, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=True,
        env=go_env(nosumdb=nosumdb),
    )
    info = json.loads(out.stdout)
    return Path(info["GoMod"]).read_text(encoding="utf-8")


def module_proxy(value: Optional[str]) -> str:
    """GOPROXY without `direct` or `off`: a version the proxy refuses fails loudly, never falls back to git."""
    proxies = [p for p in re.split(r"[,|]", value or "") if p.strip() and p.strip() not in ("direct", "off")]
    return ",".join(proxies) or "https://proxy.golang.org"


def go_env(cgo: bool = False, nosumdb: Iterable[str] = ()) -> Dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(GO).parent), env.get("PATH", "")])
    configured = (
        env.get("GOPROXY")
        or subprocess.run([GO, "env", "GOPROXY"], capture_output=True, text=True, check=False).stdout.strip()
    )
    env.update(
        CGO_ENABLED="1" if cgo else "0",
        GOOS="linux",
        GOARCH="amd64",
        GOFLAGS="-buildvcs=false",
        GOTOOLCHAIN="local",
        GOPROXY=module_proxy(configured),
        GONOSUMDB=",".join(sorted(nosumdb)),
        GOPRIVATE="",
        GONOPROXY="",
    )
    return env


def go_version() -> str:
    return subprocess.run([GO, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def recipe_hash(name: str, comp: Dict[str, Any], binary: str, gover: str) -> str:
    source = comp["source"]
    recipe = {
        "component": name,
        "version": comp["version"],
        "source": {k: v for k, v in source.items() if k != "packages"},
        "package": (source.get("packages") or {}).get(binary),
        "go": gover,
    }
    # Code of ours that goes into the binary: rebuild when it changes.
    trees = [source["path"]] if source["type"] == "own" else sorted((source.get("replace_local") or {}).values())
    for rel in trees:
        src = anvil_env.REPO_ROOT / rel
        recipe.setdefault("trees", {})[rel] = hashlib.sha256(
            b"".join(p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file())
        ).hexdigest()
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _stamp_path(out_dir: Path, binary: str) -> Path:
    return out_dir / f".{binary}.recipe"


def is_cached(out_dir: Path, binary: str, recipe: str) -> bool:
    """Cached when the binary exists and was built from this recipe.

    A binary without a stamp (built by hand or by an earlier bootstrap, same layout) is adopted
    once: the stamp is written and it counts as cached.
    """
    target = out_dir / binary
    if not target.is_file() or target.stat().st_size == 0:
        return False
    stamp = _stamp_path(out_dir, binary)
    if not stamp.exists():
        stamp.write_text(recipe + "\n")
        return True
    return stamp.read_text().strip() == recipe


def _run(cmd: List[str], cwd: Path, log, cgo: bool = False, nosumdb: Iterable[str] = ()) -> None:
    log.write(f"$ (cd {cwd} && {' '.join(cmd)})\n")
    log.flush()
    env = go_env(cgo, nosumdb)
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed in {cwd} (rc={proc.returncode}); see {log.name}")


def build_go(name: str, comp: Dict[str, Any], *, binaries: List[str], out_dir: Path, jobs: int, log) -> None:
    source = comp["source"]
    work = Path(anvil_env.ANVIL_CACHE) / "build" / f"{name}-{comp['version']}"
    work.mkdir(parents=True, exist_ok=True)
    gomod = wrapper_gomod(name, comp)
    packages = sorted(set(source["packages"].values()))
    tools_go = "//go:build tools\n\npackage tools\n\nimport (\n" + "".join(f'\t_ "{p}"\n' for p in packages) + ")\n"
    sums = pinned_sums(source)
    inputs = hashlib.sha256((gomod + tools_go + sums).encode()).hexdigest()
    stamp = work / ".inputs"
    nosumdb = source.get("nosumdb") or ()
    if not (stamp.exists() and stamp.read_text().strip() == inputs and (work / "go.sum").exists()):
        (work / "go.mod").write_text(gomod)
        (work / "tools.go").write_text(tools_go)
        # Pinned hashes first: `go mod tidy` verifies what it downloads against them (a mismatch is a
        # SECURITY ERROR), which is how modules outside the checksum database stay verified.
        (work / "go.sum").write_text(sums)
        _run([GO, "mod", "tidy"], work, log, nosumdb=nosumdb)
        stamp.write_text(inputs + "\n")
    _go_build(work, source, version=comp["version"], binaries=binaries, out_dir=out_dir, jobs=jobs, log=log)
    copy_module_files(source, module_version(comp), out_dir, log)


def copy_module_files(source: Dict[str, Any], version: str, out_dir: Path, log) -> None:
    """Files the component ships inside its Go module (CRDs, manifests), copied next to its binaries."""
    files = source.get("module_files") or {}
    if not files:
        return
    info = json.loads(
        subprocess.run(
            [GO, "mod", "download", "-json", f"{source['module']}@{version}"],
            capture_output=True,
            text=True,
            check=True,
            env=go_env(nosumdb=source.get("nosumdb") or ()),
        ).stdout
    )
    for name, rel in files.items():
        src = Path(info["Dir"]) / rel
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        target.chmod(0o644)
        log.write(f"copied {source['module']}@{version}/{rel} -> {target}\n")


def build_own(name: str, comp: Dict[str, Any], *, binaries: List[str], out_dir: Path, jobs: int, log) -> None:
    src = anvil_env.REPO_ROOT / comp["source"]["path"]
    ldflags = f"-s -w -X main.version={comp['version']}"
    if len(binaries) != 1:
        raise RuntimeError(f"{name}: an own component builds exactly one binary")
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        _run([GO, "build", "-p", str(jobs), "-trimpath", "-ldflags", ldflags, "-o", f"{tmp}/out", "."], src, log)
        os.replace(Path(tmp) / "out", out_dir / binaries[0])


def _go_build(work: Path, source: Dict[str, Any], *, version: str, binaries, out_dir: Path, jobs: int, log) -> None:
    ldflags = render_ldflags(source, version)
    cgo = bool(source.get("cgo"))
    base = [GO, "build", "-p", str(jobs), "-trimpath"]
    if cgo:  # a component that needs cgo is still linked statically (glibc's libc.a, pure-Go resolver)
        ldflags += " -linkmode external -extldflags -static"
        base += ["-tags", "netgo,osusergo"]
    base += ["-ldflags", ldflags]
    pkgs = {b: source["packages"][b] for b in binaries}
    nosumdb = source.get("nosumdb") or ()
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        if all(go_default_name(p) == b for b, p in pkgs.items()):
            # One invocation: the packages compile in parallel and share work.
            _run([*base, "-o", tmp + "/", *pkgs.values()], work, log, cgo, nosumdb)
        else:
            for b, p in pkgs.items():
                _run([*base, "-o", str(Path(tmp) / b), p], work, log, cgo, nosumdb)
        for b in binaries:  # atomic replace: running processes keep their old inode
            os.replace(Path(tmp) / b, out_dir / b)


# --------------------------------------------------------------------------------------------
# Builder driver
# --------------------------------------------------------------------------------------------


def kubernetes_release_list(spec: Optional[str], manifest: Dict[str, Any]) -> List[str]:
    """ "all" or "v1.34.12,v1.35.4" -> the Kubernetes versions (each one the manifest holds); None -> []."""
    if not spec:
        return []
    held = releases.kubernetes_versions(manifest["anvil_versions"])
    wanted = held if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [v for v in wanted if v not in held]
    if unknown:
        raise ManifestError(f"Kubernetes {', '.join(unknown)} not in the versions manifest; it holds {', '.join(held)}")
    return wanted


Target = Tuple[str, Dict[str, Any], List[str]]


def build_targets(
    manifest: Dict[str, Any], selection: Optional[str] = None, kubernetes: Iterable[str] = ()
) -> List[Target]:
    """What to build, as (component, entry, binaries): the selection at each component's default version, then
    for each Kubernetes release the components it deploys at the versions it has or expects (each component
    version once). An entry is the component itself or one of its releases merged over it."""
    versions = manifest["anvil_versions"]
    by_comp: Dict[str, List[str]] = {}
    for comp, binary in parse_selection(selection, manifest):
        by_comp.setdefault(comp, []).append(binary)
    targets: List[Target] = [(name, versions[name], binaries) for name, binaries in by_comp.items()]
    seen = {(name, versions[name]["version"]) for name in by_comp}
    for version in kubernetes:
        for name, entry in releases.kubernetes_release(versions, version).items():
            if (name, entry["version"]) not in seen:
                seen.add((name, entry["version"]))
                targets.append((name, entry, list(entry.get("binaries") or [])))
    return targets


def build(
    selection: Optional[str] = None,
    force: bool = False,
    jobs: int = 2,
    write_manifest: bool = True,
    kubernetes: Iterable[str] = (),
) -> int:
    manifest = load_manifest()
    targets = build_targets(manifest, selection, kubernetes)
    gover = go_version()
    want_go = manifest.get("anvil_build_go")
    if want_go and want_go != gover:
        print(f"note: manifest sha256 were recorded with {want_go}; this toolchain is {gover}", flush=True)
    log_dir = Path(anvil_env.ANVIL_CACHE) / "build" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    failures: List[str] = []
    for name, comp, binaries in targets:
        stype = comp["source"]["type"]
        if stype not in BUILDABLE:
            why = "Debian package (served by the mirror's apt repo)" if stype == "deb" else "not buildable here"
            print(f"[skip ] {name} {comp['version']}: {why}", flush=True)
            continue
        out_dir = component_dir(name, comp["version"])
        out_dir.mkdir(parents=True, exist_ok=True)
        recipes = {b: recipe_hash(name, comp, b, gover) for b in binaries}
        todo = [b for b in binaries if force or not is_cached(out_dir, b, recipes[b])]
        if not todo:
            files = sorted(comp["source"].get("module_files") or {})
            ensure_module_files(name, comp, log_dir)
            print(f"[cache] {name} {comp['version']}: {' '.join(binaries + files)}", flush=True)
            continue
        print(f"[build] {name} {comp['version']}: {' '.join(todo)} ...", flush=True)
        t0, cpu0 = time.monotonic(), _children_cpu()
        log_path = log_dir / f"{name}-{comp['version']}.log"
        try:
            with open(log_path, "w", encoding="utf-8") as log:
                builder = build_go if stype == "go" else build_own
                builder(name, comp, binaries=todo, out_dir=out_dir, jobs=jobs, log=log)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            failures.append(f"{name} {comp['version']}")
            print(f"[FAIL ] {name} {comp['version']}: {exc}", flush=True)
            continue
        for b in todo:
            _stamp_path(out_dir, b).write_text(recipes[b] + "\n")
        wall, cpu = time.monotonic() - t0, _children_cpu() - cpu0
        print(f"[done ] {name} {comp['version']}: {len(todo)} binaries in {wall:.0f}s (cpu {cpu:.0f}s)", flush=True)
    rows = target_rows(targets)
    print_table(rows)
    if write_manifest:
        changed = update_manifest_sha256(anvil_env.VERSIONS_FILE, rows)
        if changed:
            print(f"updated sha256 of {changed} binaries in {anvil_env.VERSIONS_FILE}", flush=True)
    print(f"total {time.monotonic() - t_all:.1f}s", flush=True)
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def ensure_module_files(name: str, comp: Dict[str, Any], log_dir: Path) -> bool:
    """Copy the component's module files into its cache directory unless all are there; True if copied."""
    files = comp["source"].get("module_files") or {}
    out_dir = component_dir(name, comp["version"])
    if all((out_dir / f).is_file() for f in files):
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}-{comp['version']}.files.log", "w", encoding="utf-8") as log:
        copy_module_files(comp["source"], module_version(comp), out_dir, log)
    return True


def module_files(selection: Optional[str] = None) -> int:
    """Copy (or reuse) the module files of the selected components without building their binaries."""
    versions = load_manifest()["anvil_versions"]
    names = [n.strip() for n in selection.split(",")] if selection else list(versions)
    log_dir = Path(anvil_env.ANVIL_CACHE) / "build" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name not in versions:
            raise ManifestError(f"unknown component {name!r}")
        comp = versions[name]
        files = sorted(comp["source"].get("module_files") or {})
        if files:
            state = "files" if ensure_module_files(name, comp, log_dir) else "cache"
            print(f"[{state:<5}] {name} {comp['version']}: {' '.join(files)}", flush=True)
    return 0


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: a build cost that load does not skew."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table_rows(manifest: Dict[str, Any], wanted: Iterable[Tuple[str, str]]) -> List[Dict[str, Any]]:
    versions = manifest["anvil_versions"]
    return target_rows([(name, versions[name], [binary]) for name, binary in wanted])


def target_rows(targets: Iterable[Target]) -> List[Dict[str, Any]]:
    rows = []
    for name, comp, binaries in targets:
        for binary in binaries:
            path = component_dir(name, comp["version"]) / binary
            row = {"component": name, "version": comp["version"], "binary": binary, "path": str(path)}
            if path.is_file():
                row.update(size=path.stat().st_size, sha256=sha256_file(path))
            else:
                row.update(size=None, sha256=None)
            rows.append(row)
    return rows


def print_table(rows: List[Dict[str, Any]]) -> None:
    header = f"{'component':<20} {'version':<10} {'binary':<24} {'size':>9}  sha256"
    print(header)
    print("-" * len(header))
    for r in rows:
        size = f"{r['size'] / 1e6:.1f}MB" if r["size"] is not None else "missing"
        print(f"{r['component']:<20} {r['version']:<10} {r['binary']:<24} {size:>9}  {r['sha256'] or '-'}")
    sys.stdout.flush()


def render_sha256_block(digests: Dict[str, str], indent: str = "    ") -> List[str]:
    if not digests:
        return [f"{indent}sha256: {{}}\n"]
    return [f"{indent}sha256:\n"] + [f"{indent}  {b}: {d}\n" for b, d in digests.items()]


def update_manifest_sha256(path: Path, rows: List[Dict[str, Any]]) -> int:
    """Write the built binaries' sha256 into each component's `sha256:` block, keeping comments.

    A line edit rather than a YAML round-trip: PyYAML would drop the manifest's comments, which
    document why each version was chosen. Returns the number of digests that changed.
    """
    text = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    current = yaml.safe_load("".join(text))["anvil_versions"]
    new: Dict[Tuple[str, str], Dict[str, str]] = {}
    for r in rows:
        if r["sha256"]:
            key = (r["component"], r.get("version") or current[r["component"]]["version"])
            new.setdefault(key, {})[r["binary"]] = r["sha256"]
    changed = 0
    for (comp, version), digests in new.items():
        entry = releases.component_at(current, comp, version)
        old = dict(entry.get("sha256") or {})
        merged = dict(old)
        merged.update(digests)
        binaries = entry["binaries"]
        merged = {b: merged[b] for b in binaries if b in merged}
        if merged == old:
            continue
        changed += sum(1 for b in merged if old.get(b) != merged[b])
        if version == str(current[comp]["version"]):
            text = _replace_sha_block(text, comp, render_sha256_block(merged))
        else:
            text = _replace_release_sha_block(text, comp, version, render_sha256_block(merged, indent=" " * 8))
    if changed:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text("".join(text), encoding="utf-8")
        os.replace(tmp, path)
    return changed


def _component_line(lines: List[str], comp: str) -> int:
    """Index of the line that opens component `comp` in the manifest (`  <comp>:`)."""
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"  {comp}:"), None)
    if start is None:
        raise ManifestError(f"component {comp} not found as '  {comp}:' in the manifest")
    return start


def _replace_sha_block(lines: List[str], comp: str, block: List[str]) -> List[str]:
    start = _component_line(lines, comp)
    for j in range(start + 1, len(lines)):
        line = lines[j]
        if line.strip() and not line.startswith("   ") and not line.startswith("#"):
            break  # next component or top-level key: no sha256 key in this component
        if line.startswith("    sha256:"):
            end = j + 1
            while end < len(lines) and lines[end].startswith("      "):
                end += 1
            return lines[:j] + block + lines[end:]
    raise ManifestError(f"component {comp} has no 'sha256:' key; add 'sha256: {{}}' to it")


def _replace_release_sha_block(lines: List[str], comp: str, version: str, block: List[str]) -> List[str]:
    """The `sha256:` block of release `version` under the component's `releases:` (keys at 6 spaces, the
    release's own keys at 8)."""
    where = f"release {version} of component {comp}"
    start = _component_line(lines, comp)
    heads = {f"      {version}:", f'      "{version}":', f"      '{version}':"}
    in_releases = False
    release_at = None
    for j in range(start + 1, len(lines)):
        line = lines[j]
        if line.strip() and not line.startswith("   ") and not line.startswith("#"):
            break  # the next component
        if line.rstrip() == "    releases:":
            in_releases = True
        elif in_releases and line.rstrip() in heads:
            release_at = j
            break
    if release_at is None:
        raise ManifestError(f"{where} not found as '      {version}:' under '    releases:' in the manifest")
    for j in range(release_at + 1, len(lines)):
        line = lines[j]
        if line.strip() and not line.startswith("        ") and not line.lstrip().startswith("#"):
            break  # the next release or component key
        if line.startswith("        sha256:"):
            end = j + 1
            while end < len(lines) and lines[end].startswith("          "):
                end += 1
            return lines[:j] + block + lines[end:]
    raise ManifestError(f"{where} has no 'sha256:' key; add 'sha256: {{}}' to it")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse from the cache) the manifest's binaries")
    b.add_argument("--only", help="comma-separated components or component/binary (default: all)")
    b.add_argument("--api", action="store_true", help="only what a local API server needs")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    b.add_argument("--jobs", type=int, default=int(os.environ.get("ANVIL_BUILD_JOBS", "2")))
    b.add_argument("--no-write-manifest", action="store_true", help="do not record sha256 in the manifest")
    b.add_argument(
        "--kubernetes-releases",
        help="also these Kubernetes releases ('all' or v1.34.12,...) and the etcd/coredns/pause each expects",
    )
    f = sub.add_parser("files", help="copy the files components ship in their Go modules (CRDs, manifests), no build")
    f.add_argument("--only", help="comma-separated components (default: every component with module_files)")
    p = sub.add_parser("path", help="print the cache path of a binary")
    p.add_argument("component")
    p.add_argument("binary")
    t = sub.add_parser("table", help="versions, sizes and sha256 of the cached binaries")
    t.add_argument("--json", action="store_true")
    t.add_argument("--kubernetes-releases", help="also these Kubernetes releases ('all' or v1.34.12,...)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            selection = ",".join(API_SELECTION) if args.api else args.only
            kubernetes = kubernetes_release_list(args.kubernetes_releases, load_manifest())
            with anvil_env.build_lock("artifacts build"):
                return build(
                    selection,
                    force=args.force,
                    jobs=args.jobs,
                    write_manifest=not args.no_write_manifest,
                    kubernetes=kubernetes,
                )
        if args.cmd == "files":
            with anvil_env.build_lock("artifacts files"):
                return module_files(args.only)
        if args.cmd == "path":
            print(binary_path(args.component, args.binary))
            return 0
        manifest = load_manifest()
        rows = target_rows(build_targets(manifest, None, kubernetes_release_list(args.kubernetes_releases, manifest)))
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print_table(rows)
        return 0
    except (ManifestError, KeyError, releases.ReleaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
