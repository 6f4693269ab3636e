"""The anvil-ee execution environment image, built on a machine without a container engine.

    python -m tools.ee context      # build/ee: the ansible-builder context (what `podman build` would use)
    python -m tools.ee build        # context, then the image: an OCI layout under $ANVIL_CACHE/ee/oci
    python -m tools.ee unpack DIR   # the image as an OCI runtime bundle (DIR/rootfs, DIR/config.json)
    python -m tools.ee run DIR --data PDD [--env K=V] -- CMD...   # CMD in the unpacked image, PDD at /runner
    python -m tools.ee push REF     # copy the image to a registry (skopeo), e.g. 198.18.0.1:5000/anvil/anvil-ee:0.1.0
    python -m tools.ee info         # the image's reference, digest and size as JSON
    python -m tools.ee sanity 2.21.5 ...   # ansible-test sanity of build/dist's tarball in the image, per ansible-core

`context` is the documented path for users with podman: `ansible-builder create -f awx/execution-environment.yml
--context build/ee` after two inputs exist: the collection's tarball (`make build`) and build/ee-seed, the
dependency collections of galaxy.yml taken from the pinned `ansible` package of requirements.txt (Galaxy is
not needed: the definition installs them offline, and ansible-galaxy checks their versions against galaxy.yml's
ranges).

`build` runs the Containerfile ansible-builder wrote, instruction by instruction, without a container engine:
the base image (debian:trixie-slim) is a debootstrap of Debian trixie (minbase), every RUN runs in
systemd-nspawn on a copy of its stage's root filesystem (host network, the host's resolver and CA bundle
bound in for apt and pip, never written into the image), COPY and --from copy files, and ARG, ENV,
WORKDIR, USER, LABEL, ENTRYPOINT and CMD set what a container engine would record. umoci packs the final
stage as a one-layer OCI image with that configuration. Stages are cached under $ANVIL_CACHE/ee, keyed by
their instructions and the content they copy, so a second build with nothing changed takes seconds and a
changed collection tarball rebuilds from the stage that copies it.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools import anvil_env
from tools.testbed.rootfs import detect_debian_mirror

REPO_ROOT = anvil_env.REPO_ROOT
DEFINITION = REPO_ROOT / "awx" / "execution-environment.yml"
CONTEXT = REPO_ROOT / "build" / "ee"
SEED = REPO_ROOT / "build" / "ee-seed"
CACHE = anvil_env.ANVIL_CACHE / "ee"
OCI_LAYOUT = CACHE / "oci" / "anvil-ee"
BUILDER_VERSION = "3.2.0"
# Bump when the way this tool turns instructions into a root filesystem changes: part of every stage's key.
LAYOUT = "2"
# Like the debian:*-slim images: no documentation, manual pages or translations in packages installed later.
DPKG_EXCLUDES = """# Like debian:*-slim (tools/ee.py): no documentation, manual pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
BUILD_CA = "/run/anvil-ee-build/ca.crt"


class EEError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"ee: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    check = kw.pop("check", True)
    return subprocess.run(cmd, check=check, **kw)


def definition() -> dict:
    return yaml.safe_load(DEFINITION.read_text())


def image_tag() -> tuple[str, str]:
    """(name, tag) of the image: the definition's first tag, e.g. anvil-ee:0.1.0."""
    name, _, tag = definition()["options"]["tags"][0].rpartition(":")
    return name.rsplit("/", 1)[-1], tag


def pins() -> dict[str, str]:
    text = (REPO_ROOT / "requirements.txt").read_text()
    return dict(line.split("#", 1)[0].strip().split("==") for line in text.splitlines() if "==" in line)


def galaxy() -> dict:
    return yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())


def tarball_hash(path: Path) -> str:
    """SHA-256 of a tarball's member names, modes and contents: `ansible-galaxy collection build` writes
    new timestamps into every build of the same content."""
    digest = hashlib.sha256()
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            digest.update(f"{member.name}\0{member.mode:o}\0{member.linkname}\0".encode())
            if member.isfile():
                digest.update(hashlib.sha256(tar.extractfile(member).read()).digest())
    return digest.hexdigest()


