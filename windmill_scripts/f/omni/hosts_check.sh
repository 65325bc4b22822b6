# shellcheck shell=bash
# Windmill step `f/omni/hosts_check`: `omni hosts check [HOST...]` (exit 1 if a host fails).
# Arguments: Windmill reads the NAME="$N" lines below as the step's string inputs.
hosts="${1:-}" # host names from hosts.yaml, space or comma separated; "" = every host
inventory="${2:-}" # inventory directory on the worker; "" = $OMNI_INVENTORY
ssh_key_variable="${3:-f/omni/ssh_private_key}" # secret variable holding the SSH key; "none" = key file on the worker
set -euo pipefail

# >>> omni-step prelude: identical in every step (tests/test_windmill_scripts.py checks it)
# omni_step ARGS...: runs `omni --inventory=INV --json ARGS...` and hands its JSON envelope
# to Windmill as the step result (./result.json, and the last line of stdout); returns
# omni's exit status, so a failed omni run fails the step. Reads: $inventory (step argument)
# or $OMNI_INVENTORY (worker env); $ssh_key_variable (step argument): the path of a secret
# Windmill variable holding the SSH private key, written to a 0600 file in a private temp
# HOME (so the inventory's `identity: ~/.ssh/omni_deploy` finds it) and removed on exit;
# "none" means "use the identity file the inventory names on this worker". $OMNI_BIN
# overrides the omni executable. Nothing secret is ever printed or put on a command line.
umask 077
_omni_work=""
_omni_cleanup() { if [[ -n "$_omni_work" ]]; then rm -rf -- "$_omni_work"; fi; }
trap _omni_cleanup EXIT

_omni_fail() {  # _omni_fail STATUS MESSAGE: omni's own one-line error format, on stderr
  printf 'error[invalid_input]: %s\n' "$2" >&2
  return "$1"
}

omni_flag() {  # omni_flag NAME VALUE: 0 for "true", 1 for "false" or "", else exit 2
  case "$2" in
    true) return 0 ;;
    false | "") return 1 ;;
    *) _omni_fail 2 "$1: must be \"true\" or \"false\", got \"$2\"" || exit 2 ;;
  esac
}

_omni_fetch_key() {  # _omni_fetch_key VARIABLE_PATH DEST: secret variable -> 0600 file
  local path="$1" dest="$2"
  if [[ ! "$path" =~ ^[uf]/[A-Za-z0-9_][A-Za-z0-9_./-]*$ || "$path" == *..* ]]; then
    _omni_fail 2 "ssh_key_variable: \"$path\" is not a Windmill variable path (u/... or f/...)"
    return
  fi
  if [[ -z "${BASE_INTERNAL_URL:-}" || -z "${WM_TOKEN:-}" || -z "${WM_WORKSPACE:-}" ]]; then
    _omni_fail 2 "ssh_key_variable: not running on a Windmill worker (BASE_INTERNAL_URL, WM_TOKEN, WM_WORKSPACE unset)"
    return
  fi
  # The job token reaches curl through its stdin config, never through its argv.
  if ! printf 'header = "Authorization: Bearer %s"\n' "$WM_TOKEN" |
    curl --silent --show-error --fail --max-time 30 --config - \
      --output "$_omni_work/key.json" \
      -- "$BASE_INTERNAL_URL/api/w/$WM_WORKSPACE/variables/get_value/$path" >&2; then
    _omni_fail 2 "ssh_key_variable: cannot read Windmill variable $path"
    return
  fi
  if ! python3 - "$_omni_work/key.json" "$dest" <<'PY'; then
import json, os, sys
with open(sys.argv[1], encoding="utf-8") as src:
    key = json.load(src)
os.unlink(sys.argv[1])
if not isinstance(key, str) or "PRIVATE KEY-----" not in key:
    sys.exit(1)
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as out:
    out.write(key if key.endswith("\n") else key + "\n")
PY
    _omni_fail 2 "ssh_key_variable: variable $path does not hold an SSH private key"
    return
  fi
}

omni_step() {
  local inv="${inventory:-${OMNI_INVENTORY:-}}" status=0
  local -a run=("${OMNI_BIN:-omni}")
  if [[ -z "$inv" ]]; then
    _omni_fail 2 "inventory: set the step's inventory argument or OMNI_INVENTORY on the worker"
    return
  fi
  _omni_work="$(mktemp -d)"
  if [[ -n "${ssh_key_variable:-}" && "$ssh_key_variable" != none ]]; then
    mkdir -p "$_omni_work/home/.ssh"
    _omni_fetch_key "$ssh_key_variable" "$_omni_work/home/.ssh/omni_deploy" || return
    run=(env "HOME=$_omni_work/home" "${run[@]}")
  fi
  "${run[@]}" "--inventory=$inv" --json "$@" </dev/null >"$_omni_work/envelope.json" || status=$?
  if [[ -s "$_omni_work/envelope.json" ]]; then
    cp -- "$_omni_work/envelope.json" ./result.json
    cat -- "$_omni_work/envelope.json"
  fi
  return "$status"
}
# <<< omni-step prelude

declare -a names=()
IFS=$', \t\n' read -r -a names <<<"$hosts" || true
omni_step hosts check -- "${names[@]}"
