#!/usr/bin/env bash
# lab/images.sh SOCKET [SOCKET...]
#
# Makes sure the lab images exist in every given Docker engine (unix socket paths):
#   omni-lab/base:bookworm   debootstrap minbase + redis-server + ca-certificates, imported
#   omni-lab/redis:7         ENTRYPOINT redis-server; flags are the command (--bind --port ...)
#   omni-lab/gateway:1       socat + omni-gateway: a tenant's network gateway (LISTEN CONNECT pairs)
#   omni-lab/standin:1       a light stand-in app for benchmarks: 200 on every request to $PORT
#   omni-lab/medusa:shared   real Medusa 2.x app (built .medusa/server + prod node_modules) + node
#   omni-lab/medusa:v1|v2    thin layers over :shared; GET /lab/release -> {"release": "v1"|"v2"}
#   omni-lab/medusa:v3       thin layer; like v2, but loads the custom module lab_note: its
#                            `medusa db:migrate` creates the table lab_note (v1/v2 never do)
#   omni-lab/medusa:broken   thin layer; migrates and starts, but GET /health answers 503
#   omni-lab/medusa:migrate-fails  thin layer; `medusa db:migrate` creates the table lab_half,
#                            then fails (exit 1, nothing recorded as applied); `medusa start` works
# All medusa tags share one app build: medusa-config.ts picks the release's custom module from
# /etc/omni-lab-release (the thin layer), so each release layer is a few bytes.
# Every image carries the label omni.lab.key=<content key>: the sha256 of everything that goes
# in (this script, lab/images/, the app sources and lock, the mirror URL, the node binary).
#
# Cache: ${OMNI_LAB_CACHE:-/var/cache/omni-lab}: images-<key>.tar (docker save of all images,
# written atomically) and npm/ (npm's cache). Warm: an engine whose images carry the key is
# skipped, else the tarball is loaded. Cold: build once in the first engine, save, load elsewhere.
# Prints per-stage timings; on failure the last line is "images.sh: stage <name> failed ...".
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APP_SRC="$HERE/medusa-app"
IMG_DIR="$HERE/images"
CACHE="${OMNI_LAB_CACHE:-/var/cache/omni-lab}"
SOURCES_FILE="${OMNI_LAB_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
NODE_BIN="/usr/bin/node"
KEY_LABEL="omni.lab.key"
IMAGES=(omni-lab/base:bookworm omni-lab/redis:7 omni-lab/gateway:1 omni-lab/standin:1 omni-lab/medusa:shared
        omni-lab/medusa:v1 omni-lab/medusa:v2 omni-lab/medusa:v3 omni-lab/medusa:broken
        omni-lab/medusa:migrate-fails)
APP_FILES=(package.json package-lock.json medusa-config.ts tsconfig.json)
# What goes into the images from lab/images/ (smoke.sh there is a test, not an input).
IMG_SUBDIRS=(redis gateway standin medusa medusa-release)

STAGE="init"
LOG_DIR=""
T_ALL=$(date +%s%N)

die() { echo "images.sh: stage $STAGE failed: $*" >&2; exit 1; }
on_err() {
    local rc=$?
    echo "images.sh: stage $STAGE failed (exit $rc)${LOG_DIR:+; logs in $LOG_DIR}" >&2
    exit "$rc"
}
trap on_err ERR

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
fmt_ms() { printf '%d.%03ds' $(( $1 / 1000 )) $(( $1 % 1000 )); }

# run_stage NAME CMD...: run CMD with output to LOG_DIR/NAME.log, print its timing; on failure
# show the log's tail and a one-line error naming the stage.
run_stage() {
    local name=$1; shift
    STAGE=$name
    local t0 rc=0 log="$LOG_DIR/$name.log"
    t0=$(date +%s%N)
    # A function called in an `||` context runs without errexit: run it in a subshell that
    # re-enables it, outside any conditional, so its first failing command fails the stage.
    # It also runs in the background and is waited for, so INT/TERM are handled at once.
    set +e
    ( set -e; "$@" ) >"$log" 2>&1 &
    local pid=$!
    BG_PIDS+=("$pid")
    # `|| rc=$?`: a bare failing wait would fire the ERR trap (errexit off or not).
    wait "$pid" || rc=$?
    forget_pid "$pid"
    set -e
    if [ "$rc" -ne 0 ]; then
        tail -n 25 "$log" >&2 || true
        echo "images.sh: stage $name failed (exit $rc); log: $log" >&2
        exit "$rc"
    fi
    echo "images.sh: stage $name done in $(fmt_ms "$(ms_since "$t0")")"
}