def tree_hash(path: Path) -> str:
    """SHA-256 of a file, or of a directory's names, modes, link targets and contents (a tarball's by its
    members)."""
    digest = hashlib.sha256()
    paths = [path] if not path.is_dir() or path.is_symlink() else sorted(path.rglob("*"))
    for p in paths:
        rel = str(p.relative_to(path)) if p != path else p.name
        st = p.lstat()
        digest.update(f"{rel}\0{st.st_mode:o}\0".encode())
        if p.is_symlink():
            digest.update(os.readlink(p).encode())
        elif p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
            digest.update(tarball_hash(p).encode())
        elif p.is_file():
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


# ---- the build context ----------------------------------------------------------------------------------


def builder_venv() -> Path:
    """A venv of its own for ansible-builder (it is not a dependency of the collection or its tests)."""
    venv = CACHE / f"ansible-builder-{BUILDER_VERSION}"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", f"ansible-builder=={BUILDER_VERSION}"])
        (venv / ".complete").write_text("")
    return venv


def ansible_wheel() -> Path:
    version = pins()["ansible"]
    wheels = CACHE / "wheels"
    found = sorted(wheels.glob(f"ansible-{version}-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheels),
                f"ansible=={version}",
            ]
        )
        found = sorted(wheels.glob(f"ansible-{version}-*.whl"))
    if not found:
        raise EEError(f"pip did not download the ansible {version} wheel into {wheels}")
    return found[0]


def seed_collections() -> Path:
    """build/ee-seed/ansible_collections/<ns>/<name>: galaxy.yml's dependencies, from the pinned ansible package."""
    names = sorted(galaxy()["dependencies"])
    wheel = ansible_wheel()
    stamp = SEED / ".anvil-seed.json"
    want = {"wheel": wheel.name, "collections": names}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return SEED
    shutil.rmtree(SEED, ignore_errors=True)
    prefixes = tuple(f"ansible_collections/{n.replace('.', '/')}/" for n in names)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefixes)]
        found = {n for n in names if any(m.startswith(f"ansible_collections/{n.replace('.', '/')}/") for m in members)}
        if found != set(names):
            raise EEError(f"{wheel.name} lacks the collections {sorted(set(names) - found)}")
        zf.extractall(SEED, members)
    stamp.write_text(json.dumps(want) + "\n")
    return SEED


def create_context() -> Path:
    tarball = REPO_ROOT / "build" / "dist" / f"anvil-cluster-{galaxy()['version']}.tar.gz"
    if not tarball.is_file():
        raise EEError(f"{tarball} is missing: run `make build` first")
    seed_collections()
    venv = builder_venv()
    shutil.rmtree(CONTEXT, ignore_errors=True)
    run(
        [
            str(venv / "bin" / "ansible-builder"),
            "create",
            "-f",
            str(DEFINITION),
            "--context",
            str(CONTEXT),
            "--output-filename",
            "Containerfile",
        ],
        stdout=subprocess.DEVNULL,
    )
    return CONTEXT


# ---- the base image -------------------------------------------------------------------------------------


