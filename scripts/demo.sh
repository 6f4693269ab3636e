#!/usr/bin/env bash
# make demo: from a fresh machine to a working cluster on local testbed machines, in one command.
#   setup -> artifacts (built or reused) -> mirror -> testbed -> site.yml -> smoke test -> summary.
# NODES / CONTROL_PLANES choose the testbed shape (default 3 machines, 1 control plane).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
nodes="${NODES:-3}"
cps="${CONTROL_PLANES:-1}"
kubeconfig="${ANVIL_DEMO_KUBECONFIG:-$root/build/demo/admin.conf}"
start=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "setup (tools, Python venv, Debian packages)"
make --no-print-directory setup
export PATH="$root/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$root/build/collections"

step "artifacts (Kubernetes and friends from source; reused when cached)"
make --no-print-directory artifacts

step "mirror (files, apt repository, OCI registry)"
make --no-print-directory mirror-up

step "testbed ($nodes machines, $cps control plane(s))"
make --no-print-directory testbed-up NODES="$nodes" CONTROL_PLANES="$cps"

step "site.yml"
mkdir -p "$(dirname "$kubeconfig")"
ansible-playbook -i inventories/testbed playbooks/site.yml \
  -e anvil_kubeconfig_dest="$kubeconfig" -e anvil_cluster_name=demo

step "smoke test (a Deployment from the mirror, DNS from a pod, a Service)"
"$root/.venv/bin/python" "$root/scripts/demo_smoke.py" "$kubeconfig"

step "done"
echo "kubeconfig: $kubeconfig"
echo "  export KUBECONFIG=$kubeconfig"
"$root/.venv/bin/python" - "$kubeconfig" <<'PY'
import sys
from kubernetes import client, config
api = client.CoreV1Api(config.new_client_from_config(sys.argv[1]))
print(f"{'NAME':<14}{'STATUS':<10}{'ROLES':<16}{'INTERNAL-IP':<16}VERSION")
for n in api.list_node().items:
    ready = next((c.status for c in n.status.conditions if c.type == "Ready"), "Unknown")
    roles = ",".join(k.split("/", 1)[1] for k in n.metadata.labels if k.startswith("node-role.kubernetes.io/")) or "<none>"
    ip = next((a.address for a in n.status.addresses if a.type == "InternalIP"), "")
    print(f"{n.metadata.name:<14}{'Ready' if ready == 'True' else 'NotReady':<10}{roles:<16}{ip:<16}{n.status.node_info.kubelet_version}")
PY
echo "total time: $(( $(date +%s) - start )) s"
