#!/usr/bin/env bash
# Idempotent developer/CI setup: Debian packages listed in scripts/apt-packages.d/*.txt and a
# Python venv with the pinned requirements. Re-running when nothing changed takes about a second.
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"
here="$(cd "$(dirname "$0")" && pwd)"

mapfile -t pkgs < <(cat "$here"/apt-packages.d/*.txt 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating venv $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
echo "setup: installing pinned Python requirements"
"$venv/bin/pip" install -q -r "$here/../requirements-dev.txt"
