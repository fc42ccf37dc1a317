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

# Debian packages the tests use: promtool (prometheus) lints the exported metrics; sshd
# (openssh-server) and rsync carry `ray up` to the local-provider cluster of tests/test_cluster.py.
apt_needed=()
command -v promtool >/dev/null || apt_needed+=(prometheus)
{ [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null; } || apt_needed+=(openssh-server)
command -v rsync >/dev/null || apt_needed+=(rsync)
if [ ${#apt_needed[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null; } \
    || echo "test.sh: could not install ${apt_needed[*]}; the tests that need them are skipped"
fi

ruff check .
python -m pytest -q "$@"
