# shellcheck shell=bash
# Windmill step `f/omni/hosts_check`: `omni hosts check [HOST...]` (exit 1 if a host fails).
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
hosts="${1:-}" # host names from hosts.yaml, space or comma separated; "" = every host
inventory="${2:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
ssh_key_variable="${3:-f/omni/ssh_private_key}" # secret variable holding the SSH key; "none" = key file on the worker
set -euo pipefail

declare -a names=()
IFS=$', \t\n' read -r -a names <<<"$hosts" || true
# omni-windmill-step (installed with omni) does the rest: key variable -> 0600 file in a
# private HOME, omni --json, ./result.json + envelope as the last line, omni's exit status.
exec omni-windmill-step "--inventory=$inventory" "--ssh-key-variable=$ssh_key_variable" -- hosts check -- "${names[@]}"
