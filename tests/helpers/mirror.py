"""The mirror e2e tests install from (tools/mirror.py), shared by every test session on this host.

A session that finds no mirror answering starts one. Every session holds a lease
($ANVIL_STATE/mirror/test-sessions/<pid>-<start time>) while it uses the mirror, so one session never
stops the mirror under another (say, the cluster tests on the default testbed and the testbed tests on
ANVIL_TESTBED_INSTANCE=7). The last session to leave stops a mirror that a test session started, and
removes the bridge that start created when no machine is attached to it any more: the host is left as
the first session found it. While machines of another testbed run (a session that may use the mirror
without holding a lease), the mirror is left running for the last session to stop. A mirror started by
hand (`make mirror-up`) is never stopped; ANVIL_MIRROR_KEEP=1 hands a started one over to you.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.helpers.wait import wait_until
from tools import anvil_env
from tools import testbed as tb

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR_TOOL = [sys.executable, "-m", "tools.mirror"]
LEASES = anvil_env.ANVIL_STATE / "mirror" / "test-sessions"  # beside the mirror's own state
SESSIONS = LEASES / "live"
STARTED_BY_TESTS = LEASES / "started-by-tests.json"


def default_url() -> str:
    """The mirror the testbed's machines install from (ANVIL_TESTBED_MIRROR_URL points elsewhere)."""
    return os.environ.get("ANVIL_TESTBED_MIRROR_URL") or (
        f"http://{anvil_env.ANVIL_BRIDGE_ADDR}:{anvil_env.ANVIL_MIRROR_HTTP_PORT}"
    )


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _live_leases() -> list[Path]:
    live = []
    for lease in SESSIONS.glob("*"):
        pid, _, started = lease.name.partition("-")
        if pid.isdigit() and _start_time(int(pid)) == started:
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)  # a session that ended without leaving (killed)
    return live


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    LEASES.mkdir(parents=True, exist_ok=True)
    with open(LEASES / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mirror(command: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MIRROR_TOOL, command], cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def _bridge_unused() -> bool:
    links = subprocess.run(
        ["ip", "-j", "link", "show", "master", anvil_env.ANVIL_BRIDGE], capture_output=True, text=True, check=False
    )
    return links.returncode == 0 and not json.loads(links.stdout or "[]")


def _machines_of_other_testbeds() -> list[int]:
    """systemd-nspawn processes of machines outside this testbed (tools.testbed settings of this session)."""
    own = f"--directory={tb.MACHINES_DIR}/"
    found = []
    for entry in Path("/proc").iterdir():
        cmd = tb.cmdline(int(entry.name)) if entry.name.isdigit() else []
        if cmd and cmd[0].endswith("systemd-nspawn") and not any(arg.startswith(own) for arg in cmd):
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def shared_mirror(url: str) -> Iterator[str]:
    """Use the mirror at `url` (its /apt/ repository answers) for as long as the block runs."""
    lease = SESSIONS / f"{os.getpid()}-{_start_time(os.getpid())}"
    with _locked():
        SESSIONS.mkdir(exist_ok=True)
        lease.touch()
        if not answers(f"{url}/apt/Packages"):
            bridge_existed = anvil_env.bridge_exists()
            proc = _mirror("up")
            if proc.returncode != 0:
                lease.unlink(missing_ok=True)
                raise AssertionError(f"`tools/mirror.py up` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            if not STARTED_BY_TESTS.exists():
                STARTED_BY_TESTS.write_text(json.dumps({"bridge_created": not bridge_existed}) + "\n")
            wait_until(lambda: answers(f"{url}/apt/Packages"), 60, f"the started mirror to answer {url}/apt/Packages")
    try:
        yield url
    finally:
        with _locked():
            lease.unlink(missing_ok=True)
            if STARTED_BY_TESTS.exists() and not _live_leases() and not _machines_of_other_testbeds():
                _release_started_mirror()


def _release_started_mirror() -> None:
    """The last session out: stop the mirror a test session started (or hand it over: ANVIL_MIRROR_KEEP=1)."""
    started = json.loads(STARTED_BY_TESTS.read_text())
    STARTED_BY_TESTS.unlink()
    if os.environ.get("ANVIL_MIRROR_KEEP") == "1":
        return  # yours now, like one started with `make mirror-up`
    _mirror("down")
    if started.get("bridge_created") and anvil_env.bridge_exists() and _bridge_unused():
        subprocess.run(["ip", "link", "del", anvil_env.ANVIL_BRIDGE], check=False)
