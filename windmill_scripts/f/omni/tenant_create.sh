# shellcheck shell=bash
# Windmill step `f/omni/tenant_create`: `omni tenant create SLUG` (plan with dry_run "true";
# apply with expect_plan set to the reviewed plan's data.plan_fingerprint).
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
slug="$1" # tenant slug, e.g. acme-shop
host="${2:-}" # host from hosts.yaml (new tenant only); "" = from the tenant file
domains="${3:-}" # domains, space or comma separated, primary first (new tenant only)
image="${4:-}" # Medusa image (new tenant only); "" = from the tenant file
dry_run="${5:-false}" # "true": print the plan, change nothing
expect_plan="${6:-}" # refuse to apply unless the plan has this fingerprint
inventory="${7:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
ssh_key_variable="${8:-f/omni/ssh_private_key}" # secret variable holding the SSH key; "none" = key file on the worker
set -euo pipefail

declare -a args=() list=()
if [[ -n "$host" ]]; then args+=("--host=$host"); fi
IFS=$', \t\n' read -r -a list <<<"$domains" || true
for domain in "${list[@]}"; do
  if [[ -n "$domain" ]]; then args+=("--domain=$domain"); fi
done
if [[ -n "$image" ]]; then args+=("--image=$image"); fi
case "$dry_run" in  # booleans: the strings "true"/"false" (or ""); anything else is refused
  true) args+=(--dry-run) ;;
  false | "") ;;
  *) echo "error[invalid_input]: dry_run: must be \"true\" or \"false\", got \"$dry_run\"" >&2; exit 2 ;;
esac
if [[ -n "$expect_plan" ]]; then args+=("--expect-plan=$expect_plan"); fi
# omni-windmill-step (installed with omni) does the rest: key variable -> 0600 file in a
# private HOME, omni --json, ./result.json + envelope as the last line, omni's exit status.
exec omni-windmill-step "--inventory=$inventory" "--ssh-key-variable=$ssh_key_variable" -- tenant create "${args[@]}" -- "$slug"
