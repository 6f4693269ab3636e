"""AWX jobs without AWX: ansible-runner inside the anvil-ee image runs the job templates' playbooks against a
cluster of testbed machines, from private data directories laid out as AWX lays them out.

A job here is what AWX hands the execution environment: a fresh private data directory bound at /runner
with `project/` (this repository's files, as a project sync checks them out), `requirements_collections/`
(the project sync's `ansible-galaxy collection install -r collections/requirements.yml`, run in the image,
offline: the dependencies are the image's, anvil.cluster is the project's revision), `inventory/hosts` (an
executable inventory script printing JSON, as AWX writes it), `env/extravars` (the template's extra
variables, survey answers and the credential type's injected extra variables), `env/envvars` (AWX's job
environment and the Kubernetes credential type's K8S_AUTH_KUBECONFIG / K8S_AUTH_CONTEXT / KUBECONFIG,
rendered from awx/job_templates.yml's injectors, the kubeconfig written to `env/` as AWX writes credential
files), `env/ssh_key` (the machine credential) and `env/cmdline` (the credential's user and the job's
limit). The image runs as its own user (1000) under systemd-nspawn on the host network, without a
terminal: `ansible-runner run /runner -p <playbook>`.

  site.yml (1 control plane + 1 worker) -> maintenance.yml drains awx-w1 with the Kubernetes credential
  (the module runs in the image) -> uncordon -> refusals: maintenance's `action` outside the survey's
  choices, site's integer question answered with text; both stop before anything changes on the hosts.

The machines are a testbed instance of their own (state /var/lib/anvil-dev/awx-e2e, bridge anvil8 on
198.18.8.0/24, machines awx-cp1 + awx-w1) that install from the usual mirror on 198.18.0.1 (a host route
on each machine). `make e2e-awx` runs this module, after `make ee` built the image (the fixture builds it
when missing). AWX_E2E_KEEP=1 leaves the machines running afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import jinja2
import pytest
import yaml

from tests.helpers.ansible import REPO_ROOT
from tests.helpers.content import load_yaml
from tests.helpers.testbed import OwnInstance
from tests.helpers.wait import wait_until as poll
from tools import ee

pytestmark = pytest.mark.awx

WORK = REPO_ROOT / "build" / "e2e-awx"
JOBS = WORK / "jobs"
BUNDLE = WORK / "anvil-ee"
MIRROR_ADDR = os.environ.get("AWX_E2E_MIRROR_ADDR", "198.18.0.1")
TB_ENV = {
    "ANVIL_STATE": os.environ.get("AWX_E2E_STATE", "/var/lib/anvil-dev/awx-e2e"),
    "ANVIL_BRIDGE": os.environ.get("AWX_E2E_BRIDGE", "anvil8"),
    "ANVIL_BRIDGE_CIDR": os.environ.get("AWX_E2E_BRIDGE_CIDR", "198.18.8.1/24"),
    "ANVIL_TESTBED_INVENTORY": str(WORK / "testbed-hosts.yml"),
    "ANVIL_TESTBED_MIRROR_URL": f"http://{MIRROR_ADDR}:8080",
}
CP, WORKER = "awx-cp1", "awx-w1"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
TEMPLATES = load_yaml(REPO_ROOT / "awx" / "job_templates.yml")
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]
PAUSE_IMAGE = f"{MIRROR_ADDR}:5000/anvil/{VERSIONS['pause']['image']['name']}:{VERSIONS['pause']['image']['tag']}"
EE_UID = 1000
TIMINGS: dict[str, float] = {}
# Where the image carries anvil.cluster (and its dependencies): ansible-builder's galaxy stage.
IMAGE_COLLECTION = "/usr/share/ansible/collections/ansible_collections/anvil/cluster/"
# Where the job's files appear inside the image (AWX writes credential files to env/ of the data directory).
KUBECONFIG_IN_JOB = "/runner/env/tmp_anvil_kubeconfig"


# ---- the testbed instance --------------------------------------------------------------------------------


# The module's own testbed instance: `tb(...)` runs the testbed tool on it, `sh(node, cmd)` a command on a machine.
INSTANCE = OwnInstance(TB_ENV, MIRROR_ADDR)
tb = INSTANCE.tool
sh = INSTANCE.sh


add_machine = INSTANCE.add


def kubectl_json(args: str) -> dict:
    return json.loads(sh(CP, f"{KUBECTL} {args} -o json"))


# ---- AWX's private data directory -----------------------------------------------------------------------


def awx_inventory_script(testbed_inventory: Path) -> str:
    """The testbed's inventory as AWX hands it to a job: an executable script printing the inventory as JSON.
    The SSH user and key are the machine credential's (env/cmdline, env/ssh_key), not host variables."""
    inv = yaml.safe_load(testbed_inventory.read_text())["all"]
    hostvars: dict[str, dict] = {}
    data: dict = {"all": {"vars": inv["vars"], "children": ["k8s_cluster"]}}
    for group, body in inv["children"]["k8s_cluster"]["children"].items():
        data[group] = {"hosts": sorted(body["hosts"] or {})}
        for host, hv in (body["hosts"] or {}).items():
            drop = ("ansible_user", "ansible_ssh_private_key_file", "ansible_control_path_dir")
            hostvars[host] = {k: v for k, v in hv.items() if k not in drop}
    data["k8s_cluster"] = {"children": sorted(inv["children"]["k8s_cluster"]["children"])}
    data["_meta"] = {"hostvars": hostvars}
    return "#!/usr/bin/env python3\nprint(" + repr(json.dumps(data)) + ")\n"