def base_rootfs(image: str) -> tuple[Path, str]:
    """The root filesystem of a debian:<suite>[-slim] base image, debootstrapped once and cached."""
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)(-slim)?", image)
    if not match:
        raise EEError(f"only Debian base images (debian:<suite>[-slim]) can be built here, not {image}")
    suite = match.group(1)
    key = hashlib.sha256(f"{suite}\0minbase\0{LAYOUT}\0{DPKG_EXCLUDES}".encode()).hexdigest()[:12]
    target = CACHE / "stages" / f"base-{suite}-{key}"
    if (target / ".anvil-complete").is_file():
        return target / "rootfs", key
    mirror = detect_debian_mirror()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"base image {image}: debootstrap {suite} (minbase) from {mirror}")
    logfile = CACHE / f"debootstrap-{suite}.log"
    with open(logfile, "w") as fh:
        proc = run(
            ["debootstrap", "--variant=minbase", "--components=main", suite, str(tmp / "rootfs"), mirror],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise EEError(f"debootstrap failed; see {logfile}:\n" + "\n".join(logfile.read_text().splitlines()[-10:]))
    root = tmp / "rootfs"
    security = re.sub(r"/debian/?$", "/debian-security", mirror.rstrip("/"))
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text(DPKG_EXCLUDES)
    run(["chroot", str(root), "apt-get", "clean"])
    for path in ("var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
        for child in (root / path).glob("*"):
            if child.name in ("lock", "partial", "locale.alias") or (child / "copyright").is_file():
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for doc in (root / "usr/share/doc").glob("*"):
        for child in doc.iterdir():
            if child.name != "copyright":
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    (tmp / ".anvil-complete").write_text(json.dumps({"image": image}) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target / "rootfs", key


# ---- the Containerfile ----------------------------------------------------------------------------------


@dataclass
class Config:
    """What a container engine records for a stage (inherited by the stages built FROM it)."""

    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    workdir: str = "/"
    user: str = "root"
    labels: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=lambda: ["bash"])

    def copy(self) -> Config:
        return Config(dict(self.env), self.workdir, self.user, dict(self.labels), list(self.entrypoint), list(self.cmd))


@dataclass
class Stage:
    name: str
    parent: str  # a base image, or the name of an earlier stage
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of a Containerfile (line continuations joined)."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            parts = re.split(r"\s+(?i:as)\s+", rest)
            image, alias = parts[0], (parts[1] if len(parts) > 1 else f"stage{len(stages)}")
            stages.append(Stage(alias, substitute(image, args)))
        elif not stages:
            if word != "ARG":
                raise EEError(f"only ARG may come before the first FROM: {line}")
            name, _, default = rest.partition("=")
            args[name] = unquote(default)
        else:
            stages[-1].instructions.append((word, rest))
    return args, stages


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def substitute(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), text)


def exec_form(rest: str) -> list[str]:
    return json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]


