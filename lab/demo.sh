#!/usr/bin/env bash
# The demo: omni's main job on the running lab (make demo runs `bash lab/lab.sh up` first).
# For now: `omni hosts check` against both lab hosts over their pinned SSH connections.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

if [[ ! -s .lab/inventory/hosts.yaml ]]; then
  echo "demo: no lab inventory at .lab/inventory/hosts.yaml: run 'bash lab/lab.sh up' (or 'make lab') first" >&2
  exit 1
fi
# shellcheck disable=SC1091
. .lab/lab.env

if [[ ! -x .venv/bin/omni ]] || ! .venv/bin/omni --help >/dev/null 2>&1; then
  echo "demo: notice: the omni CLI is not available yet (.venv/bin/omni); run 'make venv' once it exists" >&2
  exit 0
fi

echo "demo: omni --inventory .lab/inventory hosts check" >&2
.venv/bin/omni --inventory .lab/inventory hosts check