def project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in out.split("\0") if f and (REPO_ROOT / f).exists()]


def credential_injection(kubeconfig: str) -> tuple[dict, dict, str]:
    """(env, extra vars, file) the Kubernetes credential type of awx/job_templates.yml injects for a job."""
    ctype = TEMPLATES["anvil_awx_credential_types"][0]
    context = yaml.safe_load(kubeconfig)["current-context"]
    values = {"kubeconfig": kubeconfig, "context": context, "tower": {"filename": {"kubeconfig": KUBECONFIG_IN_JOB}}}
    render = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string
    injectors = ctype["injectors"]
    env = {k: render(str(v)).render(values) for k, v in injectors["env"].items()}
    extra = {k: render(str(v)).render(values) for k, v in injectors["extra_vars"].items()}
    return env, extra, render(str(injectors["file"]["template.kubeconfig"])).render(values)


class Job:
    """One AWX job: a fresh private data directory, ansible-runner in the image, and what it left behind."""

    def __init__(
        self, name: str, playbook: str, extravars: dict, limit: str | None = None, kubeconfig: str | None = None
    ):
        self.name, self.playbook = name, playbook
        self.dir = JOBS / name
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "env").mkdir(parents=True)
        (self.dir / "inventory").mkdir()
        project = self.dir / "project"
        for rel in project_files():
            dest = project / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, dest, follow_symlinks=False)
        shutil.copytree(WORK / "requirements_collections", self.dir / "requirements_collections", symlinks=True)
        script = self.dir / "inventory" / "hosts"
        script.write_text(awx_inventory_script(WORK / "testbed-hosts.yml"))
        script.chmod(0o755)
        testbed = yaml.safe_load((WORK / "testbed-hosts.yml").read_text())["all"]["children"]["k8s_cluster"]
        first = next(iter(testbed["children"]["control_plane"]["hosts"].values()))
        key_file = first["ansible_ssh_private_key_file"]
        (self.dir / "env" / "ssh_key").write_text(Path(key_file).read_text())
        envvars = {
            # What AWX puts in every job's environment (the collections of the project sync first).
            "ANSIBLE_COLLECTIONS_PATH": ":".join(
                ["/runner/requirements_collections", "~/.ansible/collections", "/usr/share/ansible/collections"]
            ),
            "ANSIBLE_ROLES_PATH": ":".join(
                ["/runner/requirements_roles", "~/.ansible/roles", "/usr/share/ansible/roles", "/etc/ansible/roles"]
            ),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": "/runner/cp",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "AWX_PRIVATE_DATA_DIR": "/runner",
            "JOB_ID": str(zlib.crc32(name.encode()) % 10000),
            "PROJECT_REVISION": subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            ).stdout.strip(),
        }
        extra = {"awx_job_id": envvars["JOB_ID"], "awx_user_name": "e2e", **extravars}
        if kubeconfig is not None:
            cred_env, cred_extra, cred_file = credential_injection(kubeconfig)
            (self.dir / "env" / Path(KUBECONFIG_IN_JOB).name).write_text(cred_file)
            envvars.update(cred_env)
            extra.update(cred_extra)
        (self.dir / "env" / "envvars").write_text(yaml.safe_dump(envvars))
        (self.dir / "env" / "extravars").write_text(yaml.safe_dump(extra))
        cmdline = "-u root" + (f" --limit {limit}" if limit else "")
        (self.dir / "env" / "cmdline").write_text(cmdline)
        (self.dir / "env" / "settings").write_text(
            yaml.safe_dump(
                {"idle_timeout": 0, "job_timeout": 0, "pexpect_timeout": 5, "suppress_ansible_output": False}
            )
        )
        chown_for_image(self.dir)
        for secret in ("ssh_key", Path(KUBECONFIG_IN_JOB).name):
            if (self.dir / "env" / secret).exists():
                (self.dir / "env" / secret).chmod(0o600)
        self.rc: int | None = None
        self.seconds = 0.0

    def run(self, timeout: float = 1800) -> Job:
        started = time.monotonic()
        proc = ee.run_in_image(
            BUNDLE,
            self.dir,
            ["ansible-runner", "run", "/runner", "-p", self.playbook, "--ident", self.name],
            {},
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        self.seconds = time.monotonic() - started
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        return self

    @property
    def artifacts(self) -> Path:
        return self.dir / "artifacts" / self.name

    def status(self) -> str:
        return (self.artifacts / "status").read_text().strip()

    def events(self) -> list[dict]:
        files = sorted((self.artifacts / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0]))
        return [json.loads(p.read_text()) for p in files]

    def stats(self) -> dict:
        return next(e for e in self.events() if e["event"] == "playbook_on_stats")["event_data"]

    def task_results(self, task: str) -> list[dict]:
        return [
            e["event_data"]
            for e in self.events()
            if e["event"] in ("runner_on_ok", "runner_on_failed") and e["event_data"].get("task") == task
        ]

    def describe(self) -> str:
        stdout = (self.artifacts / "stdout").read_text(errors="replace") if (self.artifacts / "stdout").exists() else ""
        return f"job {self.name}: rc={self.rc}\n{stdout[-6000:]}\n{self.output[-3000:]}"


