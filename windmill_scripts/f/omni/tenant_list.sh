# shellcheck shell=bash
# Windmill step `f/omni/tenant_list`: `omni tenant list` (data.tenants: slug, host, domains...).
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
no_probe="${1:-false}" # "true": inventory only, skip the live health/certificate probes
inventory="${2:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
ssh_key_variable="${3:-f/omni/ssh_private_key}" # secret variable holding the SSH key; "none" = key file on the worker
set -euo pipefail

declare -a args=()
case "$no_probe" in  # booleans: the strings "true"/"false" (or ""); anything else is refused
  true) args+=(--no-probe) ;;
  false | "") ;;
  *) echo "error[invalid_input]: no_probe: must be \"true\" or \"false\", got \"$no_probe\"" >&2; exit 2 ;;
esac
# omni-windmill-step (installed with omni) does the rest: key variable -> 0600 file in a
# private HOME, omni --json, ./result.json + envelope as the last line, omni's exit status.
exec omni-windmill-step "--inventory=$inventory" "--ssh-key-variable=$ssh_key_variable" -- tenant list "${args[@]}"
