"""The repository runs as it is: from a plain checkout (ansible.cfg finds the collection through the link
`make setup` makes) and as an AWX / Automation Controller project (the project sync installs
collections/requirements.yml: the dependencies of galaxy.yml and the checkout itself). See docs/awx.md.

The last two tests run ansible-playbook --syntax-check and ansible-galaxy (no host, no network: the
dependencies come from the pinned `ansible` package).
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers.content import PLAYBOOKS, REPO_ROOT

GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
REQUIREMENTS = yaml.safe_load((REPO_ROOT / "collections" / "requirements.yml").read_text())
BIN = Path(sys.executable).parent


def test_requirements_are_galaxy_dependencies_and_the_checkout():
    entries = REQUIREMENTS["collections"]
    deps = {e["name"]: e["version"] for e in entries if e.get("type", "galaxy") == "galaxy"}
    assert deps == GALAXY["dependencies"]
    # The checkout itself, last, from the directory ansible-galaxy runs in (AWX: the project root).
    assert entries[-1] == {"name": ".", "type": "dir"}
    assert len(entries) == len(deps) + 1


def test_ansible_cfg_sets_only_where_collections_and_temporary_files_are():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO_ROOT / "ansible.cfg")
    # Anything else here would also apply to every test run (ansible-playbook reads ./ansible.cfg) and to
    # every AWX job; the tests set their callback and options through the environment.
    assert cfg.sections() == ["defaults"]
    assert list(cfg["defaults"]) == ["collections_path", "remote_tmp"]
    paths = cfg["defaults"]["collections_path"].split(":")
    # The checkout's link first, so an installed copy of the collection never hides the checkout's code.
    assert paths[0] == "./build/collections"
    # Expanded by the shell of whoever runs the module: an execution environment's own user for the tasks
    # delegated to the controller, not the remote user's home (~root with a root machine credential).
    assert cfg["defaults"]["remote_tmp"] == "$HOME/.ansible/tmp"


def test_project_files_are_not_packed():
    for name in ("ansible.cfg", "collections", "awx", "build"):
        assert name in GALAXY["build_ignore"], name


def _env_without_collections_path() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_plain_checkout_finds_the_collection_through_ansible_cfg():
    # conftest made the link (what `make setup` does); no ANSIBLE_COLLECTIONS_PATH in the environment.
    playbooks = sorted(str(p.relative_to(REPO_ROOT)) for p in PLAYBOOKS.glob("*.yml"))
    run = subprocess.run(
        [BIN / "ansible-playbook", "--syntax-check", "-i", "inventories/sample", *playbooks],
        cwd=REPO_ROOT,
        env=_env_without_collections_path(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_awx_project_sync_installs_the_checkout_as_the_collection(tmp_path):
    # What an AWX project sync does: ansible-galaxy in the project root with ANSIBLE_COLLECTIONS_PATH set to
    # the job's requirements_collections (offline here); then a job, with ANSIBLE_COLLECTIONS_PATH set by
    # AWX (it wins over ansible.cfg, and an AWX project has no build/ link).
    dest = tmp_path / "requirements_collections"
    env = {**_env_without_collections_path(), "ANSIBLE_COLLECTIONS_PATH": str(dest)}
    install = subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--offline", "-r", "collections/requirements.yml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    installed = dest / "ansible_collections" / "anvil" / "cluster"
    assert (installed / "MANIFEST.json").is_file() and not installed.is_symlink()
    assert not (installed / "build").exists() and not (installed / "awx").exists()
    run = subprocess.run(
        [BIN / "ansible-playbook", "--syntax-check", "-i", "inventories/sample", "playbooks/site.yml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# ---- execution environment definitions (built by `make ee`, run by tests/e2e/test_awx_runner.py) ---------


def test_collection_execution_environment_names_its_requirement_files():
    meta = yaml.safe_load((REPO_ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 3
    for kind, name in meta["dependencies"].items():
        assert kind in ("python", "system"), kind
        assert (REPO_ROOT / name).is_file() and name not in GALAXY["build_ignore"], name
    system = (REPO_ROOT / meta["dependencies"]["system"]).read_text()
    for package in ("openssh-client", "rsync", "skopeo"):
        assert package in system, package


def test_anvil_ee_has_the_collection_its_dependencies_and_the_tested_ansible_core():
    ee = yaml.safe_load((REPO_ROOT / "awx" / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    assert "trixie" in ee["images"]["base_image"]["name"]
    deps = ee["dependencies"]
    pins = dict(line.split("==") for line in (REPO_ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    collections = deps["galaxy"]["collections"]
    assert {c["name"]: c["version"] for c in collections if "version" in c} == GALAXY["dependencies"]
    tarball = f"anvil-cluster-{GALAXY['version']}.tar.gz"
    assert {"name": f"collections/{tarball}", "type": "file"} in collections
    files = {Path(f["src"]).name: f["dest"] for f in ee["additional_build_files"]}
    assert files[tarball] == "collections"
    assert (REPO_ROOT / "awx" / "apt-pkgmgr").stat().st_mode & 0o111
    assert ee["options"]["package_manager_path"] == "/usr/local/bin/apt-pkgmgr"


def test_anvil_ee_installs_the_dependencies_offline_from_the_pinned_ansible_package():
    """No Galaxy in the build: the galaxy stage gets galaxy.yml's dependencies from build/ee-seed (tools/ee.py
    extracts them from requirements.txt's ansible package) and ansible-galaxy runs --offline."""
    ee = yaml.safe_load((REPO_ROOT / "awx" / "execution-environment.yml").read_text())
    files = {f["src"]: f["dest"] for f in ee["additional_build_files"]}
    assert files["../build/ee-seed/ansible_collections"] == "seed"
    steps = ee["additional_build_steps"]
    assert "COPY _build/seed /usr/share/ansible/collections/ansible_collections" in steps["prepend_galaxy"]
    assert ee["build_arg_defaults"]["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"] == "--offline"
    # requirements.txt's pins win over Debian's python3-* packages that bindep.txt's packages pull in.
    assert "ARG PIP_IGNORE_INSTALLED=1" in steps["prepend_builder"]
    assert "ARG PIP_IGNORE_INSTALLED=1" in steps["prepend_final"]
