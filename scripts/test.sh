#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine, then runs them.
#   ./scripts/test.sh            # everything (what CI runs)
#   ./scripts/test.sh -k neurons # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
# The CPU build of torch that lies on these machines' disk: never pull a CUDA build into CI.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"

# promtool (Debian's prometheus) lints the exported metrics in the tests.
if ! command -v promtool >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; } \
    || echo "test.sh: could not install prometheus; the promtool lint of the metrics is skipped"
fi

ruff check .
python -m pytest -q "$@"
