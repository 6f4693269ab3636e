"""Detached component processes: start, identity (pid + start time), stop, orphans, ports, memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tools.kube_api.health import wait_for
from tools.kube_api.instance import Instance


def process_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def process_alive(pid: int, start_time: int | None) -> bool:
    now = process_start_time(pid)
    if now is None or (start_time is not None and now != start_time):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_in_use(port: int) -> bool:
    """True when a server could not bind 127.0.0.1:port (a listener or an outgoing connection holds it).

    SO_REUSEADDR is set like Go's listeners do, so sockets in TIME_WAIT do not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def start_process(inst: Instance, name: str, argv: list[str]) -> dict:
    inst.logs.mkdir(parents=True, exist_ok=True)
    logf = open(inst.logs / f"{name}.log", "ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=inst.dir,
            env={**os.environ, "KUBECONFIG": ""},
        )
    finally:
        logf.close()
    start_time = process_start_time(proc.pid)
    # Popen returns once the exec has begun, but the kernel sets up the new program's command line a
    # moment later: until then /proc/<pid>/cmdline is empty and orphan_pids() would not recognise the
    # process. Return once it shows (or the process has already exited).
    wait_for(
        f"{name} to run {argv[0]}",
        lambda: runs_program(proc.pid, argv[0]) or not process_alive(proc.pid, start_time),
        10,
    )
    return {"pid": proc.pid, "start_time": start_time, "argv0": argv[0]}


def runs_program(pid: int, argv0: str) -> bool:
    """The process's command line starts with `argv0` (it is past its exec)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0] == argv0.encode()
    except OSError:
        return False


def stop_process(entry: dict, timeout: float = 15.0) -> None:
    pid, start = entry["pid"], entry.get("start_time")
    if not process_alive(pid, start):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid, start):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process_alive(pid, start):
        _reap(pid)
        time.sleep(0.1)


def _reap(pid: int) -> None:
    """Collect our own exited child (when this process started it) so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def orphan_pids(inst: Instance) -> list[int]:
    """Pids of processes whose command line points into this instance's directory."""
    marker = f"{inst.dir}/".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and process_alive(int(proc.name), None):
            found.append(int(proc.name))
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
