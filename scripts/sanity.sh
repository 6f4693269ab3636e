#!/usr/bin/env bash
# ansible-test sanity on the collection exactly as it ships: build the tarball, install it into a
# temporary ansible_collections tree next to the collections it depends on, run sanity there, with the
# ansible-test and the Python of the `python` on PATH.
# ANVIL_SANITY_CORE=2.17.14: that ansible-core instead, in a venv of its own (`make sanity SANITY_CORE=...`).
# Set by `make sanity-ee` (tools/ee.py sanity) in the anvil-ee image too: ANVIL_SANITY_TARBALL, a tarball built
# already (`make build`), and ANVIL_SANITY_COLLECTIONS, a collections directory holding the dependencies.
set -euo pipefail
version="$1"; shift
root="$(cd "$(dirname "$0")/.." && pwd)"
# Outside the repository: inside it, ansible-test would list files through git and skip build/.
# A directory of its own per run, so runs from two checkouts at the same time never share it.
work="$(mktemp -d "${TMPDIR:-/tmp}/anvil-sanity.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/dist"
# Dependencies (for doc fragments and module_utils imports) come from the pinned `ansible` package
# (or ANVIL_SANITY_COLLECTIONS).
site="${ANVIL_SANITY_COLLECTIONS:-$(python -c 'import ansible_collections.kubernetes.core as m, os; print(os.path.dirname(os.path.dirname(os.path.dirname(list(m.__path__)[0]))))')}"
if [ -n "${ANVIL_SANITY_CORE:-}" ]; then
  python3 -m venv "$work/core"
  "$work/core/bin/pip" install -q "ansible-core==$ANVIL_SANITY_CORE"
  export PATH="$work/core/bin:$PATH"
fi
tarball="${ANVIL_SANITY_TARBALL:-$work/dist/anvil-cluster-$version.tar.gz}"
if [ -z "${ANVIL_SANITY_TARBALL:-}" ]; then
  ansible-galaxy collection build --force --output-path "$work/dist" "$root" > /dev/null
fi
ANSIBLE_COLLECTIONS_PATH="$work" ansible-galaxy collection install --no-deps -p "$work" "$tarball" > /dev/null
for dep in kubernetes/core ansible/utils ansible/posix community/general community/crypto; do
  mkdir -p "$work/ansible_collections/$(dirname "$dep")"
  ln -sfn "$site/ansible_collections/$dep" "$work/ansible_collections/$dep"
done
# ansible-test bootstraps pip in its venvs with a script it downloads from a host outside the package
# registries. Offline, provide an equivalent: the interpreter's bundled pip (ensurepip) then the exact
# pip/setuptools/wheel versions ansible-test asks for, from the package index.
at_dir="$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')"
pip_version="$(grep -o "pip='[0-9.]*'" "$at_dir/_internal/python_requirements.py" | head -1 | tr -dc '0-9.')"
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ -n "$pip_version" ] && [ ! -s "$cache" ]; then
  mkdir -p "$(dirname "$cache")"
  cat > "$cache" <<'PY'
import subprocess
import sys

# In a child process: ensurepip points PIP_CONFIG_FILE at /dev/null in its own environment, and the
# host's pip configuration (index, CA bundle) must still apply to the install below.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]  # get-pip-only flags
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", *args]))
PY
fi
cd "$work/ansible_collections/anvil/cluster"
# --venv: ansible-test installs its own pinned sanity tools (pylint, validate-modules, ...) in
# isolated virtualenvs, so they never disturb the project's venv.
python_version="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
ansible-test sanity --venv --python "$python_version" --color no "$@"
