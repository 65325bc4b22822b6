# shellcheck shell=bash
# Windmill step `f/omni/tenant_show`: `omni tenant show SLUG` (containers, health, certificate).
# The per-tenant check of f/omni/health_sweep until `omni health-check` exists.
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
slug="$1" # tenant slug
inventory="${2:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
ssh_key_variable="${3:-f/omni/ssh_private_key}" # secret variable holding the SSH key; "none" = key file on the worker
set -euo pipefail

# omni-windmill-step (installed with omni) does the rest: key variable -> 0600 file in a
# private HOME, omni --json, ./result.json + envelope as the last line, omni's exit status.
exec omni-windmill-step "--inventory=$inventory" "--ssh-key-variable=$ssh_key_variable" -- tenant show -- "$slug"
