#!/usr/bin/env bash
# The demo (`make demo`, after `make lab`): omni's main job on the lab.
#   1. `omni hosts check` on both lab hosts over their pinned SSH connections;
#   2. `omni tenant create demo` on dev: Postgres role + database, Redis, migrations, a real
#      Medusa container, nginx vhost and a Pebble-issued certificate, behind a health gate;
#   3. `omni tenant list` and `omni health-check` (every check of every tenant);
#   4. `omni deploy demo --image omni-lab/medusa:v2`: a zero-downtime blue/green release, then
#      `omni releases demo`;
#   5. Medusa's /health fetched over HTTPS, verified against Pebble's root, with SNI through
#      dev's nginx.
# Re-running it is safe: the second create is all no-ops and the deploy is skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

if [[ ! -s .lab/inventory/hosts.yaml ]]; then
  echo "demo: no lab inventory at .lab/inventory/hosts.yaml: run 'make lab' first" >&2
  exit 1
fi
# shellcheck disable=SC1091
. .lab/lab.env
OMNI=(.venv/bin/omni --inventory .lab/inventory)
SLUG=${DEMO_TENANT:-demo}
DOMAIN="$SLUG.dev.lab.test"

echo "demo: omni hosts check" >&2
"${OMNI[@]}" hosts check

echo "demo: omni tenant create $SLUG --host dev --domain $DOMAIN --image omni-lab/medusa:v1" >&2
if [[ -f ".lab/inventory/tenants/$SLUG.yaml" ]]; then
  "${OMNI[@]}" tenant create "$SLUG"
else
  "${OMNI[@]}" tenant create "$SLUG" --host dev --domain "$DOMAIN" --image omni-lab/medusa:v1
fi

echo "demo: omni tenant list" >&2
"${OMNI[@]}" tenant list

echo "demo: omni health-check" >&2
"${OMNI[@]}" health-check

echo "demo: omni deploy $SLUG --image omni-lab/medusa:v2 (blue/green, no failed request)" >&2
"${OMNI[@]}" deploy "$SLUG" --image omni-lab/medusa:v2

echo "demo: omni releases $SLUG" >&2
"${OMNI[@]}" releases "$SLUG"

echo "demo: curl https://$DOMAIN/health (resolved to dev's nginx, verified against Pebble's root)" >&2
curl --silent --show-error --fail --cacert "$LAB_PEBBLE_ROOT" \
  --resolve "$DOMAIN:443:$LAB_DEV_ADDRESS" "https://$DOMAIN/health"
echo
echo "demo: done. Open the tenant: curl --cacert $LAB_PEBBLE_ROOT --resolve $DOMAIN:443:$LAB_DEV_ADDRESS https://$DOMAIN/health" >&2
