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
# generator of the side-by-side load test; npm; chromium and chromium-driver for
# the portal's browser test), schemathesis and aiosmtpd from PyPI into a
# virtualenv and electron-updater and axe-core from npm, so it passes on a
# fresh machine with nothing installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# npm installs electron-updater (the update-feed test runs its own code).
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# Debian's Chromium and its WebDriver: the portal's browser tests (nothing
# downloads a browser at run time).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
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
# aiosmtpd, pinned, in the same virtualenv: the real SMTP server the portal
# tests read sign-in e-mails from (tests/portal.rs).
AIOSMTPD_VERSION=1.4.6
if ! "$venv/bin/python" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
  echo "test.sh: installing aiosmtpd $AIOSMTPD_VERSION from PyPI into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
export TOLLGATE_AIOSMTPD="$PWD/$venv/bin/aiosmtpd"

# electron-updater, pinned by tests/electron/package-lock.json, under
# target/ (tests/updates.rs runs its own code against the electron feed).
# npm_pinned SOURCE TARGET MODULE: `npm ci` the package.json and lock in
# SOURCE into TARGET, unless TARGET already has that lock and MODULE.
npm_pinned() {
  if ! cmp -s "$1/package-lock.json" "$2/package-lock.json" || [ ! -d "$2/node_modules/$3" ]; then
    echo "test.sh: installing $3 from npm into $2" >&2
    rm -rf "$2"
    mkdir -p "$2"
    cp "$1/package.json" "$1/package-lock.json" "$2/"
    (cd "$2" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
eu=target/electron-updater
npm_pinned tests/electron "$eu" electron-updater
export TOLLGATE_ELECTRON_UPDATER="$PWD/$eu/node_modules"

# axe-core and oidc-provider, pinned by tests/browser/package-lock.json:
# the accessibility check the portal's browser tests run in each page, and
# the OpenID provider its SSO tests sign in with (run by node).
bt=target/browser-tools
npm_pinned tests/browser "$bt" oidc-provider
export TOLLGATE_AXE="$PWD/$bt/node_modules/axe-core/axe.min.js"
export TOLLGATE_OIDC_PROVIDER="$PWD/$bt/node_modules/oidc-provider"

# The module graph: imports run one way, no cycle (see docs/ARCHITECTURE.md).
python3 scripts/check-layers.py

cargo test --locked --all-targets
