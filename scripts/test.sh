#!/usr/bin/env bash
# Run Tollgate's whole test suite: unit tests, the storage contract suite (local
# directory and an in-process S3-compatible server), the state-store suite
# (SQLite and a real redis-server), the gateway end to end, the
# JavaScript reference verifier under node, and the benches once in test mode.
#
# Installs what the tests need and the machine lacks (Debian packages: node for
# the reference verifier, curl for the end-to-end test, redis-server for the
# state-store suite, which starts its own servers on free ports, and redis-tools'
# redis-cli, which forms the test Redis Cluster; aria2c, whose segmented
# downloads the quota tests count; nginx and wrk, the reference and the load
# generator of the side-by-side load test), and schemathesis from PyPI into a
# virtualenv, so it passes on a fresh machine with nothing installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# schemathesis (PyPI) goes into a virtualenv, which needs ensurepip.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} from Debian's packages" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test.sh: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# schemathesis, pinned, in a virtualenv under target/ (tests/schemathesis.rs
# runs it against the served OpenAPI document).
SCHEMATHESIS_VERSION=4.32.5
venv=target/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "test.sh: installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export TOLLGATE_SCHEMATHESIS="$PWD/$venv/bin/st"

# The module graph: imports run one way, no cycle (see docs/ARCHITECTURE.md).
python3 scripts/check-layers.py

cargo test --locked --all-targets
