"""The command line: python -m tools.testbed up|down|status|exec|stop|start|add|remove|build|inventory."""

from __future__ import annotations

import argparse
import json
import os
import sys

import tools.testbed
from tools.testbed.commands import add, build, down, remove, start, status_rows, stop, up
from tools.testbed.config import BRIDGE, CONTROL_PLANE, INVENTORY, WORKERS, TestbedError, log
from tools.testbed.inventory import write_inventory
from tools.testbed.machine import get_machine, load_machines
from tools.testbed.network import link_exists
from tools.testbed.preflight import preflight
from tools.testbed.runtime import exec_in


def print_status(as_json: bool = False) -> None:
    rows = status_rows()
    if as_json:
        print(json.dumps({"machines": rows, "inventory": str(INVENTORY), "bridge": link_exists(BRIDGE)}))
        return
    if not rows:
        print("no testbed machines (make testbed-up)")
        return
    print(f"{'NAME':<12} {'ROLE':<14} {'ADDRESS':<14} {'STATE':<8} {'PID1':>8} {'RSS MiB':>8} {'PSS MiB':>8} PROCS")
    for r in rows:
        print(
            f"{r['name']:<12} {r['role']:<14} {r['ip']:<14} {r['state']:<8} {r['pid1'] or '-':>8} "
            f"{r['rss_mib']:>8} {r['pss_mib']:>8} {r['processes']}"
        )
    print(f"inventory: {INVENTORY}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description=tools.testbed.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create and boot machines, write the inventory")
    p_up.add_argument("--nodes", type=int, default=int(os.environ.get("NODES", "3")))
    p_up.add_argument("--control-planes", type=int, default=int(os.environ.get("CONTROL_PLANES", "1")))
    sub.add_parser("down", help="remove machines, veths, mounts, processes (and the bridge unless the mirror runs)")
    p_status = sub.add_parser("status", help="machines, state and memory")
    p_status.add_argument("--json", action="store_true")
    p_exec = sub.add_parser("exec", help="run a command inside a machine")
    p_exec.add_argument("node")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER)
    for name, text in (("stop", "power a machine off"), ("start", "boot a stopped machine again")):
        sub.add_parser(name, help=text).add_argument("node")
    p_add = sub.add_parser("add", help="one more machine in a running testbed")
    p_add.add_argument("node")
    p_add.add_argument("--role", choices=[CONTROL_PLANE, WORKERS])
    sub.add_parser("remove", help="power a machine off and delete it").add_argument("node")
    p_build = sub.add_parser("build", help="build (or rebuild) the cached base root filesystem")
    p_build.add_argument("--force", action="store_true")
    sub.add_parser("inventory", help="rewrite the inventory from the recorded machines")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.nodes, args.control_planes)
            print_status()
        elif args.command == "down":
            down()
        elif args.command == "status":
            print_status(args.json)
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise TestbedError("usage: testbed exec NODE CMD...")
            return exec_in(get_machine(args.node), cmd, capture=False).returncode
        elif args.command == "stop":
            stop(args.node)
            log(f"{args.node} stopped")
        elif args.command == "start":
            start(args.node)
            log(f"{args.node} running")
        elif args.command == "add":
            machine = add(args.node, args.role)
            log(f"{machine.name} added at {machine.ip}; inventory: {INVENTORY}")
        elif args.command == "remove":
            remove(args.node)
            log(f"{args.node} removed")
        elif args.command == "build":
            preflight(0, building=True)
            build(force=args.force)
        elif args.command == "inventory":
            print(write_inventory(load_machines()))
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 2
    return 0
