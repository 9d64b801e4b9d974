# shellcheck shell=bash
# Shared helpers for deploy/local/*.sh (sourced, not executed).
# Expects the caller to have set: set -euo pipefail

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LOCAL_DIR/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
DATA_DIR="${FEASTFLOW_DATA:-$REPO_DIR/.data}"
# CI may run with a minimal PATH; nginx, pg tools and runuser live in sbin.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

log() { local component="$1"; shift; printf '%s: %s\n' "$component" "$*"; }
die() { local component="$1"; shift; printf '%s: ERROR: %s\n' "$component" "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }
elapsed() { local start="$1"; awk -v ms="$(( $(now_ms) - start ))" 'BEGIN { printf "%.1fs", ms / 1000 }'; }

APT_UPDATED=0
# apt_install COMPONENT PACKAGE... — installs the packages, running apt-get update once per script run.
apt_install() {
    local component="$1"; shift
    local as_root=()
    (( EUID == 0 )) || as_root=(sudo -n)  # CI runners and developer machines are not always root
    log "$component" "installing $* from apt"
    if [[ $APT_UPDATED == 0 ]]; then
        "${as_root[@]}" apt-get update -q >/dev/null || die "$component" "apt-get update failed"
        APT_UPDATED=1
    fi
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        </dev/null >/dev/null || die "$component" "apt-get install $* failed"
}

# The probes below use python3's standard library only (the project venv may not exist yet).
ensure_python3() { command -v python3 >/dev/null || apt_install "$1" python3; }

# tcp_open PORT — true when something accepts TCP connections on 127.0.0.1:PORT.
tcp_open() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

# A Feast Flow unit's command line: `.venv/bin/feastflow api|worker` as make run starts it, or
# `python -P -m ops.cli ...` (older releases: `-m feastflow.cli`) as a rollout starts one on a checkout
# (ops/stack.py; the supervisor's is_unit knows the same two forms).
# shellcheck disable=SC2034  # used by apps.sh
UNIT_PATTERN="feastflow|ops\.cli"

# pid_alive PIDFILE PATTERN — true when PIDFILE names a live process whose command line matches PATTERN (an
# extended regular expression; a plain word matches where it appears). The pattern check keeps a stale pid
# file (reused pid) from making us signal someone else's process.
pid_alive() {
    local pidfile="$1" pattern="$2" pid cmdline
    [[ -s $pidfile ]] || return 1
    pid="$(<"$pidfile")"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # No pipe into `grep -q`: under pipefail its early exit can fail the pipeline with tr's SIGPIPE.
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1  # stderr first: a pid gone since is no error
    [[ $cmdline =~ $pattern ]]
}

# True while PID runs. A zombie counts as gone: daemons are reparented to PID 1, which may reap
# them only seconds later (this VM's init does).
pid_running() {
    local state
    state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n $state && $state != Z ]]
}

# wait_pid_gone PID SECONDS — true when the process exits within SECONDS.
wait_pid_gone() {
    local pid="$1" deadline=$(( SECONDS + $2 ))
    while pid_running "$pid"; do
        (( SECONDS < deadline )) || return 1
        sleep 0.2
    done
}

# stop_pidfile COMPONENT PIDFILE PATTERN GRACE — SIGTERM, wait up to GRACE seconds, then SIGKILL.
stop_pidfile() {
    local component="$1" pidfile="$2" pattern="$3" grace="$4" pid start
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        log "$component" "not running (nothing started by this script)"
        return 0
    fi
    pid="$(<"$pidfile")"
    start="$(now_ms)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_gone "$pid" "$grace"; then
        log "$component" "did not stop within ${grace}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 5 || die "$component" "pid $pid survived SIGKILL"
    fi
    rm -f "$pidfile"
    log "$component" "stopped (pid $pid, $(elapsed "$start"))"
}

# take_lock NAME — serialises concurrent runs (e.g. parallel make targets) for the rest of this script.
# Daemons are started with 9>&-: one that inherited fd 9 would hold the lock for its whole life.
take_lock() {
    mkdir -p "$DATA_DIR"
    exec 9>"$DATA_DIR/.$1.lock"
    flock -w 120 9 || die "$1" "another $1 run holds $DATA_DIR/.$1.lock"
}

# The API pods' ports: FEASTFLOW_API_PORTS, else what the last `feastflow rollout` left in
# $DATA_DIR/run/api-ports (pods move to fresh ports during a rolling deploy), else 8081 and 8082.
current_api_ports() {
    if [[ -n ${FEASTFLOW_API_PORTS:-} ]]; then
        echo "${FEASTFLOW_API_PORTS//,/ }"
    elif [[ -s $DATA_DIR/run/api-ports ]]; then
        cat "$DATA_DIR/run/api-ports"
    else
        echo "8081 8082"
    fi
}

# scrape_target KIND UNIT PORT — tell the local Prometheus to scrape a unit (KIND: api or worker). It reads
# the targets folder by file name pattern; the file is written whole and renamed into place.
scrape_target() {
    local kind="$1" unit="$2" port="$3" dir="$DATA_DIR/prometheus/targets"
    mkdir -p "$dir"
    printf '[{"targets": ["127.0.0.1:%s"], "labels": {"unit": "%s"}}]\n' "$port" "$unit" >"$dir/.$kind-$port.tmp"
    mv -f "$dir/.$kind-$port.tmp" "$dir/$kind-$port.json"
}

# forget_scrape_targets — no unit runs any more: nothing to scrape.
forget_scrape_targets() { rm -f "$DATA_DIR"/prometheus/targets/*.json; }
