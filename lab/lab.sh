#!/usr/bin/env bash
# The lab: two "servers" (dev at 127.0.0.2, netcup at 127.0.0.3) on this one machine, each
# with its own sshd, PostgreSQL 15 cluster, nginx and Docker engine, plus one dnsmasq (the
# lab's DNS) and one Pebble (Let's Encrypt's test CA).
#
#   bash lab/lab.sh up       install what is missing, start what is not running (idempotent)
#   bash lab/lab.sh down     stop exactly what `up` started; keep .lab/ data (--purge: delete it)
#   bash lab/lab.sh status   one line per service: up or down
#
# State lives in <repo>/.lab/; sockets and pidfiles in /run/omni-lab/<hash of the repo path>/
# (unix socket paths are limited to 108 bytes, and CI clones the repo into another folder).
# Runs as root on Debian 12. Every wait polls with a deadline; a failure prints one line
# naming the service, then the tail of its log, and exits non-zero. LAB_TRACE=1 traces it
# with timestamps.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
LAB="$ROOT/.lab"
HASH=$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)
RUN="/run/omni-lab/$HASH"
LIB="$ROOT/lab/lib"
HOSTS=(dev netcup)
declare -A ADDR=([dev]=127.0.0.2 [netcup]=127.0.0.3)
# Offsite backups: each host's restic repository lives on the other host (see backups_up).
declare -A PEER=([dev]=netcup [netcup]=dev)
PGBIN=/usr/lib/postgresql/15/bin
DNS_PORT=8053
PEBBLE_PORT=14000
PEBBLE_MGMT_PORT=15000
PACKAGES=(docker.io nginx openssh-server pebble debootstrap busybox-static dnsmasq-base socat
  postgresql-15 openssl curl iproute2 util-linux procps restic)

# ---------------------------------------------------------------- helpers

say() { printf 'lab: %s\n' "$*" >&2; }

# fail SERVICE MESSAGE [LOGFILE]: one clear line, then the log's tail, then exit 1.
fail() {
  printf 'lab: error: %s: %s\n' "$1" "$2" >&2
  if [[ -n "${3:-}" && -s "$3" ]]; then
    printf -- '--- last lines of %s ---\n' "$3" >&2
    tail -n 25 "$3" >&2
  fi
  exit 1
}

# wait_until SECONDS CMD...: poll CMD every 0.2 s until it succeeds; false at the deadline.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  while ! "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# running PID: the process exists and is not a zombie (this machine's init reaps orphans
# only every few seconds, and `kill -0` succeeds on a zombie).
running() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}
gone() { ! running "$1"; }

# pid_of PIDFILE: the pid in PIDFILE when that process is alive, else nothing (exit 1).
pid_of() {
  local pid
  [[ -r "$1" ]] || return 1
  pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
  [[ -n "$pid" ]] && running "$pid" || return 1
  echo "$pid"
}

# alive PIDFILE COMM: the pidfile's process is alive and its command name is COMM (guards
# against a stale pidfile whose pid was reused by an unrelated process).
alive() {
  local pid comm
  pid=$(pid_of "$1") || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ "$comm" == "$2"* ]]
}

# listener ADDR PORT: prints "local-address process" of any TCP listener that would clash
# with binding ADDR:PORT (the same address or a wildcard).
listener() {
  ss -Hltnp "sport = :$2" 2>/dev/null | awk -v a="$1:$2" -v p=":$2" '
    $4 == a || $4 == "0.0.0.0" p || $4 == "*" p || $4 == "[::]" p { print $4, $6 }'
}

# require_free SERVICE ADDR PORT: fail with a clear message if something already listens.
require_free() {
  local who
  who=$(listener "$2" "$3")
  [[ -z "$who" ]] && return 0
  case "$who" in
    0.0.0.0:* | "*:"* | "[::]:"*)
      fail "$1" "cannot listen on $2:$3: a server listens on ALL addresses ($who), probably the system's own $1: stop it or bind it to 127.0.0.1 only" ;;
    *) fail "$1" "cannot listen on $2:$3: already taken by: $who (stop that process first)" ;;
  esac
}

