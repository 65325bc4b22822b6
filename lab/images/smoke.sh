#!/usr/bin/env bash
# lab/images/smoke.sh SOCKET DATABASE_URL ADDR [BASE_PORT]
#
# Proves the lab images work against a real Postgres, on one Docker engine, host networking:
#   redis:7 serves on ADDR:BASE_PORT with a password; medusa:v1 `db:migrate` succeeds;
#   v1 and v2 started with HOST=ADDR answer GET /health 200 and GET /lab/release with their
#   release, and listen on ADDR only; broken migrates but its /health never answers 200;
#   a Medusa started against a dead Redis exits non-zero.
# DATABASE_URL must reach an empty (or already migrated) database. Medusa turns SSL on for
# any host other than localhost/127.0.0.1, so use `?sslmode=disable` for a server without SSL.
# Every container it starts is named omni-smoke-* and removed on exit. Not an image input.
set -Eeuo pipefail

[ "$#" -ge 3 ] || { echo "usage: $0 SOCKET DATABASE_URL ADDR [BASE_PORT]" >&2; exit 2; }
SOCK=$1 DB_URL=$2 ADDR=$3 BASE=${4:-19100}
REDIS_PORT=$BASE P1=$((BASE + 1)) P2=$((BASE + 2)) PB=$((BASE + 3)) PD=$((BASE + 4))
RPW="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
dk() { docker -H "unix://$SOCK" "$@"; }
NAMES=(omni-smoke-redis omni-smoke-v1 omni-smoke-v2 omni-smoke-broken omni-smoke-deadredis)
cleanup() { dk rm -f "${NAMES[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

FAILS=0 PASSES=0
ok() { PASSES=$((PASSES + 1)); echo "ok   - $*"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }

code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" || true; }
# wait_code URL WANT SECONDS: poll until URL answers WANT or the deadline passes.
wait_code() {
    local deadline=$((SECONDS + $3)) c=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        c=$(code "$1"); [ "$c" = "$2" ] && return 0
        sleep 0.5
    done
    echo "  last answer from $1: $c" >&2
    return 1
}

ENVS=(-e "DATABASE_URL=$DB_URL" -e "REDIS_URL=redis://:$RPW@$ADDR:$REDIS_PORT"
      -e JWT_SECRET=smoke-jwt -e COOKIE_SECRET=smoke-cookie -e "STORE_CORS=http://$ADDR"
      -e "ADMIN_CORS=http://$ADDR" -e "AUTH_CORS=http://$ADDR"
      -e "MEDUSA_BACKEND_URL=http://$ADDR:$P1" -e "HOST=$ADDR")

dk run -d --name omni-smoke-redis --network host omni-lab/redis:7 \
    --bind "$ADDR" --port "$REDIS_PORT" --requirepass "$RPW" --save '' --appendonly no >/dev/null
deadline=$((SECONDS + 20))
until dk exec omni-smoke-redis redis-cli -h "$ADDR" -p "$REDIS_PORT" -a "$RPW" --no-auth-warning ping 2>/dev/null | grep -q PONG; do
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.5
done
if dk exec omni-smoke-redis redis-cli -h "$ADDR" -p "$REDIS_PORT" -a "$RPW" --no-auth-warning ping 2>/dev/null | grep -q PONG; then
    ok "redis:7 answers PING on $ADDR:$REDIS_PORT with its password"
else bad "redis:7 did not answer on $ADDR:$REDIS_PORT"; fi

t0=$SECONDS
if dk run --rm --network host "${ENVS[@]}" omni-lab/medusa:v1 medusa db:migrate >/tmp/omni-smoke-migrate.log 2>&1; then
    ok "medusa:v1 db:migrate ($((SECONDS - t0)) s)"
else bad "medusa:v1 db:migrate failed, see /tmp/omni-smoke-migrate.log"; fi

for spec in v1:$P1 v2:$P2; do
    rel=${spec%%:*} port=${spec#*:}
    dk run -d --name "omni-smoke-$rel" --network host "${ENVS[@]}" -e "PORT=$port" "omni-lab/medusa:$rel" >/dev/null
done
for spec in v1:$P1 v2:$P2; do
    rel=${spec%%:*} port=${spec#*:}
    if wait_code "http://$ADDR:$port/health" 200 90; then ok "medusa:$rel /health 200 on $ADDR:$port"
    else bad "medusa:$rel /health never 200 on $ADDR:$port"; fi
    body=$(curl -s -m 3 "http://$ADDR:$port/lab/release" || true)
    if [ "$body" = "{\"release\":\"$rel\"}" ]; then ok "medusa:$rel /lab/release = $body"
    else bad "medusa:$rel /lab/release answered '$body'"; fi
    ver=$(dk image inspect -f '{{ index .Config.Labels "org.opencontainers.image.version" }}' "omni-lab/medusa:$rel")
    [ "$ver" = "${rel#v}.0.0" ] && ok "medusa:$rel label version $ver" || bad "medusa:$rel label version '$ver'"
done
if [ "$ADDR" != 127.0.0.1 ]; then
    c=$(code "http://127.0.0.1:$P1/health")
    [ "$c" = 000 ] && ok "medusa:v1 listens on $ADDR only (127.0.0.1:$P1 refused)" \
        || bad "medusa:v1 also answers on 127.0.0.1:$P1 ($c)"
fi

if dk run --rm --network host "${ENVS[@]}" omni-lab/medusa:broken medusa db:migrate >/dev/null 2>&1; then
    ok "medusa:broken db:migrate succeeds"
else bad "medusa:broken db:migrate failed"; fi
dk run -d --name omni-smoke-broken --network host "${ENVS[@]}" -e "PORT=$PB" omni-lab/medusa:broken >/dev/null
if wait_code "http://$ADDR:$PB/health" 503 90; then ok "medusa:broken serves, /health answers 503"
else bad "medusa:broken /health never answered 503"; fi
if wait_code "http://$ADDR:$PB/health" 200 5 2>/dev/null; then bad "medusa:broken /health answered 200"
else ok "medusa:broken /health still not 200"; fi

# A Redis that is gone: the Redis-backed modules cannot connect and `medusa start` exits non-zero.
dk rm -f omni-smoke-redis >/dev/null
dk run -d --name omni-smoke-deadredis --network host "${ENVS[@]}" -e "PORT=$PD" omni-lab/medusa:v1 >/dev/null
deadline=$((SECONDS + 90)) state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(dk inspect -f '{{.State.Status}} {{.State.ExitCode}}' omni-smoke-deadredis)
    [ "${state%% *}" = exited ] && break
    [ "$(code "http://$ADDR:$PD/health")" = 200 ] && break
    sleep 1
done
if [ "${state%% *}" = exited ] && [ "${state##* }" != 0 ]; then
    ok "medusa:v1 with a dead Redis exits non-zero ($state)"
else bad "medusa:v1 with a dead Redis: state '$state'"; fi

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
