# shellcheck shell=bash
# Windmill step `f/omni/inventory_check`: `omni inventory check` (no server is contacted).
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
inventory="${1:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
set -euo pipefail

# omni-windmill-step (installed with omni) does the rest: key variable -> 0600 file in a
# private HOME, omni --json, ./result.json + envelope as the last line, omni's exit status.
exec omni-windmill-step "--inventory=$inventory" -- inventory check
