"""Probing the API server during a disruptive step: once a second from a node, recorded for assertions."""

from __future__ import annotations

import threading
import time

# A node's kubelet identity through its local load balancer (kubelet.conf points at 127.0.0.1:8443).
READYZ = "kubectl --kubeconfig /etc/kubernetes/kubelet.conf --request-timeout=2s get --raw /readyz"


class Prober(threading.Thread):
    """Runs `command` (default: the API server's /readyz) once a second on a node; records (wall time, ok,
    output). ok: exit status 0 and the output `ok`."""

    def __init__(self, testbed, node: str, command: str = READYZ):
        super().__init__(daemon=True)
        self.testbed, self.node, self.command = testbed, node, command
        self.stopping = threading.Event()
        self.probes: list[tuple[float, bool, str]] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.time()
            try:
                proc = self.testbed.exec(self.node, self.command, timeout=10)
                ok, out = proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.stdout + proc.stderr)[-200:]
            except Exception as exc:  # a probe that cannot even run counts as failed
                ok, out = False, repr(exc)
            self.probes.append((started, ok, out.strip()))
            self.stopping.wait(max(0.0, 1.0 - (time.time() - started)))  # pace: one probe per second

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def longest_gap(probes: list[tuple[float, bool, str]]) -> float:
    """Seconds from the first failed probe of the longest run of failures to the next probe that answered (or
    the last probe); 0 without failures."""
    gap, run_start = 0.0, None
    for at, ok, _ in probes:
        if not ok and run_start is None:
            run_start = at
        if ok and run_start is not None:
            gap, run_start = max(gap, at - run_start), None
    if run_start is not None:
        gap = max(gap, probes[-1][0] - run_start)
    return gap
