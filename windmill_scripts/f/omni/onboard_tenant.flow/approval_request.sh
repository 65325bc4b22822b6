# shellcheck shell=bash
# Approval step of f/omni/onboard_tenant: shows the plan; the flow is suspended on this step
# until a workspace user approves (or cancels) it on the run page.
slug="$1"
fingerprint="$2"
plan="$3"
set -euo pipefail
printf 'Plan for tenant %s (fingerprint %s):\n%s\n' "$slug" "$fingerprint" "$plan"
printf 'Approve to apply exactly this plan (omni refuses it if it drifts).\n'
printf 'approve plan %s for tenant %s\n' "$fingerprint" "$slug"
