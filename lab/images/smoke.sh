#!/usr/bin/env bash
# lab/images/smoke.sh SOCKET DATABASE_URL ADDR [BASE_PORT]
#
# Proves the lab images work against a real Postgres, on one Docker engine, host networking:
#   redis:7 serves on ADDR:BASE_PORT with a password; medusa:v1 and v2 `db:migrate` succeed;
#   v1 and v2 started with HOST=ADDR answer GET /health 200 and GET /lab/release with their
#   release, and listen on ADDR only; broken migrates but its /health never answers 200;
#   no v1, v2 or broken `db:migrate` creates the tables lab_note / lab_half; v3 `db:migrate`
#   creates lab_note (and records its migration) and v3 serves; migrate-fails `db:migrate` exits
#   non-zero (twice) leaving lab_half behind with its migration unrecorded, and still serves;
#   a Medusa started against a dead Redis exits non-zero.
# DATABASE_URL must reach an empty database that smoke.sh has not run on before (it checks that
# lab_note / lab_half are absent before v3 / migrate-fails run). Medusa turns SSL on for
# any host other than localhost/127.0.0.1, so use `?sslmode=disable` for a server without SSL.
# Tables are read with the app's own node-postgres client in a medusa:shared container (no psql).
# Every server container it starts is named omni-smoke-* and removed on exit (one-off
# migrate/query containers run with --rm). Not an image input.
set -Eeuo pipefail

[ "$#" -ge 3 ] || { echo "usage: $0 SOCKET DATABASE_URL ADDR [BASE_PORT]" >&2; exit 2; }
SOCK=$1 DB_URL=$2 ADDR=$3 BASE=${4:-19100}
REDIS_PORT=$BASE P1=$((BASE + 1)) P2=$((BASE + 2)) PB=$((BASE + 3)) PD=$((BASE + 4))
P3=$((BASE + 5)) PF=$((BASE + 6))
RPW="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
dk() { docker -H "unix://$SOCK" "$@"; }
NAMES=(omni-smoke-redis omni-smoke-v1 omni-smoke-v2 omni-smoke-broken omni-smoke-deadredis
       omni-smoke-v3 omni-smoke-migrate-fails)
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

# The migrations of the lab's custom modules (lab/medusa-app/src/modules/*/migrations).
MIG_NOTE=Migration20261202042051 MIG_HALF=Migration20261202042059

# sql QUERY: the first column of QUERY's rows, comma-joined, read from DATABASE_URL with the
# app's own node-postgres client (pg reads `sslmode=` from the URL).
sql() {
    # shellcheck disable=SC2016  # JavaScript, expanded by node, not by bash
    dk run --rm --network host -e "DATABASE_URL=$DB_URL" -e "Q=$1" omni-lab/medusa:shared node -e '
        const { Client } = require("pg")
        const c = new Client({ connectionString: process.env.DATABASE_URL })
        c.connect().then(() => c.query(process.env.Q)).then((r) => {
            console.log(r.rows.map((row) => String(Object.values(row)[0])).join(","))
            return c.end()
        }).catch((e) => { console.error(e.message); process.exit(1) })'
}
# lab_tables: which of lab_note, lab_half exist ("" for none, "?" when the query failed).
lab_tables() {
    sql "select coalesce(string_agg(t, ',' order by t), '') from unnest(array['lab_half', 'lab_note']) t where to_regclass(t) is not null" \
        2>/dev/null || echo "?"
}
# recorded NAME: how many rows of mikro_orm_migrations name that migration ("?" on failure).
recorded() { sql "select count(*) from mikro_orm_migrations where name = '$1'" 2>/dev/null || echo "?"; }

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

for rel in v1 v2; do
    t0=$SECONDS
    if dk run --rm --network host "${ENVS[@]}" "omni-lab/medusa:$rel" medusa db:migrate >"/tmp/omni-smoke-migrate-$rel.log" 2>&1; then
        ok "medusa:$rel db:migrate ($((SECONDS - t0)) s)"
    else bad "medusa:$rel db:migrate failed, see /tmp/omni-smoke-migrate-$rel.log"; fi
    t=$(lab_tables)
    if [ -z "$t" ]; then ok "medusa:$rel db:migrate created no lab_note / lab_half"
    else bad "after medusa:$rel db:migrate the database has lab tables '$t' (not a fresh database?)"; fi
done

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
    if [ "$ver" = "${rel#v}.0.0" ]; then ok "medusa:$rel label version $ver"
    else bad "medusa:$rel label version '$ver'"; fi
done
if [ "$ADDR" != 127.0.0.1 ]; then
    c=$(code "http://127.0.0.1:$P1/health")
    if [ "$c" = 000 ]; then ok "medusa:v1 listens on $ADDR only (127.0.0.1:$P1 refused)"
    else bad "medusa:v1 also answers on 127.0.0.1:$P1 ($c)"; fi