def chown_for_image(path: Path) -> None:
    """The image runs as uid 1000, group 0 (like an execution environment in AWX): it owns the job's files."""
    os.chown(path, EE_UID, 0)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), EE_UID, 0)


def successful(job: Job) -> None:
    assert job.rc == 0 and job.status() == "successful", job.describe()
    stats = job.stats()
    assert not stats.get("failures") and not stats.get("dark"), stats


def host_changes_since(marker: str) -> dict[str, list[str]]:
    """Files the hosts' system and cluster directories gained or changed since the marker was touched."""
    changed = {}
    for node in (CP, WORKER):
        out = sh(
            node,
            f"find /etc /usr /opt /root /var/lib/dpkg -xdev -newer {marker} "
            # Calico refreshes its CNI kubeconfig on its own.
            "-not -path '/root/.ansible*' -not -path '/etc/cni/net.d*' 2>/dev/null; true",
        )
        changed[node] = sorted(line for line in out.splitlines() if line.strip())
    return changed


# ---- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> Path:
    """The anvil-ee image of this checkout (`make e2e-awx` runs `make ee` first; an image built from other
    code fails here), unpacked from its OCI layout."""
    built = json.loads((ee.CACHE / "image.json").read_text())
    fresh = WORK / "dist"
    shutil.rmtree(fresh, ignore_errors=True)
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(fresh), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    [tarball] = fresh.glob("*.tar.gz")
    assert built["collection_sha256"] == ee.tarball_hash(tarball), "the image is not of this checkout: run make ee"
    print(f"\nanvil-ee: {built['digest']}, {built['compressed_bytes'] / 1e6:.0f} MB compressed")
    started = time.monotonic()
    ee.unpack(BUNDLE)
    TIMINGS["unpack image"] = time.monotonic() - started
    return BUNDLE


def project_sync(image: Path) -> str:
    """The project sync as AWX runs it, in the image: `ansible-galaxy collection install -r
    collections/requirements.yml` into requirements_collections (offline: no Galaxy here). Every job gets a copy
    of the result. Its output: ansible-galaxy finds every requirement already installed in the image, the
    project's own anvil.cluster too (same version), so it installs nothing and the jobs run the image's copy."""
    sync = WORK / "project-sync"
    shutil.rmtree(sync, ignore_errors=True)
    (sync / "project").mkdir(parents=True)
    for rel in project_files():
        dest = sync / "project" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, dest, follow_symlinks=False)
    chown_for_image(sync)
    proc = ee.run_in_image(
        image,
        sync,
        [
            "sh",
            "-c",
            "cd /runner/project && ansible-galaxy collection install --offline "
            "-r collections/requirements.yml -p /runner/requirements_collections",
        ],
        {},
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(WORK / "requirements_collections", ignore_errors=True)
    (sync / "requirements_collections").mkdir(exist_ok=True)
    shutil.move(sync / "requirements_collections", WORK / "requirements_collections")
    return proc.stdout


@pytest.fixture(scope="module")
def cluster(mirror, image):
    if os.geteuid() != 0:
        pytest.fail("e2e tests need root: the testbed creates network devices and machines")
    WORK.mkdir(parents=True, exist_ok=True)
    sync = project_sync(image)
    assert "All requested collections are already installed" in sync, sync
    tb("down", check=False)
    add_machine(CP, "control_plane")
    add_machine(WORKER, "workers")
    yield
    timings = json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})
    print("\nAWX runner timings (s): " + timings)
    (WORK / "timings.json").write_text(timings + "\n")
    if os.environ.get("AWX_E2E_KEEP") != "1":
        tb("down", check=False)


