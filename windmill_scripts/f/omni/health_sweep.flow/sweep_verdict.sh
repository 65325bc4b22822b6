# shellcheck shell=bash
# Last step of f/omni/health_sweep: fails (exit 1, omni's "check failed") when any tenant's
# check failed or reported it unhealthy, so a schedule's on_failure handler fires.
checked="$1"
unhealthy="${2:-}"
set -euo pipefail
if [[ -n "$unhealthy" ]]; then
  printf 'unhealthy or unchecked tenants: %s\n' "$unhealthy" >&2
  printf 'health sweep: %s checked; unhealthy: %s\n' "$checked" "$unhealthy"
  exit 1
fi
printf 'health sweep: %s checked; all healthy\n' "$checked"
