"""Benchmark of a cluster deployment on the testbed: warm `testbed up`, site.yml first run, re-run.

Prints: seconds for a warm `up` of BENCH_SITE_NODES machines (default 3, one control plane), the memory
of each idle machine, site.yml's
first run on them, its re-run (with the changed count, which must be 0) and the re-run's share of the
first run, then the slowest tasks of the re-run (where a no-op run spends its time). Not a pass/fail
test: the e2e tests assert behaviour; this prints numbers.

It uses the default testbed and refuses to run when machines of it are already running (it would tear
them down). The mirror is shared as the e2e tests share it (tests/helpers/mirror.py).
"""

from __future__ import annotations

import os
import sys
import time

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.mirror import default_url, shared_mirror
from tools import testbed as tb

SITE = REPO_ROOT / "playbooks" / "site.yml"
WORK = REPO_ROOT / "build" / "bench-site"
NODES = int(os.environ.get("BENCH_SITE_NODES", "3"))


def task_seconds(result) -> list[tuple[float, str]]:
    """(seconds, task name) per task: the span from the first host's start to the last host's end."""
    from datetime import datetime

    def ts(value: str) -> float:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    out = []
    for task in result.tasks:
        span = task["task"].get("duration") or {}
        if span.get("start") and span.get("end"):
            out.append((ts(span["end"]) - ts(span["start"]), task["task"]["name"]))
    return sorted(out, reverse=True)


def main() -> int:
    if any(m.running() for m in tb.load_machines()):
        print("bench_site: testbed machines are running; run `make testbed-down` first (this bench recreates them)")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    extra = {"anvil_kubeconfig_dest": str(WORK / "admin.conf"), "anvil_cluster_name": "bench"}
    # The mirror as the e2e tests share it: started if it is not serving, stopped by the last user.
    with shared_mirror(default_url()):
        try:
            return run(extra)
        finally:
            tb.down()


def run(extra: dict) -> int:
    tb.build_rootfs()
    tb.down()
    started = time.monotonic()
    tb.up(NODES, 1)
    up_s = time.monotonic() - started
    idle = [
        f"{r['name']} RSS {r['rss_mib']} MiB / PSS {r['pss_mib']} MiB, {r['processes']} processes"
        for r in tb.status_rows()
    ]

    started = time.monotonic()
    first = run_playbook(SITE, inventory=tb.INVENTORY, extra_vars=extra)
    first_s = time.monotonic() - started
    if first.rc != 0:
        print(first.stdout[-3000:], first.stderr[-2000:])
        return 1
    started = time.monotonic()
    second = run_playbook(SITE, inventory=tb.INVENTORY, extra_vars=extra)
    second_s = time.monotonic() - started

    print(f"testbed up ({NODES} machines, warm): {up_s:6.1f} s")
    print("idle machines: " + "; ".join(idle))
    print(f"site.yml first run:                 {first_s:6.1f} s  changed={first.changed()}")
    print(f"site.yml re-run:                    {second_s:6.1f} s  changed={second.changed()} rc={second.rc}")
    print(f"re-run / first run:                 {100 * second_s / first_s:6.1f} %")
    print(f"tasks run on the re-run:            {len(second.tasks)}")
    print("slowest tasks of the re-run:")
    for seconds, name in task_seconds(second)[:12]:
        print(f"  {seconds:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
