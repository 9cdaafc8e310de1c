#!/usr/bin/env bash
# Count the Redis commands one `POST /v1/downloads` and one initiation (the
# grant's first `GET`) cost, for one build of the
# gateway: a deterministic check that a change did not add store round trips,
# where latency figures on a shared 2-core machine are too noisy to tell.
#
#   load-tests/redis-roundtrips.sh target/release/tollgate 18100
#
# $1: the tollgate binary; $2: a free port P (the gateway takes P and P+1, its
# Redis P+9). Starts its own redis-server and gateway in a temporary directory
# on 127.0.0.1, mints 100 grants then starts each, prints Redis's command statistics for them
# and stops both. Needs
# redis-server, redis-cli, curl and python3.
set -euo pipefail
BIN=$1; P=$2
D=$(mktemp -d); cd $D
redis-server --port $((P+9)) --save '' --appendonly no --daemonize yes --dir $D >/dev/null
sleep 0.3
export TOLLGATE_STORE__BACKEND=redis TOLLGATE_STORE__REDIS__URL=redis://127.0.0.1:$((P+9))/
export TOLLGATE_LIMITS__API_KEY_PER_SECOND=0 TOLLGATE_LIMITS__ADDRESS_PER_SECOND=0 TOLLGATE_LIMITS__BAD_CREDENTIALS_PER_MINUTE=0
$BIN serve --listen 127.0.0.1:$P --admin-listen 127.0.0.1:$((P+1)) >/dev/null 2>&1 &
GW=$!
for i in $(seq 50); do [ -f data/secrets/admin-token ] && curl -s 127.0.0.1:$((P+1))/healthz >/dev/null && break; sleep 0.2; done
T="Authorization: Bearer $(cat data/secrets/admin-token)"
A=http://127.0.0.1:$((P+1))/admin/v1
mkdir -p data/blobs/app/1.0.0; head -c 1048576 /dev/zero > data/blobs/app/1.0.0/app.tar.gz
c() { curl -s -o /dev/null -w '%{http_code} ' -X "$1" -H "$T" -H 'content-type: application/json' "$A$2" ${3:+-d "$3"}; }
c PUT /products/app '{"name":"App"}'
c PUT /products/app/releases/1.0.0 '{"channel":"stable"}'
c PUT '/products/app/releases/1.0.0/artifacts/app.tar.gz?source=existing&platform=linux-x86_64'
c POST /products/app/releases/1.0.0/publish
c PUT /customers/acme '{"name":"Acme","quota":{"downloads_per_day":1000000}}'
c PUT /customers/acme/entitlements/e1 '{"product":"app","license":"perpetual","starts_at":"2020-01-01T00:00:00Z"}'
KEY=$(curl -s -X POST -H "$T" $A/customers/acme/api-keys | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
echo
sleep 1
redis-cli -p $((P+9)) CONFIG RESETSTAT >/dev/null
: > urls
for i in $(seq 100); do curl -s -X POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' http://127.0.0.1:$P/v1/downloads -d '{"product":"app","version":"1.0.0","platform":"linux-x86_64"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' >> urls; done
sleep 1.5
echo "100 POST /v1/downloads:"
redis-cli -p $((P+9)) INFO commandstats | grep -v '^#' | sed 's/,usec=.*//' | grep -v "^\s*$"
redis-cli -p $((P+9)) INFO stats | grep total_commands_processed
# Each grant's first GET (its initiation), one byte of it.
redis-cli -p $((P+9)) CONFIG RESETSTAT >/dev/null
# The URLs name server.public_url; the path is what counts.
while read -r u; do curl -s -o /dev/null -r 0-0 "http://127.0.0.1:$P/d/${u#*/d/}"; done < urls
sleep 1.5
echo "100 initiations (first GET of each grant):"
redis-cli -p $((P+9)) INFO commandstats | grep -v '^#' | sed 's/,usec=.*//' | grep -v "^\s*$"
redis-cli -p $((P+9)) INFO stats | grep total_commands_processed
kill $GW; redis-cli -p $((P+9)) shutdown nosave >/dev/null 2>&1 || true
