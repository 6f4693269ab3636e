#!/usr/bin/env bash
# Run one pytest suite; a suite that collects no test fails (exit 5 is not success).
set -euo pipefail
# SUITE is a directory of test_*.py files or one test file; pytest's exit code 5 (nothing collected,
# also when -m deselects every test) is passed on as a failure.
suite="$1"; shift || true
if ! [[ -f "$suite" && "$(basename "$suite")" == test_*.py ]] && ! compgen -G "$suite/test_*.py" > /dev/null; then
  echo "ERROR: no tests in $suite" >&2
  exit 1
fi
exec python -m pytest "$suite" "$@"