class Builder:
    def __init__(self, context: Path, build_args: dict[str, str], logfile: Path):
        self.context = context
        self.build_args = build_args
        self.logfile = logfile
        self.done: dict[str, tuple[Path, str, Config]] = {}  # stage -> (rootfs, key, config)

    # -- keys ---------------------------------------------------------------------------------------------
    def stage_key(self, stage: Stage, parent_key: str, scope: dict[str, str]) -> str:
        digest = hashlib.sha256(f"{LAYOUT}\0{parent_key}\0".encode())
        for word, rest in stage.instructions:
            digest.update(f"{word} {rest}\0".encode())
            if word == "ARG":
                name = rest.partition("=")[0]
                digest.update(f"{name}={scope.get(name, '')}\0".encode())
            if word == "COPY":
                opts, srcs, _ = self.copy_args(rest, scope)
                if "from" in opts:
                    digest.update(self.done[opts["from"]][1].encode())
                else:
                    for src in srcs:
                        digest.update(tree_hash(self.context / src).encode())
        return digest.hexdigest()[:16]

    @staticmethod
    def copy_args(rest: str, scope: dict[str, str]) -> tuple[dict[str, str], list[str], str]:
        words = shlex.split(substitute(rest, scope))
        opts = {}
        while words and words[0].startswith("--"):
            key, _, value = words.pop(0)[2:].partition("=")
            opts[key] = value
        return opts, words[:-1], words[-1]

    # -- building -----------------------------------------------------------------------------------------
    def build(self, args: dict[str, str], stages: list[Stage], target: str) -> tuple[Path, Config]:
        by_name = {s.name: s for s in stages}
        needed: list[str] = []

        def need(name: str) -> None:
            stage = by_name[name]
            deps = [stage.parent] if stage.parent in by_name else []
            for word, rest in stage.instructions:
                if word == "COPY":
                    opts, _, _ = self.copy_args(rest, {})
                    if "from" in opts:
                        deps.append(opts["from"])
            for dep in deps:
                if dep not in needed:
                    need(dep)
            if name not in needed:
                needed.append(name)

        need(target)
        global_args = {**args, **self.build_args}
        for name in needed:
            self.build_stage(by_name[name], global_args)
        rootfs, _, config = self.done[target]
        return rootfs, config

    def build_stage(self, stage: Stage, global_args: dict[str, str]) -> None:
        if stage.parent in self.done:
            parent_root, parent_key, parent_config = self.done[stage.parent]
        else:
            parent_root, parent_key = base_rootfs(stage.parent)
            parent_config = Config()
        # ARGs in scope at each instruction, for the key: every global ARG a stage names.
        scope = {
            name: global_args.get(name, "")
            for word, rest in stage.instructions
            if word == "ARG"
            for name in [rest.partition("=")[0]]
        }
        key = self.stage_key(stage, parent_key, scope)
        target = CACHE / "stages" / f"{stage.name}-{key}"
        config_file = target / "config.json"
        if (target / ".anvil-complete").is_file():
            log(f"stage {stage.name}: cached ({target.name})")
            self.done[stage.name] = (target / "rootfs", key, Config(**json.loads(config_file.read_text())))
            return
        started = time.monotonic()
        log(f"stage {stage.name} (from {stage.parent}): {len(stage.instructions)} instructions")
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        run(["cp", "-a", "--reflink=auto", str(parent_root), str(tmp / "rootfs")])
        root = tmp / "rootfs"
        config = parent_config.copy()
        in_scope: dict[str, str] = {}
        for word, rest in stage.instructions:
            env = {**config.env, **in_scope}
            if word == "ARG":
                name, eq, default = rest.partition("=")
                in_scope[name] = global_args.get(name, unquote(default) if eq else "")
            elif word == "ENV":
                for name, value in self.env_pairs(rest):
                    config.env[name] = substitute(value, env)
            elif word == "USER":
                config.user = substitute(rest, env)
            elif word == "WORKDIR":
                config.workdir = os.path.join(config.workdir, substitute(rest, env))
                (root / config.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif word == "LABEL":
                for name, value in self.env_pairs(rest):
                    config.labels[name] = substitute(value, env)
            elif word == "ENTRYPOINT":
                config.entrypoint = exec_form(rest)
            elif word == "CMD":
                config.cmd = exec_form(rest)
            elif word == "COPY":
                self.copy(root, rest, env, config)
            elif word == "RUN":
                self.run_step(root, rest, env, config)
            else:
                raise EEError(f"instruction {word} is not supported here (stage {stage.name})")
        config_file = tmp / "config.json"
        config_file.write_text(json.dumps(config.__dict__, indent=1) + "\n")
        (tmp / ".anvil-complete").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        log(f"stage {stage.name}: built in {time.monotonic() - started:.0f} s")
        self.done[stage.name] = (target / "rootfs", key, config)

    @staticmethod
    def env_pairs(rest: str) -> list[tuple[str, str]]:
        if "=" not in rest.split(maxsplit=1)[0]:
            name, _, value = rest.partition(" ")
            return [(name, value.strip())]
        return [(w.partition("=")[0], w.partition("=")[2]) for w in shlex.split(rest)]

    def copy(self, root: Path, rest: str, env: dict[str, str], config: Config) -> None:
        opts, srcs, dest = self.copy_args(rest, env)
        base = self.done[opts["from"]][0] if "from" in opts else self.context
        dest_path = root / os.path.join(config.workdir, dest).lstrip("/")
        for src in srcs:
            source = base / src.lstrip("/")
            if not source.exists():
                raise EEError(f"COPY {src}: {source} does not exist")
            if source.is_dir():
                dest_path.mkdir(parents=True, exist_ok=True)
                run(["cp", "-a", "--reflink=auto", f"{source}/.", str(dest_path)])
            else:
                into = dest.endswith("/") or dest_path.is_dir() or len(srcs) > 1
                final = dest_path / source.name if into else dest_path
                final.parent.mkdir(parents=True, exist_ok=True)
                run(["cp", "-a", "--reflink=auto", str(source), str(final)])
            if "from" not in opts:
                run(["chown", "-R", opts.get("chown", "0:0"), str(dest_path)])

    def run_step(self, root: Path, rest: str, env: dict[str, str], config: Config) -> None:
        if config.user not in ("root", "0"):
            raise EEError(f"RUN as user {config.user} is not supported here: {rest}")
        argv = exec_form(rest)
        build_env = {**env, "PIP_CERT": BUILD_CA, "PIP_DEFAULT_TIMEOUT": "180", "DEBIAN_FRONTEND": "noninteractive"}
        log(f"  RUN {rest[:110]}")
        started = time.monotonic()
        with open(self.logfile, "a") as fh:
            fh.write(f"\n==== RUN {rest}\n")
            fh.flush()
            proc = run(
                nspawn(root, build_env, config.workdir, binds=[f"--bind-ro={HOST_CA}:{BUILD_CA}"]) + argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if proc.returncode != 0:
            tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-25:])
            raise EEError(f"RUN {rest} exited {proc.returncode} (log {self.logfile}):\n{tail}")
        log(f"    {time.monotonic() - started:.0f} s")