EXTRA = {"anvil_cluster_name": "e2e-awx", "anvil_kubeconfig_dest": "/runner/admin.conf"}


# ---- tests, in order --------------------------------------------------------------------------------------


def test_image_runs_jobs_as_its_user_without_a_terminal(image):
    data = WORK / "smoke"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    chown_for_image(data)
    proc = ee.run_in_image(
        image,
        data,
        ["sh", "-c", "id -u; tty; ansible --version | head -1; ansible-runner --version"],
        {},
        timeout=120,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == str(EE_UID), proc.stdout
    assert lines[1] == "not a tty", proc.stdout
    assert lines[2].startswith("ansible [core 2.19."), proc.stdout
    assert lines[3] == "2.4.3", proc.stdout


def test_site_job_deploys_the_cluster(cluster):
    job = Job("site", "playbooks/site.yml", EXTRA).run()
    successful(job)
    TIMINGS["runner site.yml 1 cp + 1 worker"] = job.seconds
    stats = job.stats()
    assert stats["changed"].get(CP, 0) > 0 and stats["changed"].get(WORKER, 0) > 0, stats
    # The events carry the run as AWX shows it: every task started, every host result, no failure.
    kinds = {e["event"] for e in job.events()}
    assert {"playbook_on_start", "playbook_on_play_start", "playbook_on_task_start", "runner_on_ok"} <= kinds, kinds
    assert not {"runner_on_failed", "runner_on_unreachable"} & kinds, kinds
    # The roles ran from the image's anvil.cluster: the project sync installed nothing (docs/awx.md).
    role_files = {
        e["event_data"]["task_path"].rsplit(":", 1)[0]
        for e in job.events()
        if e["event"] == "playbook_on_task_start" and "/roles/" in e["event_data"].get("task_path", "")
    }
    assert role_files, "no task of a role in the job events"
    assert {f for f in role_files if not f.startswith(IMAGE_COLLECTION)} == set(), sorted(role_files)[:5]
    nodes = kubectl_json("get nodes")["items"]
    ready = {
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }
    assert ready == {CP, WORKER}, ready
    assert (job.dir / "admin.conf").is_file()
    (WORK / "admin.conf").write_text((job.dir / "admin.conf").read_text())
    print(f"\nansible-runner site.yml in anvil-ee: {job.seconds:.1f} s")


def drain_pods() -> list[dict]:
    return [p for p in kubectl_json("get pods -l app=awx-drain")["items"] if not p["metadata"].get("deletionTimestamp")]


def running_on_worker() -> int:
    return len(
        [p for p in drain_pods() if p["spec"].get("nodeName") == WORKER and p["status"].get("phase") == "Running"]
    )


def unschedulable() -> bool:
    return bool(kubectl_json(f"get node {WORKER}")["spec"].get("unschedulable"))


def maintenance_job(name: str, action: str) -> Job:
    """The maintenance template's job on the worker, with the Kubernetes credential: the module runs in the
    image (anvil_maintenance_delegate=localhost) and reaches the API server through K8S_AUTH_KUBECONFIG."""
    extravars = {"action": action, "anvil_maintenance_delegate": "localhost", "anvil_maintenance_timeout": 300}
    return Job(name, "playbooks/maintenance.yml", extravars, limit=WORKER, kubeconfig=(WORK / "admin.conf").read_text())


def test_maintenance_job_drains_and_uncordons_the_worker(cluster):
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "awx-drain", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "awx-drain"}},
            "template": {
                "metadata": {"labels": {"app": "awx-drain"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": WORKER},
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "pause", "image": PAUSE_IMAGE}],
                },
            },
        },
    }
    sh(CP, f"cat <<'EOF' | {KUBECTL} apply -f -\n{json.dumps(manifest)}\nEOF")
    poll(lambda: running_on_worker() == 2, 240, "2 pods Running on the worker")
    assert not unschedulable()

    # What a drain must evict: every pod on the worker that no DaemonSet owns (the Deployment's two, and
    # whichever CoreDNS or Calico controller pods the scheduler placed there).
    on_worker = kubectl_json(f"get pods -A --field-selector spec.nodeName={WORKER}")["items"]
    to_evict = sorted(
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in on_worker
        if not any(o.get("kind") == "DaemonSet" for o in p["metadata"].get("ownerReferences", []))
    )
    drain = maintenance_job("maintenance-drain", "drain").run()
    successful(drain)
    TIMINGS["runner maintenance.yml drain"] = drain.seconds
    [result] = drain.task_results("Put the node into the requested maintenance state")
    assert result["res"]["changed"] is True and result["res"]["unschedulable"] is True, result["res"]
    assert sorted(result["res"]["evicted"]) == to_evict, result["res"]
    assert len([name for name in to_evict if name.startswith("default/awx-drain-")]) == 2, to_evict
    assert unschedulable()
    # Evicted: no pod of the Deployment runs on the drained node (the replacements wait for it).
    assert [p for p in drain_pods() if p["spec"].get("nodeName") == WORKER] == [], drain_pods()

    uncordon = maintenance_job("maintenance-uncordon", "uncordon").run()
    successful(uncordon)
    TIMINGS["runner maintenance.yml uncordon"] = uncordon.seconds
    [result] = uncordon.task_results("Put the node into the requested maintenance state")
    assert result["res"]["changed"] is True and result["res"]["unschedulable"] is False, result["res"]
    assert not unschedulable()
    poll(lambda: running_on_worker() == 2, 240, "the waiting pods Running on the uncordoned worker")
    sh(CP, f"{KUBECTL} delete deployment awx-drain --wait=false")
    print(f"\nmaintenance drain {drain.seconds:.1f} s, uncordon {uncordon.seconds:.1f} s")


