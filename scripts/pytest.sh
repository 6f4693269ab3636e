#!/usr/bin/env bash
# Run one pytest suite; a suite that collects no test fails (exit 5 is not success).
set -euo pipefail
suite="$1"; shift || true
if ! compgen -G "$suite/test_*.py" > /dev/null; then
  echo "ERROR: no tests in $suite" >&2
  exit 1
fi
exec python -m pytest "$suite" "$@"