# retry N CMD...: network steps get N tries with a growing pause between them.
retry() {
    local n=$1 i=1; shift
    until "$@"; do
        if [ "$i" -ge "$n" ]; then return 1; fi
        echo "retry: attempt $i of $n failed: $*" >&2
        sleep $(( i * 5 ))
        i=$(( i + 1 ))
    done
}

dk() { local sock=$1; shift; docker -H "unix://$sock" "$@"; }

# descendants PID: PID and every process below it (our own children), deepest first.
descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do descendants "$c"; done
    echo "$1"
}

# kill_trees PID...: TERM those trees by id; whatever ignores TERM (npm ci does, mid-install)
# gets KILL after a short grace period.
kill_trees() {
    local p pids=() alive i
    for p in "$@"; do mapfile -t -O "${#pids[@]}" pids < <(descendants "$p"); done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in $(seq 1 30); do
        alive=()
        for p in "${pids[@]}"; do
            case "$(ps -o stat= -p "$p" 2>/dev/null || true)" in ''|Z*) ;; *) alive+=("$p") ;; esac
        done
        [ "${#alive[@]}" -gt 0 ] || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

# safe_rm DIR: an interrupted debootstrap leaves /proc (maybe /sys) mounted in its root:
# unmount whatever is below DIR first, and never let rm cross into another filesystem.
safe_rm() {
    local d m
    [ -e "$1" ] || return 0
    d=$(realpath -e "$1")
    awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r \
        | while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$d"
}

