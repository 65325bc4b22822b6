# shellcheck shell=bash
# Last step of omni's fan-out flows: fails (exit 1) naming every tenant whose step failed,
# so the flow's failure handler pages (and a schedule's on_failure fires).
what="$1"
checked="$2"
failed="${3:-}"
set -euo pipefail
if [[ -n "$failed" ]]; then
  printf '%s: failed for: %s\n' "$what" "$failed" >&2
  printf '%s: %s tenant(s); failed: %s\n' "$what" "$checked" "$failed"
  exit 1
fi
printf '%s: %s tenant(s); all ok\n' "$what" "$checked"
