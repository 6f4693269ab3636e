#!/usr/bin/env bash
# Run the integration suite with the lowest `kubernetes` Python client the modules declare
# (plugins/doc_fragments/k8s.py), in a venv of its own under $ANVIL_CACHE (kept for the next run).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/.*- kubernetes >= \([0-9.]*\).*/\1/p' "$here/plugins/doc_fragments/k8s.py" | head -1)"
[ -n "$version" ] || { echo "no 'kubernetes >= X' requirement in plugins/doc_fragments/k8s.py" >&2; exit 1; }
venv="${ANVIL_CACHE:-/var/cache/anvil}/venv-kubernetes-$version"
stamp="$venv/.ready-$(cat "$here/requirements-dev.txt" "$here/requirements.txt" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements-dev.txt"
  "$venv/bin/pip" install -q "kubernetes==$version"
  touch "$stamp"
fi
echo "integration suite with kubernetes $("$venv/bin/python" -c 'import kubernetes; print(kubernetes.__version__)')"
cd "$here"
PATH="$venv/bin:$PATH" exec "$venv/bin/python" -m pytest tests/integration "$@"