WORK=""
# Children still running: cleanup ends them (a finished child's id is dropped, never reused).
BG_PIDS=()
forget_pid() {
    local p keep=()
    for p in "${BG_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
}
cleanup() {
    trap - ERR
    set +e
    kill_trees "${BG_PIDS[@]}"
    if [ -n "$WORK" ]; then safe_rm "$WORK" || true; fi
}
trap cleanup EXIT
on_signal() {
    trap - ERR
    echo "images.sh: stage $STAGE interrupted by SIG$1; no partial cache entry is left" >&2
    exit "$2"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

# ---------------------------------------------------------------- arguments and inputs
STAGE="args"
[ "$#" -ge 1 ] || die "usage: lab/images.sh SOCKET [SOCKET...]"
SOCKETS=("$@")
for s in "${SOCKETS[@]}"; do
    [ -S "$s" ] || die "$s is not a unix socket"
done
command -v docker >/dev/null || die "docker CLI not found"
[ -x "$NODE_BIN" ] || die "$NODE_BIN not found (the image copies the machine's node)"

STAGE="mirror"
[ -r "$SOURCES_FILE" ] || die "cannot read $SOURCES_FILE"
MIRROR=$(awk '/^URIs:/ { print $2; exit }' "$SOURCES_FILE")
[ -n "$MIRROR" ] || die "no URIs: line in $SOURCES_FILE"

mkdir -p "$CACHE" "$CACHE/npm" "$CACHE/logs"
CACHE=$(realpath -e "$CACHE")
# One images.sh at a time per cache: a second caller waits, then finds the warm path.
STAGE="lock"
exec 9>"$CACHE/.lock"
flock -w 1200 9 || die "another images.sh held $CACHE/.lock for 20 minutes"
# Holding the lock, nothing else is building: leftovers are from an interrupted run.
for d in "$CACHE"/build.*; do safe_rm "$d"; done
rm -f "$CACHE"/images-*.tar.tmp.*

# ---------------------------------------------------------------- content key
STAGE="key"
T0=$(date +%s%N)
content_manifest() {
    echo "mirror $MIRROR"
    echo "node $("$NODE_BIN" --version) $(sha256sum "$NODE_BIN" | cut -d' ' -f1)"
    echo "script $(sha256sum "$HERE/images.sh" | cut -d' ' -f1)"
    local f
    (cd "$IMG_DIR" && find "${IMG_SUBDIRS[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$APP_SRC" && for f in "${APP_FILES[@]}"; do sha256sum "$f"; done)
    (cd "$APP_SRC" && find src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    # Modes matter too (the medusa wrapper must stay executable).
    (cd "$IMG_DIR" && find "${IMG_SUBDIRS[@]}" -type f -perm -u+x -print | LC_ALL=C sort | sed 's/^/exec /')
}
for f in "${APP_FILES[@]}"; do
    [ -f "$APP_SRC/$f" ] || die "missing $APP_SRC/$f"
done
KEY=$(content_manifest | sha256sum | cut -d' ' -f1)
TARBALL="$CACHE/images-$KEY.tar"
LOG_DIR="$CACHE/logs/$KEY"
mkdir -p "$LOG_DIR"
echo "images.sh: content key $KEY ($(fmt_ms "$(ms_since "$T0")"))"

# ---------------------------------------------------------------- warm path
engine_has_all() {
    local sock=$1 img got
    for img in "${IMAGES[@]}"; do
        got=$(dk "$sock" image inspect --format "{{ index .Config.Labels \"$KEY_LABEL\" }}" "$img" \
              2>/dev/null) || return 1
        [ "$got" = "$KEY" ] || return 1
    done
}

STAGE="check"
NEED=()
HAVE=""
for s in "${SOCKETS[@]}"; do
    dk "$s" version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "engine at $s does not answer"
    if engine_has_all "$s"; then
        echo "images.sh: $s already has all images (key ${KEY:0:12})"
        HAVE=${HAVE:-$s}
    else
        NEED+=("$s")
    fi
done

if [ "${#NEED[@]}" -eq 0 ]; then
    echo "images.sh: all engines up to date in $(fmt_ms "$(ms_since "$T_ALL")")"
    exit 0
fi

# ---------------------------------------------------------------- cold path: build
stage_base() {
    local root="$WORK/rootfs"
    # shellcheck disable=SC2317  # reached through `retry 3 bootstrap`
    bootstrap() {
        safe_rm "$root"
        debootstrap --variant=minbase --include=redis-server,ca-certificates,socat \
            bookworm "$root" "$MIRROR"
    }
    retry 3 bootstrap
    # Package caches only bloat the image; nothing in it runs apt.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -c . \
        | dk "$BUILD_SOCK" import \
            --change "LABEL $KEY_LABEL=$KEY" \
            --change 'CMD ["/bin/bash"]' \
            - omni-lab/base:bookworm
    safe_rm "$root"
}

stage_app() {
    local app="$WORK/app-src"
    mkdir -p "$app"
    (cd "$APP_SRC" && cp -p "${APP_FILES[@]}" "$app/" && cp -rp src "$app/")
    export npm_config_cache="$CACHE/npm" npm_config_update_notifier=false
    export MEDUSA_DISABLE_TELEMETRY=true NODE_ENV=development
    cd "$app"
    retry 3 npm ci --no-audit --no-fund --prefer-offline
    npx --no-install medusa build
    [ -f .medusa/server/medusa-config.js ] || { echo "medusa build made no .medusa/server"; return 1; }
    cd .medusa/server
    retry 3 npm ci --omit=dev --no-audit --no-fund --prefer-offline
    [ -f node_modules/@medusajs/cli/cli.js ] || { echo "no @medusajs/cli in prod deps"; return 1; }
    # Type declarations and source maps are never read by `medusa start`; dropping them halves
    # the file count (~88k -> ~44k), which is what `docker load` spends its time on.
    find node_modules -type f ! -path 'node_modules/typescript/*' \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' \
        -o -name '*.d.cts' -o -name '*.tsbuildinfo' \) -delete
    # Build context for the shared medusa image.
    local ctx="$WORK/ctx-medusa"
    mkdir -p "$ctx"
    cp -p "$IMG_DIR/medusa/Dockerfile" "$IMG_DIR/medusa/medusa" "$ctx/"
    cp -p "$NODE_BIN" "$ctx/node"
    mv "$app/.medusa/server" "$ctx/app"
    rm -rf "$app"
}

dbuild() {
    DOCKER_BUILDKIT=0 dk "$BUILD_SOCK" build --network host --force-rm \
        --label "$KEY_LABEL=$KEY" "$@"
}

stage_redis() { dbuild -t omni-lab/redis:7 "$IMG_DIR/redis"; dbuild -t omni-lab/gateway:1 "$IMG_DIR/gateway"
    dbuild -t omni-lab/standin:1 "$IMG_DIR/standin"; }
stage_medusa_shared() { dbuild -t omni-lab/medusa:shared "$WORK/ctx-medusa"; rm -rf "$WORK/ctx-medusa"; }
stage_medusa_releases() {
    local spec rel ver
    for spec in v1:1.0.0 v2:2.0.0 v3:3.0.0 broken:0.0.0-broken migrate-fails:0.0.0-migrate-fails; do
        rel=${spec%%:*}; ver=${spec#*:}
        dbuild -t "omni-lab/medusa:$rel" --build-arg "RELEASE=$rel" --build-arg "VERSION=$ver" \
            "$IMG_DIR/medusa-release"
    done
}

stage_save() {
    local tmp="$TARBALL.tmp.$$"
    rm -f "$tmp"
    dk "$SAVE_SOCK" save -o "$tmp" "${IMAGES[@]}"
    sync -f "$tmp" 2>/dev/null || sync
    mv -f "$tmp" "$TARBALL"
    # Older keys' tarballs are dead weight: keep only the current one.
    find "$CACHE" -maxdepth 1 -name 'images-*.tar' ! -name "images-$KEY.tar" -delete
    find "$CACHE" -maxdepth 1 -name 'images-*.tar.tmp.*' -delete
    find "$CACHE/logs" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -exec rm -rf {} +
}

if [ ! -f "$TARBALL" ]; then
    if [ -n "$HAVE" ]; then
        SAVE_SOCK=$HAVE
    else
        BUILD_SOCK=${NEED[0]}
        SAVE_SOCK=$BUILD_SOCK
        command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
        command -v npm >/dev/null || die "npm not installed"
        WORK=$(mktemp -d "$CACHE/build.XXXXXX")
        echo "images.sh: cold build in $BUILD_SOCK (work dir $WORK)"
        # The base (network: Debian mirror) and the app (network: npm) are independent: overlap them.
        # Both in the background and waited for, so INT/TERM reach the main shell at once.
        STAGE="base+app"
        ( run_stage base stage_base ) &
        BASE_PID=$!
        BG_PIDS+=("$BASE_PID")
        ( run_stage app stage_app ) &
        APP_PID=$!
        BG_PIDS+=("$APP_PID")
        APP_RC=0
        wait "$APP_PID" || APP_RC=$?
        forget_pid "$APP_PID"
        if [ "$APP_RC" -ne 0 ]; then
            kill_trees "$BASE_PID"
            wait "$BASE_PID" 2>/dev/null || true
            forget_pid "$BASE_PID"
            STAGE="app"
            exit "$APP_RC"  # run_stage already printed the stage's one-line failure
        fi
        BASE_RC=0
        wait "$BASE_PID" || BASE_RC=$?
        forget_pid "$BASE_PID"
        STAGE="base"
        [ "$BASE_RC" -eq 0 ] || exit "$BASE_RC"  # run_stage printed the failure line
        run_stage redis-image stage_redis
        run_stage medusa-shared-image stage_medusa_shared
        run_stage medusa-release-images stage_medusa_releases
    fi
    run_stage save stage_save
    echo "images.sh: cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

# ---------------------------------------------------------------- load where missing
# Loads into several engines run side by side: each is mostly layer extraction on its own disk area.
LOAD_PIDS=()
LOAD_SOCKS=()
for s in "${NEED[@]}"; do
    if [ "$s" = "${BUILD_SOCK:-}" ] && engine_has_all "$s"; then
        continue
    fi
    ( run_stage "load-$(echo "$s" | tr -c 'A-Za-z0-9\n' '_')" dk "$s" load -i "$TARBALL" ) &
    LOAD_PIDS+=("$!")
    BG_PIDS+=("$!")
    LOAD_SOCKS+=("$s")
done
LOAD_RC=0
for i in "${!LOAD_PIDS[@]}"; do
    wait "${LOAD_PIDS[$i]}" || LOAD_RC=$?
    forget_pid "${LOAD_PIDS[$i]}"
done
STAGE="load"
[ "$LOAD_RC" -eq 0 ] || exit "$LOAD_RC"
STAGE="verify"
for s in "${LOAD_SOCKS[@]}"; do
    engine_has_all "$s" || die "$s lacks images with key $KEY after docker load"
done
# Images of older keys lost their tags to the new ones: drop those (only ours, by label).
for s in "${NEED[@]}"; do
    dk "$s" image prune -f --filter "label=$KEY_LABEL" >/dev/null 2>&1 || true
done

echo "images.sh: all engines up to date in $(fmt_ms "$(ms_since "$T_ALL")")"
