"""The testbed bridge, machine addresses, routes on the host, and whether the mirror uses the bridge."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tools import anvil_env
from tools.testbed.config import (
    BLACKHOLE_GATEWAY,
    BRIDGE,
    BRIDGE_IF,
    FIRST_MACHINE_OFFSET,
    HOST_ADDR,
    INSTANCE,
    MIRROR_ADDR,
    MIRROR_STATE_DIR,
    NETWORK,
    TestbedError,
    run,
)

if TYPE_CHECKING:
    from tools.testbed.machine import Machine


def ensure_bridge() -> str:
    """The default testbed shares the mirror's bridge (tools.anvil_env); an instance has its own."""
    if not INSTANCE:
        return anvil_env.ensure_bridge()
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE]).stdout
    if str(BRIDGE_IF) not in addrs:
        run(["ip", "addr", "add", str(BRIDGE_IF), "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    return HOST_ADDR


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def next_free_ip(machines: list[Machine]) -> str:
    used = {m.ip for m in machines}
    for offset in range(FIRST_MACHINE_OFFSET, NETWORK.num_addresses - 2):
        addr = str(NETWORK[offset])
        if addr not in used and addr != BLACKHOLE_GATEWAY:
            return addr
    raise TestbedError(f"no free address left in {NETWORK}")


def route_conflicts() -> list[str]:
    """The bridge network must be routed nowhere but on our bridge (or nowhere yet)."""
    problems = []
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if route.get("type") in ("local", "broadcast") or not dst:
            continue
        if dst == "default":
            gateway = route.get("gateway")
            if gateway and ipaddress.ip_address(gateway) in NETWORK:
                problems.append(f"the host's default gateway {gateway} is inside the testbed network {NETWORK}")
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(dst, strict=False).overlaps(NETWORK) and route.get("dev") != BRIDGE:
                problems.append(f"{NETWORK} is already routed: '{dst} dev {route.get('dev')}' (choose another range)")
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show"], check=False).stdout or "[]")
    for link in addrs:
        if link.get("ifname") == BRIDGE:
            continue
        for info in link.get("addr_info", []):
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            if iface.network.overlaps(NETWORK):
                problems.append(f"{link['ifname']} already has {iface}, inside the testbed network {NETWORK}")
    return problems


def mirror_running() -> bool:
    """True when the mirror (another tool) still uses the bridge: its pid files or a listener on the address."""
    if MIRROR_STATE_DIR.is_dir():
        for pid_file in MIRROR_STATE_DIR.rglob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                if Path(f"/proc/{int(pid_file.read_text().split()[0])}").exists():
                    return True
    listeners = [line.split() for line in (run(["ss", "-Hltn"], check=False).stdout or "").splitlines()]
    return any(len(cols) > 3 and cols[3].startswith(MIRROR_ADDR + ":") for cols in listeners)
