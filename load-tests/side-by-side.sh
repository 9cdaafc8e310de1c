#!/usr/bin/env bash
# Tollgate beside nginx secure_link, direct S3 and raw Redis, in one run on
# this machine (issue 15). Installs what it needs from Debian's packages when
# missing (nginx, wrk, redis-server, redis-tools), builds the bench, then runs
# it with this process and its load generators on CPU 0 (the servers pin
# themselves to CPU 1). Loopback only; each scenario is bounded in time.
#
#   load-tests/side-by-side.sh          # full run (about 6 minutes)
#   load-tests/side-by-side.sh --smoke  # every scenario once, tiny
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in nginx:nginx wrk:wrk redis-server:redis-server redis-benchmark:redis-tools taskset:util-linux; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

cargo bench --bench side_by_side --no-run
if [ "${1:-}" = "--smoke" ]; then
    exec taskset -c 0 cargo bench --bench side_by_side -- --smoke
fi
exec taskset -c 0 cargo bench --bench side_by_side