fi

if dk run --rm --network host "${ENVS[@]}" omni-lab/medusa:broken medusa db:migrate >/dev/null 2>&1; then
    ok "medusa:broken db:migrate succeeds"
else bad "medusa:broken db:migrate failed"; fi
t=$(lab_tables)
if [ -z "$t" ]; then ok "medusa:broken db:migrate created no lab_note / lab_half"
else bad "after medusa:broken db:migrate the database has lab tables '$t'"; fi
dk run -d --name omni-smoke-broken --network host "${ENVS[@]}" -e "PORT=$PB" omni-lab/medusa:broken >/dev/null
if wait_code "http://$ADDR:$PB/health" 503 90; then ok "medusa:broken serves, /health answers 503"
else bad "medusa:broken /health never answered 503"; fi
if wait_code "http://$ADDR:$PB/health" 200 5 2>/dev/null; then bad "medusa:broken /health answered 200"
else ok "medusa:broken /health still not 200"; fi

# v3: its db:migrate really changes the schema (table lab_note, from the custom module lab_note).
t0=$SECONDS
if dk run --rm --network host "${ENVS[@]}" omni-lab/medusa:v3 medusa db:migrate >/tmp/omni-smoke-migrate-v3.log 2>&1; then
    ok "medusa:v3 db:migrate ($((SECONDS - t0)) s)"
else bad "medusa:v3 db:migrate failed, see /tmp/omni-smoke-migrate-v3.log"; fi
t=$(lab_tables) n=$(recorded "$MIG_NOTE")
if [ "$t" = lab_note ] && [ "$n" = 1 ]; then ok "medusa:v3 db:migrate created lab_note and recorded $MIG_NOTE"
else bad "after medusa:v3 db:migrate: lab tables '$t', $MIG_NOTE recorded '$n' times"; fi
dk run -d --name omni-smoke-v3 --network host "${ENVS[@]}" -e "PORT=$P3" omni-lab/medusa:v3 >/dev/null
if wait_code "http://$ADDR:$P3/health" 200 90; then ok "medusa:v3 /health 200 on $ADDR:$P3"
else bad "medusa:v3 /health never 200 on $ADDR:$P3"; fi
body=$(curl -s -m 3 "http://$ADDR:$P3/lab/release" || true)
if [ "$body" = '{"release":"v3"}' ]; then ok "medusa:v3 /lab/release = $body"
else bad "medusa:v3 /lab/release answered '$body'"; fi
ver=$(dk image inspect -f '{{ index .Config.Labels "org.opencontainers.image.version" }}' omni-lab/medusa:v3)
if [ "$ver" = 3.0.0 ]; then ok "medusa:v3 label version $ver"
else bad "medusa:v3 label version '$ver'"; fi
dk rm -f omni-smoke-v3 >/dev/null

# migrate-fails: db:migrate creates lab_half, then fails; the migration is never recorded, so a
# second run fails the same way. `medusa start` does not migrate and serves.
for run in 1 2; do
    rc=0
    dk run --rm --network host "${ENVS[@]}" omni-lab/medusa:migrate-fails medusa db:migrate \
        >"/tmp/omni-smoke-migrate-fails.$run.log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then ok "medusa:migrate-fails db:migrate run $run exits $rc"
    else bad "medusa:migrate-fails db:migrate run $run exited 0"; fi
done
if grep -q "fails half-way on purpose" /tmp/omni-smoke-migrate-fails.2.log; then
    ok "medusa:migrate-fails db:migrate logs its migration's own error"
else bad "medusa:migrate-fails db:migrate failed for another reason, see /tmp/omni-smoke-migrate-fails.2.log"; fi
t=$(lab_tables) n=$(recorded "$MIG_HALF")
if [ "$t" = lab_half,lab_note ] && [ "$n" = 0 ]; then ok "medusa:migrate-fails left lab_half behind, $MIG_HALF not recorded"
else bad "after medusa:migrate-fails db:migrate: lab tables '$t', $MIG_HALF recorded '$n' times"; fi
dk run -d --name omni-smoke-migrate-fails --network host "${ENVS[@]}" -e "PORT=$PF" omni-lab/medusa:migrate-fails >/dev/null
if wait_code "http://$ADDR:$PF/health" 200 90; then ok "medusa:migrate-fails /health 200 on $ADDR:$PF"
else bad "medusa:migrate-fails /health never 200 on $ADDR:$PF"; fi
body=$(curl -s -m 3 "http://$ADDR:$PF/lab/release" || true)
if [ "$body" = '{"release":"migrate-fails"}' ]; then ok "medusa:migrate-fails /lab/release = $body"
else bad "medusa:migrate-fails /lab/release answered '$body'"; fi
dk rm -f omni-smoke-migrate-fails >/dev/null

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