def survey_question(template: str, variable: str) -> dict:
    jt = next(t for t in TEMPLATES["anvil_awx_job_templates"] if t["name"] == template)
    return next(q for q in jt["survey"] if q["variable"] == variable)


def refused_before_any_change(job: Job, refusing_task: str) -> None:
    """The job failed in the task named (or whose name starts with) refusing_task, and nothing changed."""
    assert job.rc != 0 and job.status() == "failed", job.describe()
    events = job.events()
    failed = {e["event_data"]["task"] for e in events if e["event"] == "runner_on_failed"}
    assert len(failed) == 1 and next(iter(failed)).startswith(refusing_task), failed
    assert not [e for e in events if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")], (
        "a task changed something before the refusal"
    )
    assert not job.stats().get("changed"), job.stats()


def test_survey_answer_outside_its_choices_is_refused_before_any_change(cluster):
    question = survey_question("maintenance", "action")
    assert question["type"] == "multiplechoice"
    answer = "evict"
    assert answer not in question["choices"]
    marker = "/run/awx-e2e-refusal"
    for node in (CP, WORKER):
        sh(node, f"touch {marker}")
    job = maintenance_job("maintenance-refused", answer).run()
    refused_before_any_change(job, "Check the requested action")
    assert "drain, cordon or uncordon" in (job.artifacts / "stdout").read_text(), job.describe()
    tasks = [e["event_data"]["task"] for e in job.events() if e["event"] == "playbook_on_task_start"]
    assert "Put the node into the requested maintenance state" not in tasks, tasks
    assert not unschedulable()
    assert host_changes_since(marker) == {CP: [], WORKER: []}
    TIMINGS["runner maintenance.yml refused"] = job.seconds


def test_site_survey_answer_of_the_wrong_type_fails_in_preflight(cluster):
    question = survey_question("site", "preflight_probe_timeout")
    assert question["type"] == "integer"
    marker = "/run/awx-e2e-preflight"
    for node in (CP, WORKER):
        sh(node, f"touch {marker}")
    job = Job("site-refused", "playbooks/site.yml", {**EXTRA, "preflight_probe_timeout": "five"}).run()
    refused_before_any_change(job, "Validating arguments against arg spec 'main'")
    started = [e["event_data"]["play"] for e in job.events() if e["event"] == "playbook_on_play_start"]
    assert started == ["Preflight - judge the inventory and every host before anything changes"], started
    role = {e["event_data"].get("role") for e in job.events() if e["event"] == "runner_on_failed"}
    assert role == {"preflight"}, role
    assert host_changes_since(marker) == {CP: [], WORKER: []}
    TIMINGS["runner site.yml refused in preflight"] = job.seconds