def nspawn(root: Path, env: dict[str, str], cwd: str, binds: list[str] = ()) -> list[str]:
    """systemd-nspawn for one command in `root` (no boot, no registration: PID 1 of this host is not systemd),
    on the host's network, with the host's resolver bound in (not copied into the root filesystem) and /tmp
    kept in the root filesystem as a container engine's build step keeps it (nspawn mounts a tmpfs there
    by default, and ansible-builder's steps pass files to each other through /tmp/src)."""
    name = "anvil-ee-" + hashlib.sha256(f"{root}{os.getpid()}{time.time()}".encode()).hexdigest()[:8]
    cmd = ["env", "SYSTEMD_NSPAWN_TMPFS_TMP=0", "systemd-nspawn", "--quiet", "--register=no", "--keep-unit"]
    cmd += [f"--machine={name}", "--directory", str(root)]
    cmd += ["--resolv-conf=bind-host", "--timezone=off", "--link-journal=no", "--console=pipe", "--as-pid2"]
    cmd += [f"--chdir={cwd}", *binds]
    cmd += [f"--setenv={k}={v}" for k, v in env.items()]
    return cmd


# ---- the image ------------------------------------------------------------------------------------------


def build_image() -> dict:
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        context = create_context()
        containerfile = context / "Containerfile"
        args, stages = parse(containerfile.read_text())
        logfile = CACHE / "build.log"
        logfile.write_text(f"anvil-ee build {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        builder = Builder(context, {}, logfile)
        rootfs, config = builder.build(args, stages, stages[-1].name)
        final_key = builder.done[stages[-1].name][1]
        info = pack(rootfs, config, final_key)
        prune({key for _, key, _ in builder.done.values()})
    info["collection_sha256"] = tarball_hash(next((CONTEXT / "_build" / "collections").glob("*.tar.gz")))
    info["build_seconds"] = round(time.monotonic() - started, 1)
    (CACHE / "image.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def pack(rootfs: Path, config: Config, key: str) -> dict:
    """The final stage as an OCI image in OCI_LAYOUT, tagged with the definition's tag (skipped if that tag
    already holds this stage)."""
    _, tag = image_tag()
    ref = f"{OCI_LAYOUT}:{tag}"
    stamp = OCI_LAYOUT.parent / f"{OCI_LAYOUT.name}-{tag}.key"
    if (OCI_LAYOUT / "index.json").is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        log(f"image {ref}: up to date")
        return image_info()
    packed = time.monotonic()
    if not (OCI_LAYOUT / "index.json").is_file():
        shutil.rmtree(OCI_LAYOUT, ignore_errors=True)
        OCI_LAYOUT.parent.mkdir(parents=True, exist_ok=True)
        run(["umoci", "init", "--layout", str(OCI_LAYOUT)])
    scratch = f"{OCI_LAYOUT}:build-{key}"
    bundle = CACHE / f"bundle-{key}"
    shutil.rmtree(bundle, ignore_errors=True)
    run(["umoci", "rm", "--image", scratch], check=False, capture_output=True)
    run(["umoci", "new", "--image", scratch])
    run(["umoci", "unpack", "--image", scratch, str(bundle)], stdout=subprocess.DEVNULL)
    (bundle / "rootfs").rmdir()
    run(["cp", "-a", "--reflink=auto", str(rootfs), str(bundle / "rootfs")])
    run(["umoci", "repack", "--image", scratch, "--history.created_by", "tools/ee.py: the final stage", str(bundle)])
    shutil.rmtree(bundle)
    cfg = ["umoci", "config", "--image", scratch, "--tag", tag, "--os", "linux", "--architecture", "amd64"]
    cfg += ["--config.user", config.user, "--config.workingdir", config.workdir, "--clear=config.env"]
    cfg += [f"--config.env={k}={v}" for k, v in config.env.items()]
    cfg += ["--clear=config.entrypoint"] + [f"--config.entrypoint={a}" for a in config.entrypoint]
    cfg += ["--clear=config.cmd"] + [f"--config.cmd={a}" for a in config.cmd]
    cfg += [f"--config.label={k}={v}" for k, v in config.labels.items()]
    cfg += ["--history.created_by", "tools/ee.py: the image configuration"]
    run(cfg)
    run(["umoci", "rm", "--image", scratch])
    run(["umoci", "gc", "--layout", str(OCI_LAYOUT)])
    stamp.write_text(key + "\n")
    log(f"image {ref}: packed in {time.monotonic() - packed:.0f} s")
    return image_info()


def prune(keep: set[str]) -> None:
    """Remove cached stages this build did not use (the base images stay)."""
    for path in (CACHE / "stages").glob("*"):
        if path.name.startswith("base-"):
            continue
        if path.name.rsplit("-", 1)[-1] not in keep:
            shutil.rmtree(path, ignore_errors=True)


def image_info() -> dict:
    name, tag = image_tag()
    index = json.loads((OCI_LAYOUT / "index.json").read_text())
    manifest = next(
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    blobs = OCI_LAYOUT / "blobs" / "sha256"
    body = json.loads((blobs / manifest["digest"].split(":", 1)[1]).read_text())
    compressed = sum(layer["size"] for layer in body["layers"])
    image_config = json.loads((blobs / body["config"]["digest"].split(":", 1)[1]).read_text())
    return {
        "image": f"{name}:{tag}",
        "layout": str(OCI_LAYOUT),
        "ref": f"oci:{OCI_LAYOUT}:{tag}",
        "digest": manifest["digest"],
        "layers": len(body["layers"]),
        "compressed_bytes": compressed,
        "config": image_config.get("config", {}),
    }


def unpack(dest: Path) -> Path:
    _, tag = image_tag()
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["umoci", "unpack", "--image", f"{OCI_LAYOUT}:{tag}", str(dest)], stdout=subprocess.DEVNULL)
    return dest


def run_in_image(
    bundle: Path, data: Path, argv: list[str], env: dict[str, str], timeout: float | None = None, **kw
) -> subprocess.CompletedProcess:
    """argv in the unpacked image as a container engine would start it: the image's user, environment,
    entrypoint and working directory, with `data` (the private data directory) bound at /runner, on the
    host's network, without a terminal."""
    process = json.loads((bundle / "config.json").read_text())["process"]
    uid, gid = process["user"]["uid"], process["user"]["gid"]
    cfg = image_config(bundle)
    image_env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    command = list(cfg.get("Entrypoint") or []) + argv
    wrapper = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    cmd = nspawn(
        bundle / "rootfs", {**image_env, **env}, cfg.get("WorkingDir") or "/", binds=[f"--bind={data}:/runner"]
    )
    check = kw.pop("check", False)
    return subprocess.run(cmd + wrapper + command, check=check, stdin=subprocess.DEVNULL, timeout=timeout, **kw)


def image_config(bundle: Path) -> dict:
    """The image configuration the bundle was unpacked from (umoci keeps the manifest's digest)."""
    meta = json.loads((bundle / "umoci.json").read_text())
    blobs = OCI_LAYOUT / "blobs" / "sha256"
    digest = meta["from_descriptor_path"]["descriptor_walk"][0]["digest"]
    manifest = json.loads((blobs / digest.split(":", 1)[1]).read_text())
    return json.loads((blobs / manifest["config"]["digest"].split(":", 1)[1]).read_text())["config"]


def push(dest: str, tls_verify: bool) -> None:
    _, tag = image_tag()
    run(
        [
            "skopeo",
            "copy",
            f"--dest-tls-verify={str(tls_verify).lower()}",
            f"oci:{OCI_LAYOUT}:{tag}",
            f"docker://{dest}",
        ]
    )


# ---- ansible-test sanity in the image -------------------------------------------------------------------


def pip_conf(listing: str, cert: str) -> str:
    """A pip.conf for pip in the image from the host's `pip config list` (its files, then its PIP_*
    environment, which wins): what ansible-test's pip runs see, since ansible-test passes no PIP_* variable
    on. The CA bundle is `cert` (the host's, bound in); local find-links directories, which are not in
    the image, are left out."""
    sections: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        name, eq, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if not eq or not section:
            continue
        value = ast.literal_eval(value)
        if key == "find-links":
            value = "\n".join(v for v in value.split() if "://" in v)
            if not value:
                continue
        sections.setdefault("global" if section == ":env:" else section, {})[key] = value
    sections.setdefault("global", {})["cert"] = cert
    lines = []
    for section, items in sorted(sections.items(), key=lambda kv: kv[0] != "global"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}".replace("\n", "\n    ") for k, v in items.items()]
    return "\n".join(lines) + "\n"


def sanity_results(output: str) -> dict:
    """The sanity tests an `ansible-test sanity` run started, skipped and failed, from its output."""
    started = re.findall(r'^Running sanity test "([^"]+)"', output, re.M)
    skipped = re.findall(r'^WARNING: Skipping sanity test "([^"]+)"', output, re.M)
    # The summary: "The N sanity test(s) listed below (out of M) failed." then one name a line ("pylint",
    # "compile --python 3.13"), up to the next message.
    failed: list[str] = []
    match = re.search(
        r"^(?:ERROR|FATAL): The \d+ sanity test\(s\) listed below .*\n((?:[a-z0-9][\w.-]*(?: --.*)?\n?)*)", output, re.M
    )
    if match:
        failed = [line.split()[0] for line in match.group(1).splitlines()]
    passed = [t for t in started if t not in failed and t not in skipped]
    return {"passed": passed, "failed": failed, "skipped": skipped}


def sanity(versions: list[str], tarball: Path, logdir: Path) -> list[dict]:
    """`ansible-test sanity` of the collection's tarball with each ansible-core version, in a scratch copy of
    the image (unpacked from the OCI layout, which is only read) as root under systemd-nspawn on the host's
    network: scripts/sanity.sh with that ansible-core in a venv of its own (ANVIL_SANITY_CORE) and the image's
    collections as the dependencies."""
    if not (OCI_LAYOUT / "index.json").is_file():
        raise EEError(f"no image in {OCI_LAYOUT}: run `make ee` first (its Python and collections are used)")
    if not tarball.is_file():
        raise EEError(f"{tarball} is missing: run `make build` first")
    scratch = CACHE / f"sanity-{os.getpid()}"
    pip_cache = CACHE / "sanity-pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    logdir.mkdir(parents=True, exist_ok=True)
    listing = run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    results = []
    try:
        with open(CACHE / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)  # not while `make ee` writes the layout
            started = time.monotonic()
            unpack(scratch)
        log(f"sanity: image unpacked into {scratch} in {time.monotonic() - started:.0f} s")
        root = scratch / "rootfs"
        (root / "etc/pip.conf").write_text(pip_conf(listing, BUILD_CA))
        binds = [f"--bind-ro={HOST_CA}:{BUILD_CA}", f"--bind-ro={REPO_ROOT / 'scripts'}:/anvil/scripts"]
        binds += [f"--bind-ro={tarball}:/anvil/{tarball.name}", f"--bind={pip_cache}:/root/.cache/pip"]
        for version in versions:
            env = {"PATH": DEFAULT_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8", "ANVIL_SANITY_CORE": version}
            env |= {
                "ANVIL_SANITY_TARBALL": f"/anvil/{tarball.name}",
                "ANVIL_SANITY_COLLECTIONS": "/usr/share/ansible/collections",
            }
            logfile = logdir / f"ansible-core-{version}.log"
            log(f"sanity: ansible-core {version} (log {logfile})")
            started = time.monotonic()
            with open(logfile, "w") as fh:
                proc = subprocess.Popen(
                    [*nspawn(root, env, "/root", binds), "bash", "/anvil/scripts/sanity.sh", galaxy()["version"]],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
                for line in proc.stdout:
                    fh.write(line)
                    sys.stderr.write(line)
                rc = proc.wait()
            result = {"ansible_core": version, "rc": rc, "seconds": round(time.monotonic() - started)}
            result |= sanity_results(logfile.read_text())
            results.append(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ee", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("context", help="write build/ee, the ansible-builder context")
    sub.add_parser("build", help="build the image into the OCI layout under $ANVIL_CACHE/ee")
    p = sub.add_parser("unpack", help="unpack the image as an OCI runtime bundle")
    p.add_argument("dest", type=Path)
    p = sub.add_parser("run", help="run a command in an unpacked image with a private data directory at /runner")
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--env", action="append", default=[], help="K=V")
    p.add_argument("argv", nargs="+")
    p = sub.add_parser("push", help="copy the image to a registry with skopeo")
    p.add_argument("dest", help="registry/repository:tag")
    p.add_argument("--tls-verify", action="store_true")
    sub.add_parser("info", help="the image as JSON")
    p = sub.add_parser("sanity", help="ansible-test sanity of the collection's tarball in the image, per ansible-core")
    p.add_argument("versions", nargs="+", help="ansible-core versions, e.g. 2.21.5")
    args = parser.parse_args(argv)
    try:
        if args.command == "context":
            print(create_context())
        elif args.command == "build":
            info = build_image()
            print(json.dumps({k: v for k, v in info.items() if k != "config"}, indent=1))
        elif args.command == "unpack":
            print(unpack(args.dest))
        elif args.command == "run":
            env = dict(e.split("=", 1) for e in args.env)
            return run_in_image(args.bundle, args.data.resolve(), args.argv, env).returncode
        elif args.command == "push":
            push(args.dest, args.tls_verify)
        elif args.command == "info":
            print(json.dumps(image_info(), indent=1))
        elif args.command == "sanity":
            tarball = REPO_ROOT / "build" / "dist" / f"anvil-cluster-{galaxy()['version']}.tar.gz"
            results = sanity(args.versions, tarball, REPO_ROOT / "build" / "sanity-ee")
            for r in results:
                failed = f" ({', '.join(r['failed'])})" if r["failed"] else ""
                print(
                    f"ansible-core {r['ansible_core']}: {len(r['passed'])} passed, {len(r['failed'])} failed{failed}, "
                    f"{len(r['skipped'])} skipped, exit {r['rc']}, {r['seconds'] // 60} min {r['seconds'] % 60} s"
                )
            return 1 if any(r["rc"] for r in results) else 0
    except (EEError, subprocess.CalledProcessError) as err:
        print(f"ee: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
