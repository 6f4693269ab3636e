"""A local Kubernetes API for tests: etcd + kube-apiserver + kube-controller-manager + kube-scheduler
on 127.0.0.1, with kwok simulating the nodes.

CLI (also wrapped by `make kube-api NODES=N`, `make kube-api-down`, `make kube-api-status`)::

    python -m tools.kube_api up --nodes 3     # start, or reuse a healthy running instance
    python -m tools.kube_api down             # stop every process, remove every file it made
    python -m tools.kube_api status           # exit 0 when healthy
    python -m tools.kube_api env              # prints: export KUBECONFIG=...
    python -m tools.kube_api user --name alice --group devs   # mint a limited user's kubeconfig

--instance / --port-offset (or ANVIL_KUBE_API_INSTANCE / ANVIL_KUBE_API_PORT_OFFSET) select a private
instance; the integration fixture honours the same variables (`from_env()`).

Design:
- Every run generates a fresh PKI (ECDSA P-256: a CA, serving and client certificates, the
  service-account signing key) with the `cryptography` package, so nothing secret is checked in. Keys
  and kubeconfigs are written 0600.
- etcd speaks TLS with client certificates on non-default ports (23790/23800), the apiserver listens on
  127.0.0.1:16443 with RBAC on, so a real cluster on the host does not clash. The controller-manager
  and scheduler serve their health endpoints on 16257 / 16259, kwok on 16280.
- `up` reuses a healthy instance. When the node count differs, it scales the kwok nodes (creates the
  missing `kwok-node-<i>` or deletes the surplus) instead of restarting, because other test sessions
  may share the instance. A failed start stops what it started and removes the state directory; the
  logs of that attempt are kept in `$ANVIL_STATE/kube-api-failed-logs/` to say why.
- Processes run detached (own session), so the instance outlives the command that started it; pids and
  process start times are recorded so `down` never signals an unrelated process that reused a pid.
- An instance has a name and a port offset: the default one is what tests share; benchmarks start a
  separate one (`--instance bench --port-offset 5000`) so they never disturb it. Keep offsets below
  8900: higher ones put ports in the kernel's range for outgoing connections (32768+).

Modules, one job each: `instance` (state directory and ports), `binaries` (the built binaries), `pki`
(certificates and kubeconfigs), `components` (command lines), `processes` (detached processes),
`health` (health endpoints, waiting), `state` (state file, lock, health of an instance), `rest` (API
client), `kwok` (the simulated node pool), `lifecycle` (up, down, status), `cli` (the command line).
This package re-exports what tests and benchmarks use, as `from tools import kube_api as kapi`.
"""

from __future__ import annotations

from tools.kube_api.binaries import (
    ARCH,
    BINARIES,
    BINARIES_MISSING_HINT,
    _version_key,
    find_binaries,
    find_binary,
    kubectl_binary,
    manifest_version,
)
from tools.kube_api.components import (
    KWOK_CONFIG_FILE,
    KWOK_NODE_ANNOTATION,
    KWOK_STAGES_FILE,
    NODE_MONITOR_GRACE_PERIOD,
    POD_CIDR,
    REPO_ROOT,
    SERVICE_CIDR,
    START_ORDER,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kwok_args,
    scheduler_args,
    scheduler_config,
    service_ip,
)
from tools.kube_api.errors import BinariesMissing, KubeApiError, log
from tools.kube_api.health import health_checks, wait_for
from tools.kube_api.instance import DEFAULT, Instance, from_env
from tools.kube_api.kwok import (
    NODE_CAPACITY,
    NODE_POOL_LABEL,
    NODE_PREFIX,
    create_nodes,
    delete_nodes,
    list_pool_nodes,
    node_index,
    node_manifest,
    node_name,
    node_ready,
    plan_node_scaling,
    scale_nodes,
    wait_nodes_ready,
)
from tools.kube_api.lifecycle import down, env_line, start_fresh, status, teardown, up, wait_default_service_account
from tools.kube_api.pki import (
    CLIENT_IDENTITIES,
    generate_pki,
    issue_cert,
    kubeconfig_dict,
    make_ca,
    mint_user,
    user_kubeconfig_name,
    write_component_kubeconfigs,
    write_kubeconfig,
)
from tools.kube_api.processes import (
    ephemeral_port_range,
    log_tail,
    orphan_pids,
    port_in_use,
    process_alive,
    rss_kib,
    start_process,
    stop_process,
)
from tools.kube_api.rest import Rest, api_client
from tools.kube_api.state import dead_processes, instance_lock, is_healthy, load_state, save_state

__all__ = [
    "ARCH",
    "BINARIES",
    "BINARIES_MISSING_HINT",
    "CLIENT_IDENTITIES",
    "DEFAULT",
    "KWOK_CONFIG_FILE",
    "KWOK_NODE_ANNOTATION",
    "KWOK_STAGES_FILE",
    "NODE_CAPACITY",
    "NODE_MONITOR_GRACE_PERIOD",
    "NODE_POOL_LABEL",
    "NODE_PREFIX",
    "POD_CIDR",
    "REPO_ROOT",
    "SERVICE_CIDR",
    "START_ORDER",
    "BinariesMissing",
    "Instance",
    "KubeApiError",
    "Rest",
    "_version_key",
    "api_client",
    "apiserver_args",
    "controller_manager_args",
    "create_nodes",
    "dead_processes",
    "delete_nodes",
    "down",
    "env_line",
    "ephemeral_port_range",
    "etcd_args",
    "find_binaries",
    "find_binary",
    "from_env",
    "generate_pki",
    "health_checks",
    "instance_lock",
    "is_healthy",
    "issue_cert",
    "kubeconfig_dict",
    "kubectl_binary",
    "kwok_args",
    "list_pool_nodes",
    "load_state",
    "log",
    "log_tail",
    "make_ca",
    "manifest_version",
    "mint_user",
    "node_index",
    "node_manifest",
    "node_name",
    "node_ready",
    "orphan_pids",
    "plan_node_scaling",
    "port_in_use",
    "process_alive",
    "rss_kib",
    "save_state",
    "scale_nodes",
    "scheduler_args",
    "scheduler_config",
    "service_ip",
    "start_fresh",
    "start_process",
    "status",
    "stop_process",
    "teardown",
    "up",
    "user_kubeconfig_name",
    "wait_default_service_account",
    "wait_for",
    "wait_nodes_ready",
    "write_component_kubeconfigs",
    "write_kubeconfig",
]
