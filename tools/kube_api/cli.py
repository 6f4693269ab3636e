"""The command line: python -m tools.kube_api up|down|status|env|check-binaries|user."""

from __future__ import annotations

import argparse
import json
import os

import tools.kube_api
from tools.kube_api.binaries import find_binaries
from tools.kube_api.errors import KubeApiError, log
from tools.kube_api.instance import Instance, from_env
from tools.kube_api.lifecycle import down, env_line, status, up
from tools.kube_api.pki import mint_user


def main(argv: list[str] | None = None) -> int:
    configured = from_env()
    parser = argparse.ArgumentParser(
        prog="python -m tools.kube_api", description=tools.kube_api.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--instance", default=configured.name)
    parser.add_argument("--port-offset", type=int, default=configured.port_offset)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start (or reuse) the local API")
    p_up.add_argument("--nodes", type=int, default=int(os.environ.get("ANVIL_KUBE_API_NODES", "3")))
    p_up.add_argument("--timeout", type=float, default=120.0)
    sub.add_parser("down", help="stop it and remove its state")
    sub.add_parser("status", help="print health as JSON; exit 1 when not healthy")
    sub.add_parser("env", help="print `export KUBECONFIG=...`")
    sub.add_parser("check-binaries", help="exit 0 when every binary is built")
    p_user = sub.add_parser("user", help="mint a limited user's kubeconfig and print its path")
    p_user.add_argument("--name", required=True)
    p_user.add_argument("--group", action="append", default=[])
    args = parser.parse_args(argv)
    inst = Instance(name=args.instance, port_offset=args.port_offset)

    try:
        if args.cmd == "up":
            up(inst, args.nodes, timeout=args.timeout)
            print(env_line(inst))
        elif args.cmd == "down":
            stopped = down(inst)
            log(f"stopped {', '.join(stopped) if stopped else 'nothing (not running)'}; removed {inst.dir}")
        elif args.cmd == "status":
            st = status(inst)
            print(json.dumps(st, indent=2))
            return 0 if st.get("healthy") else 1
        elif args.cmd == "env":
            print(env_line(inst))
        elif args.cmd == "check-binaries":
            for name, path in find_binaries().items():
                print(f"{name}: {path}")
        elif args.cmd == "user":
            print(mint_user(inst, args.name, args.group))
    except KubeApiError as e:
        log(f"ERROR: {e}")
        return 1
    return 0
