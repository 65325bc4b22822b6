# shellcheck shell=bash
# Windmill step `f/omni/tenant_destroy`: `omni tenant destroy SLUG` (final pg_dump is kept).
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
slug="$1" # tenant slug
confirm="${2:-}" # type the slug again to confirm (passes --yes); anything else: omni refuses
dry_run="${3:-false}" # "true": print what would be removed, change nothing
inventory="${4:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
ssh_key_variable="${5:-f/omni/ssh_private_key}" # secret variable holding the SSH key; "none" = key file on the worker
set -euo pipefail

declare -a args=()
if [[ -n "$confirm" && "$confirm" == "$slug" ]]; then args+=(--yes); fi
case "$dry_run" in  # booleans: the strings "true"/"false" (or ""); anything else is refused
  true) args+=(--dry-run) ;;
  false | "") ;;
  *) echo "error[invalid_input]: dry_run: must be \"true\" or \"false\", got \"$dry_run\"" >&2; exit 2 ;;
esac
# omni-windmill-step (installed with omni) does the rest: key variable -> 0600 file in a
# private HOME, omni --json, ./result.json + envelope as the last line, omni's exit status.
exec omni-windmill-step "--inventory=$inventory" "--ssh-key-variable=$ssh_key_variable" -- tenant destroy "${args[@]}" -- "$slug"