ssh_banner() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/22 && head -c 8 <&3" 2>/dev/null | grep -q '^SSH-2.0'; }
http_404() { [[ "$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://$1/")" == 404 ]]; }
dns_answers() { python3 "$LIB/dnsq.py" 127.0.0.1 "$DNS_PORT" probe.dev.lab.test 1 | grep -qx 127.0.0.2; }
pebble_answers() { curl -sf -m 3 --cacert "$LAB/pebble/cert.pem" "https://127.0.0.1:$PEBBLE_PORT/dir" >/dev/null; }
pg_ready() { "$PGBIN/pg_isready" -q -h "$1" -p 5432 -t 2; }
docker_answers() { timeout 10 docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# start_detached LOGFILE CMD...: run CMD in its own session, stdio away from ours (callers
# such as make or CI must not be held open by a daemon).
start_detached() {
  local log=$1
  shift
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  echo $!
}

# stop_pid NAME PIDFILE COMM [SECONDS]: SIGTERM, wait, SIGKILL as a last resort.
stop_pid() {
  local name=$1 pidfile=$2 comm=$3 secs=${4:-20} pid
  if ! alive "$pidfile" "$comm"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(pid_of "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until "$secs" gone "$pid"; then
    say "$name (pid $pid) did not stop in ${secs}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 gone "$pid" || fail "$name" "pid $pid survives SIGKILL"
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- packages

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    if [[ "$p" == postgresql-15 && -x "$PGBIN/initdb" && -x "$PGBIN/pg_ctl" ]]; then continue; fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  # Keep the packages' own services (a system sshd on 0.0.0.0:22, nginx on :80, a
  # postgres on 5432) from starting: they would take the lab's ports.
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=1
  fi
  local try ok=""
  for try in 1 2 3; do
    if apt-get update -qq >>"$LAB/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >>"$LAB/apt.log" 2>&1; then
      ok=1
      break
    fi
    say "apt-get failed (try $try of 3)"
    sleep $((try * 3))
  done
  [[ -n "$guard" ]] && rm -f /usr/sbin/policy-rc.d
  [[ -n "$ok" ]] || fail packages "apt-get install ${missing[*]} failed 3 times" "$LAB/apt.log"
}

# ---------------------------------------------------------------- client key

client_key() {
  install -d -m 700 "$LAB/ssh"
  if [[ ! -s "$LAB/ssh/id_ed25519" ]]; then
    rm -f "$LAB/ssh/id_ed25519" "$LAB/ssh/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C "omni-lab-client" -f "$LAB/ssh/id_ed25519"
  fi
  install -m 600 "$LAB/ssh/id_ed25519.pub" "$LAB/ssh/authorized_keys"
}

# ---------------------------------------------------------------- sshd

sshd_up() {
  local h=$1 a=${ADDR[$1]} d="$LAB/hosts/$1"
  local conf="$d/sshd_config" pidfile="$RUN/$h/sshd.pid" log="$d/sshd.log"
  if [[ ! -s "$d/ssh_host_ed25519_key" ]]; then
    rm -f "$d/ssh_host_ed25519_key" "$d/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "root@$h.lab" -f "$d/ssh_host_ed25519_key"
  fi
  chmod 600 "$d/ssh_host_ed25519_key"
  cat >"$conf.tmp" <<EOF
# sshd of lab host $h (written by lab/lab.sh; rewritten on each up)
ListenAddress $a:22
HostKey $d/ssh_host_ed25519_key
PidFile $pidfile
AuthorizedKeysFile $LAB/ssh/authorized_keys
# One key file for every user: only root may use it, so a wrong user is refused.
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The checkout may sit under a group/world-writable folder (CI's clone), which
# StrictModes would take for an insecure authorized_keys path.
StrictModes no
MaxSessions 100
MaxStartups 100:30:200
LogLevel VERBOSE
PrintMotd no
# sshd runs every command through the user's shell, and Debian's bash then reads ~/.bashrc
# (it was started by sshd). This machine's root ~/.bashrc runs pyenv init (about 0.1 s
# for every command); a server's returns at once for a non-interactive shell. Bash skips
# ~/.bashrc when SHLVL says it is not the first shell, so the lab's hosts behave as one.
SetEnv SHLVL=1
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
Subsystem sftp internal-sftp
EOF
  mv "$conf.tmp" "$conf"
  if alive "$pidfile" sshd && ssh_banner "$a"; then
    kill -HUP "$(cat "$pidfile")"  # re-read the config just written
    return 0
  fi
  stop_pid "sshd $h" "$pidfile" sshd 5
  require_free sshd "$a" 22
  mkdir -p /run/sshd
  chmod 755 /run/sshd
  /usr/sbin/sshd -t -f "$conf" 2>>"$log" || fail "sshd $h" "config test failed ($conf)" "$log"
  local try
  for try in 1 2 3; do
    /usr/sbin/sshd -f "$conf" -E "$log" </dev/null >/dev/null 2>&1 9>&- || true
    if wait_until 10 ssh_banner "$a" && alive "$pidfile" sshd; then
      return 0
    fi
    stop_pid "sshd $h" "$pidfile" sshd 5
  done
  fail "sshd $h" "did not answer on $a:22" "$log"
}

# ---------------------------------------------------------------- PostgreSQL

# The data dir must be reachable by the postgres user: when the checkout's folders are not
# (e.g. a clone under /root), the cluster lives under /var/lib/omni-lab and .lab links to it.
pg_datadir() {
  local h=$1
  if pgrun test -x "$LAB/hosts/$h"; then
    echo "$LAB/hosts/$h/pg"
  else
    echo "/var/lib/omni-lab/$HASH/$h/pg"
  fi
}

# pgrun CMD...: CMD as the postgres user, from a folder it may enter.
pgrun() { (cd / && runuser -u postgres -- "$@"); }

pg_up() {
  local h=$1 a=${ADDR[$1]} d="$LAB/hosts/$1"
  local data log="$d/postgres.log" sock="$RUN/$h/pgsock" pwfile="$d/postgres-admin.password"
  data=$(pg_datadir "$h")
  install -d -m 755 -o postgres -g postgres "$sock"
  if [[ "$data" != "$d/pg" ]]; then
    install -d -m 755 "$(dirname "$data")"
    [[ -L "$d/pg" ]] || ln -sfn "$data" "$d/pg"
    # The server writes its log itself, so it sits where postgres can reach it too.
    log="$(dirname "$data")/postgres.log"
    [[ -L "$d/postgres.log" ]] || ln -sfn "$log" "$d/postgres.log"
  fi
  touch "$log" && chown postgres:postgres "$log"
  if [[ ! -s "$data/PG_VERSION" ]]; then
    say "initdb $h"
    rm -rf "$data"
    install -d -m 700 -o postgres -g postgres "$data"
    pgrun "$PGBIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >>"$log" 2>&1 ||
      fail "postgres $h" "initdb failed" "$log"
    echo "include 'omni-lab.conf'" >>"$data/postgresql.conf"
  fi
  cat >"$data/omni-lab.conf" <<EOF
# written by lab/lab.sh
listen_addresses = '$a'
port = 5432
unix_socket_directories = '$sock'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  cat >"$data/pg_hba.conf" <<EOF
# written by lab/lab.sh
local   all   all                  peer
host    all   all   127.0.0.0/8    scram-sha-256
EOF
  chown postgres:postgres "$data/omni-lab.conf" "$data/pg_hba.conf"
  if ! (pgrun "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1 && pg_ready "$a"); then
    pgrun "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    require_free postgres "$a" 5432
    local try started=""
    for try in 1 2 3; do
      if pgrun "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start </dev/null >/dev/null 2>&1 9>&- &&
        wait_until 30 pg_ready "$a"; then
        started=1
        break
      fi
      pgrun "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    done
    [[ -n "$started" ]] || fail "postgres $h" "did not answer on $a:5432" "$log"
  else
    # pg_hba.conf / omni-lab.conf may have changed: a reload is cheap and harmless.
    pgrun "$PGBIN/pg_ctl" -D "$data" reload >/dev/null 2>&1 || true
  fi
  if [[ ! -s "$pwfile" ]]; then
    (umask 077 && openssl rand -hex 24 | tr -d '\n' >"$pwfile.tmp" && mv "$pwfile.tmp" "$pwfile")
  fi
  chmod 600 "$pwfile"
  # The password goes in on stdin, never on a command line.
  {
    printf "SELECT 'CREATE ROLE omni_admin' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'omni_admin')\\\\gexec\n"
    printf "ALTER ROLE omni_admin WITH SUPERUSER LOGIN PASSWORD '%s';\n" "$(cat "$pwfile")"
  } | pgrun "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p 5432 -d postgres >/dev/null 2>>"$log" ||
    fail "postgres $h" "could not create/update role omni_admin" "$log"
}

pg_down() {
  local h=$1 data
  data=$(readlink -f "$LAB/hosts/$h/pg" 2>/dev/null) || return 0
  [[ -s "$data/PG_VERSION" ]] || return 0
  pgrun "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  if pgrun "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    pgrun "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
      fail "postgres $h" "did not stop" "$LAB/hosts/$h/postgres.log"
  fi
}

# ---------------------------------------------------------------- nginx

nginx_up() {
  local h=$1 a=${ADDR[$1]} d="$LAB/hosts/$1"
  local nd="$d/nginx" conf="$d/nginx/nginx.conf" log="$d/nginx/error.log"
  mkdir -p "$nd/sites" "$nd/tmp" "$d/acme-webroot/.well-known/acme-challenge" "$d/certs"
  cat >"$conf.tmp" <<EOF
# nginx of lab host $h (written by lab/lab.sh; rewritten on each up)
# Workers run as root so they can read the webroot and certs wherever the checkout lives.
user root;
worker_processes 1;
pid $nd/nginx.pid;
error_log $nd/error.log;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $nd/access.log;
    client_body_temp_path $nd/tmp/client_body;
    proxy_temp_path $nd/tmp/proxy;
    fastcgi_temp_path $nd/tmp/fastcgi;
    uwsgi_temp_path $nd/tmp/uwsgi;
    scgi_temp_path $nd/tmp/scgi;
    server_names_hash_bucket_size 128;
    sendfile on;

    server {
        listen $a:80 default_server;
        server_name _;
        location /.well-known/acme-challenge/ { root $d/acme-webroot; }
        location / { return 404; }
    }
    server {
        listen $a:443 ssl default_server;
        server_name _;
        ssl_reject_handshake on;
    }

    include $nd/sites/*.conf;
}
EOF
  mv "$conf.tmp" "$conf"
  if alive "$nd/nginx.pid" nginx && http_404 "$a"; then
    return 0
  fi
  stop_pid "nginx $h" "$nd/nginx.pid" nginx 10
  require_free nginx "$a" 80
  require_free nginx "$a" 443
  nginx -c "$conf" -t >>"$log" 2>&1 || fail "nginx $h" "config test failed ($conf)" "$log"
  local try
  for try in 1 2 3; do
    nginx -c "$conf" </dev/null >>"$log" 2>&1 9>&- || true
    if wait_until 10 http_404 "$a" && alive "$nd/nginx.pid" nginx; then
      return 0
    fi
    stop_pid "nginx $h" "$nd/nginx.pid" nginx 10
  done
  fail "nginx $h" "did not answer on http://$a/" "$log"
}

# ---------------------------------------------------------------- Docker

docker_up() {
  local h=$1 d="$LAB/hosts/$1"
  local sock="$RUN/$h/docker.sock" pidfile="$RUN/$h/docker.pid" log="$d/dockerd.log"
  local exec_root="$RUN/$h/exec" data_root="$d/docker"
  # containerd's own sockets live under exec-root; keep them well inside the 108-byte limit.
  ((${#exec_root} + 40 < 108)) || fail "docker $h" "exec-root path too long for unix sockets: $exec_root"
  ((${#data_root} < 200)) || fail "docker $h" "data-root path too long for overlay2 mounts: $data_root"
  if alive "$pidfile" dockerd && docker_answers "$sock"; then
    return 0
  fi
  stop_pid "docker $h" "$pidfile" dockerd 60
  mkdir -p "$data_root" "$exec_root"
  local try pid
  for try in 1 2 3; do
    pid=$(start_detached "$log" dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
      --ip-masq=false --data-root "$data_root" --exec-root "$exec_root" --pidfile "$pidfile" \
      --containerd-namespace "omni-lab-$h" --containerd-plugins-namespace "omni-lab-$h-plugins" \
      -H "unix://$sock")
    if wait_until 60 docker_answers "$sock"; then
      return 0
    fi
    say "docker $h: no answer yet (try $try of 3)"
    kill -TERM "$pid" 2>/dev/null || true
    wait_until 30 gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  fail "docker $h" "engine did not answer on unix://$sock" "$log"
}

docker_down() {
  local h=$1 cpid
  local cpidfile="$RUN/$h/exec/containerd/containerd.pid"
  cpid=$(pid_of "$cpidfile" 2>/dev/null) || cpid=""
  stop_pid "docker $h" "$RUN/$h/docker.pid" dockerd 60
  # dockerd stops its containerd on exit; wait for it so nothing is left behind.
  if [[ -n "$cpid" ]] && ! wait_until 20 gone "$cpid"; then
    kill -KILL "$cpid" 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------- dnsmasq

dns_up() {
  local dir="$LAB/dns" pidfile="$LAB/dns/dnsmasq.pid" log="$LAB/dns/dnsmasq.log"
  mkdir -p "$dir"
  if alive "$pidfile" dnsmasq && dns_answers; then
    return 0
  fi
  stop_pid dnsmasq "$pidfile" dnsmasq 10
  ss -Hlun "sport = :$DNS_PORT" | grep -q . &&
    fail dnsmasq "UDP port $DNS_PORT is already taken: $(ss -Hlunp "sport = :$DNS_PORT" | head -n1)"
  local try
  for try in 1 2 3; do
    dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
      --listen-address=127.0.0.1 --port="$DNS_PORT" --user=root --group=root \
      --address=/dev.lab.test/127.0.0.2 --address=/netcup.lab.test/127.0.0.3 \
      --pid-file="$pidfile" --log-facility="$log" --log-queries </dev/null >>"$log" 2>&1 9>&- || true
    if wait_until 10 dns_answers; then
      return 0
    fi
    stop_pid dnsmasq "$pidfile" dnsmasq 10
  done
  fail dnsmasq "did not answer on 127.0.0.1:$DNS_PORT" "$log"
}

# ---------------------------------------------------------------- Pebble

pebble_up() {
  local dir="$LAB/pebble" pidfile="$LAB/pebble/pebble.pid" log="$LAB/pebble/pebble.log"
  mkdir -p "$dir"
  if [[ ! -s "$dir/cert.pem" || ! -s "$dir/key.pem" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pebble-lab" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$dir/key.pem" -out "$dir/cert.pem" >>"$log" 2>&1 ||
      fail pebble "could not make its TLS certificate" "$log"
    chmod 600 "$dir/key.pem"
  fi
  cat >"$dir/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$dir/cert.pem",
    "privateKey": "$dir/key.pem",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "certificateValidityPeriod": 7776000
  }
}
EOF
  if alive "$pidfile" pebble && pebble_answers; then
    [[ -s "$dir/root.pem" ]] || pebble_root
    return 0
  fi
  stop_pid pebble "$pidfile" pebble 10
  require_free pebble 127.0.0.1 "$PEBBLE_PORT"
  require_free pebble 127.0.0.1 "$PEBBLE_MGMT_PORT"
  local try pid
  for try in 1 2 3; do
    pid=$(PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 start_detached "$log" \
      pebble -config "$dir/pebble-config.json" -dnsserver "127.0.0.1:$DNS_PORT")
    echo "$pid" >"$pidfile"
    if wait_until 20 pebble_answers; then
      pebble_root
      return 0
    fi
    stop_pid pebble "$pidfile" pebble 10
  done
  fail pebble "did not answer on https://127.0.0.1:$PEBBLE_PORT/dir" "$log"
}

# Pebble makes a new issuing root on every start: fetch it each time Pebble starts.
pebble_root() {
  local dir="$LAB/pebble"
  wait_until 20 curl -sf -m 3 --cacert "$dir/cert.pem" -o "$dir/root.pem.tmp" \
    "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" ||
    fail pebble "could not fetch its issuing root from :$PEBBLE_MGMT_PORT/roots/0" "$dir/pebble.log"
  grep -q 'BEGIN CERTIFICATE' "$dir/root.pem.tmp" || fail pebble "/roots/0 returned no certificate"
  mv "$dir/root.pem.tmp" "$dir/root.pem"
}

# ---------------------------------------------------------------- backups (restic)

# Each host backs up into a restic repository on its PEER, over SFTP: dev's repository is
# $LAB/hosts/netcup/restic/dev, reached as sftp:root@127.0.0.3:..., and the reverse. Per
# host, under $LAB/hosts/<h>/backup/ (0700): restic.password (0600, the repository key:
# lose it and the backups are noise), id_ed25519 (the host's SFTP key, authorized on the
# lab's sshd for internal-sftp only) and known_hosts (the peer's sshd key, pinned; restic's
# ssh runs with StrictHostKeyChecking=yes). The layout must match lab/lib/inventory.py.
backup_files() {
  local h=$1 p=${PEER[$1]} d="$LAB/hosts/$1/backup"
  install -d -m 700 "$d"
  if [[ ! -s "$d/restic.password" ]]; then
    (umask 077 && openssl rand -hex 32 | tr -d '\n' >"$d/restic.password.tmp" &&
      mv "$d/restic.password.tmp" "$d/restic.password")
  fi
  chmod 600 "$d/restic.password"
  if [[ ! -s "$d/id_ed25519" ]]; then
    rm -f "$d/id_ed25519" "$d/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C "omni-backup@$h.lab" -f "$d/id_ed25519"
  fi
  printf '%s %s\n' "${ADDR[$p]}" "$(cut -d' ' -f1,2 "$LAB/hosts/$p/ssh_host_ed25519_key.pub")" >"$d/known_hosts.tmp"
  mv "$d/known_hosts.tmp" "$d/known_hosts"
  install -d -m 700 "$LAB/hosts/$p/restic"
}

# backup_restic H ARGS...: restic on host H against its repository, exactly as omni runs it
# (omni/backup/restic.py): password from the file, ssh with the pinned key only.
backup_restic() {
  local h=$1 p=${PEER[$1]} d="$LAB/hosts/$1/backup"
  shift
  RESTIC_PASSWORD_FILE="$d/restic.password" restic \
    -r "sftp:root@${ADDR[$p]}:$LAB/hosts/$p/restic/$h" \
    -o "sftp.command=ssh -i $d/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$d/known_hosts -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -p 22 root@${ADDR[$p]} -s sftp" \
    "$@"
}

backups_up() {
  local h line keys=""
  for h in "${HOSTS[@]}"; do
    backup_files "$h"
    keys+="restrict,command=\"internal-sftp\" $(cat "$LAB/hosts/$h/backup/id_ed25519.pub")"$'\n'
  done
  # authorized_keys: the client key (client_key) plus each host's SFTP-only backup key.
  { cat "$LAB/ssh/id_ed25519.pub"; printf '%s' "$keys"; } >"$LAB/ssh/authorized_keys.tmp"
  chmod 600 "$LAB/ssh/authorized_keys.tmp"
  mv "$LAB/ssh/authorized_keys.tmp" "$LAB/ssh/authorized_keys"
  for h in "${HOSTS[@]}"; do
    if ! backup_restic "$h" cat config >/dev/null 2>>"$LAB/restic.log"; then
      say "restic init: $h's repository on ${PEER[$h]}"
      backup_restic "$h" init >>"$LAB/restic.log" 2>&1 ||
        fail "restic $h" "could not initialise its repository on ${PEER[$h]}" "$LAB/restic.log"
    fi
  done
}

# ---------------------------------------------------------------- inventory

write_inventory() {
  python3 "$LIB/inventory.py" "$LAB" "$RUN" || fail inventory "could not write $LAB/inventory/hosts.yaml"
  # A known_hosts made from the pinned keys, for people and scripts using plain ssh.
  local h
  : >"$LAB/ssh/known_hosts.tmp"
  for h in "${HOSTS[@]}"; do
    printf '%s %s\n' "${ADDR[$h]}" "$(cut -d' ' -f1,2 "$LAB/hosts/$h/ssh_host_ed25519_key.pub")" >>"$LAB/ssh/known_hosts.tmp"
  done
  mv "$LAB/ssh/known_hosts.tmp" "$LAB/ssh/known_hosts"
  if [[ -x "$ROOT/.venv/bin/python" ]]; then
    (cd "$ROOT" && .venv/bin/python - "$LAB/inventory/hosts.yaml" <<'EOF') || fail inventory "hosts.yaml does not validate against omni.inventory.models.HostsFile"
import sys
import yaml
from omni.inventory.models import HostsFile
with open(sys.argv[1]) as f:
    HostsFile.model_validate(yaml.safe_load(f))
EOF
  fi
}

# ---------------------------------------------------------------- commands

host_dirs() {
  local h=$1 d="$LAB/hosts/$1"
  install -d -m 755 "$LAB" "$LAB/hosts" "$d"
  mkdir -p "$d/certs" "$d/state" "$d/backups" "$d/acme-webroot" "$RUN/$h"
  # Backups are written by pg_dump as root over SSH; state holds the ACME account key.
  chmod 700 "$d/state" "$d/certs" "$d/backups"
}

# timed NAME CMD...: run CMD; report its duration when it took a noticeable time.
timed() {
  local name=$1 t0=${EPOCHREALTIME/./} ms
  shift
  "$@"
  ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
  ((ms < 500)) || say "$name ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)) | cut -c1)s"
}

cmd_up() {
  local t0=$SECONDS h
  install_packages
  client_key
  for h in "${HOSTS[@]}"; do
    host_dirs "$h"
  done
  timed dnsmasq dns_up
  for h in "${HOSTS[@]}"; do
    timed "$h sshd" sshd_up "$h"
    timed "$h postgres" pg_up "$h"
    timed "$h nginx" nginx_up "$h"
    timed "$h docker" docker_up "$h"
  done
  timed backups backups_up
  timed pebble pebble_up
  if [[ -f "$ROOT/lab/images.sh" ]]; then
    bash "$ROOT/lab/images.sh" "$RUN/dev/docker.sock" "$RUN/netcup/docker.sock" ||
      fail images "lab/images.sh failed (exit $?)"
  else
    say "notice: lab/images.sh does not exist yet: no images built"
  fi
  write_inventory
  cmd_status || fail lab "a service is down right after up (see the status above)"
  say "inventory: $LAB/inventory/hosts.yaml   (env: . $LAB/lab.env)"
  say "ssh: ssh -i $LAB/ssh/id_ed25519 -o UserKnownHostsFile=$LAB/ssh/known_hosts -o StrictHostKeyChecking=yes root@127.0.0.2"
  say "up in $((SECONDS - t0))s"
}

cmd_down() {
  local purge=${1:-} h
  local t0=$SECONDS
  stop_pid pebble "$LAB/pebble/pebble.pid" pebble 10
  stop_pid dnsmasq "$LAB/dns/dnsmasq.pid" dnsmasq 10
  for h in "${HOSTS[@]}"; do
    docker_down "$h"
    stop_pid "nginx $h" "$LAB/hosts/$h/nginx/nginx.pid" nginx 15
    pg_down "$h"
    stop_pid "sshd $h" "$RUN/$h/sshd.pid" sshd 10
  done
  if [[ "$purge" == --purge ]]; then
    # A stopped dockerd leaves its netns/default nsfs mount in the exec-root: ours to drop.
    local m
    while read -r m; do
      [[ -n "$m" ]] && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
    done < <(findmnt -rn -o TARGET | grep -E "^$RUN/[^/]+/exec/netns/" || true)
    if findmnt -rn -o TARGET | grep -qE "^($LAB|$RUN)/"; then
      fail down "mounts remain under $LAB or $RUN; not purging"
    fi
    rm -rf "$LAB" "$RUN" "/var/lib/omni-lab/$HASH"
    say "purged $LAB"
  fi
  say "down in $((SECONDS - t0))s"
}

DOWN_COUNT=0
line() {
  printf '%-8s %-10s %-52s %s\n' "$1" "$2" "$3" "$4"
  [[ "$4" == up ]] || DOWN_COUNT=$((DOWN_COUNT + 1))
}

cmd_status() {
  local h a s
  for h in "${HOSTS[@]}"; do
    a=${ADDR[$h]}
    s=down; alive "$RUN/$h/sshd.pid" sshd && ssh_banner "$a" && s=up
    line "$h" sshd "$a:22" "$s"
    s=down; pg_ready "$a" && s=up
    line "$h" postgres "$a:5432" "$s"
    s=down; alive "$LAB/hosts/$h/nginx/nginx.pid" nginx && http_404 "$a" && s=up
    line "$h" nginx "$a:80,443" "$s"
    s=down; alive "$RUN/$h/docker.pid" dockerd && docker_answers "$RUN/$h/docker.sock" && s=up
    line "$h" docker "unix://$RUN/$h/docker.sock" "$s"
  done
  s=down; alive "$LAB/dns/dnsmasq.pid" dnsmasq && dns_answers && s=up
  line lab dnsmasq "127.0.0.1:$DNS_PORT" "$s"
  s=down; alive "$LAB/pebble/pebble.pid" pebble && pebble_answers && s=up
  line lab pebble "https://127.0.0.1:$PEBBLE_PORT/dir" "$s"
  ((DOWN_COUNT == 0))
}

main() {
  [[ $EUID -eq 0 ]] || fail lab "must run as root"
  mkdir -p "$LAB" "$RUN"
  chmod 755 "$LAB"
  # One lab command at a time per checkout. Every daemon is started with fd 9 closed
  # (`9>&-`) so that it does not inherit, and hold, this lock.
  exec 9>"$LAB/lab.lock"
  flock -w 300 9 || fail lab "another lab.sh holds $LAB/lab.lock (waited 300s)"
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down "${2:-}" ;;
    status) cmd_status ;;
    # Only the restic setup and the inventory (for a lab that is already up).
    backups) install_packages; backups_up; write_inventory ;;
    *)
      echo "usage: bash lab/lab.sh up | down [--purge] | status | backups" >&2
      exit 2
      ;;
  esac
}

[[ -n "${LAB_TRACE:-}" ]] && { PS4='+ ${EPOCHREALTIME} '; set -x; }
main "$@"
