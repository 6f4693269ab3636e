#!/usr/bin/env bash
# Module benchmarks of two trees side by side, in one window: BASE (a git revision, checked out into a
# temporary worktree) and the working tree. Each benchmark runs for BASE, then for the working tree,
# before the next one starts, so both see the same machine load (printed with each run).
#
#   bash scripts/bench_compare.sh <base-rev> [bench ...]      # default: node_maintenance tenant app_release
#   bash scripts/bench_compare.sh <base-rev> site site        # site.yml first run and re-run on the testbed, twice
#
# Sizes are the ones a 2-core machine finishes in minutes (override through the benchmarks' own knobs):
# node_maintenance's 100-pod drains, tenant with BENCH_TENANTS tenants (default 1000, module only),
# app_release's 50-object release with --runs 3. Prints numbers; not a pass/fail test. Each run ends with the
# CPU time of every process the benchmark started and waited for (ansible-playbook, the modules, and the local
# API server it stops at its end): with equal request counts, a difference there is the client's cost, and it
# moves less with the machine's load than the wall times do.
set -euo pipefail
base="${1:?usage: bench_compare.sh <base-rev> [bench ...]}"; shift
benches=("$@"); [ "${#benches[@]}" -gt 0 ] || benches=(node_maintenance tenant app_release)
here="$(cd "$(dirname "$0")/.." && pwd)"
python="$here/.venv/bin/python"
export PATH="$here/.venv/bin:$PATH"
work="$(mktemp -d /tmp/anvil-bench-base.XXXXXX)"
cleanup() { git -C "$here" worktree remove --force "$work" >/dev/null 2>&1 || rm -rf "$work"; }
trap cleanup EXIT
git -C "$here" worktree add --detach "$work" "$base" >/dev/null
mkdir -p "$work/build/collections/ansible_collections/anvil"
ln -sfn "$work" "$work/build/collections/ansible_collections/anvil/cluster"
export BENCH_TENANTS="${BENCH_TENANTS:-1000}" BENCH_K8S_TENANTS="${BENCH_K8S_TENANTS:-0}"

run() {  # tree label bench
  local tree="$1" label="$2" bench="$3" args=()
  case "$bench" in
    node_maintenance) args=(--phases small --repeat 2) ;;
    app_release) args=(--runs 3) ;;
  esac
  echo "=== $bench @ $label ($(git -C "$tree" rev-parse --short HEAD)$( [ "$tree" = "$here" ] && ! git -C "$here" diff --quiet HEAD && echo '+changes')); load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$tree" && PYTHONPATH="$tree" ANSIBLE_COLLECTIONS_PATH="$tree/build/collections" \
    ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=true /usr/bin/time -f "=== $bench @ $label: CPU %U s user + %S s system, wall %e s" \
    "$python" -m "tests.bench.bench_$bench" "${args[@]}")
}

for bench in "${benches[@]}"; do
  run "$work" "base" "$bench"
  run "$here" "head" "$bench"
done
