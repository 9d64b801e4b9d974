#!/usr/bin/env bash
# The project's own processes on the local stack: one stream worker and the API pods, and their supervisor.
#   deploy/local/apps.sh up|down|status
# Each runs detached with a pid file and a log under $FEASTFLOW_DATA/logs; `up` waits until each is ready.
# The supervisor (`feastflow supervise`, ops/supervisor.py) restarts a unit whose process exits while its
# pid file still names it, with back-off; `down` stops it first, so stopping the units is never a crash.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FEASTFLOW_BIN="${FEASTFLOW_BIN:-$REPO_DIR/.venv/bin/feastflow}"
RUN_DIR="$DATA_DIR/run"
API_PORTS="$(current_api_ports)"
# A rolling deploy moves the worker to a new name, web port and generation (its own consumer group, see
# streams/handover.py); it leaves them in run/worker.env.
WORKER_NAME="$(sed -n 's/^FEASTFLOW_WORKER_NAME=//p' "$RUN_DIR/worker.env" 2>/dev/null || true)"
WORKER_WEB_PORT="$(sed -n 's/^FEASTFLOW_WORKER_WEB_PORT=//p' "$RUN_DIR/worker.env" 2>/dev/null || true)"
WORKER_GENERATION="$(sed -n 's/^FEASTFLOW_WORKER_GENERATION=//p' "$RUN_DIR/worker.env" 2>/dev/null || true)"
WORKER_NAME="${FEASTFLOW_WORKER_NAME:-${WORKER_NAME:-worker-1}}"
WORKER_WEB_PORT="${FEASTFLOW_WORKER_WEB_PORT:-${WORKER_WEB_PORT:-6066}}"
WORKER_GENERATION="${FEASTFLOW_WORKER_GENERATION:-$WORKER_GENERATION}"
LOG_DIR="$DATA_DIR/logs"
READY_TIMEOUT="${FEASTFLOW_READY_TIMEOUT:-120}"

# wait_ready COMPONENT URL PIDFILE — polls URL until 200, failing early when the process died.
wait_ready() {
    local component="$1" url="$2" pidfile="$3" deadline=$(( SECONDS + READY_TIMEOUT ))
    until curl -fs -o /dev/null --max-time 2 "$url"; do
        pid_running "$(<"$pidfile")" || die "$component" "exited while starting; see $LOG_DIR/$component.log"
        (( SECONDS < deadline )) || die "$component" "not ready after ${READY_TIMEOUT}s; see $LOG_DIR/$component.log"
        sleep 0.5
    done
}

# start COMPONENT READY_URL ENV... -- ARGS... — start a detached feastflow process unless it already runs.
start() {
    local component="$1" url="$2"; shift 2
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    local pidfile="$RUN_DIR/$component.pid" start_ms
    if pid_alive "$pidfile" "$UNIT_PATTERN"; then
        log "$component" "already running (pid $(<"$pidfile"))"
        return 0
    fi
    start_ms="$(now_ms)"
    env "${envs[@]}" setsid nohup "$FEASTFLOW_BIN" "$@" >>"$LOG_DIR/$component.log" 2>&1 </dev/null 9>&- &
    echo $! >"$pidfile"
    wait_ready "$component" "$url" "$pidfile"
    log "$component" "ready (pid $(<"$pidfile"), $(elapsed "$start_ms"))"
}

# The supervisor starts last: it learns how to restart each unit from the running process.
supervisor_up() {
    local pidfile="$RUN_DIR/supervisor.pid" deadline=$(( SECONDS + 10 ))
    if pid_alive "$pidfile" "supervise"; then
        log supervisor "already running (pid $(<"$pidfile"))"
        return 0
    fi
    rm -f "$RUN_DIR/supervisor.json"
    setsid nohup "$FEASTFLOW_BIN" supervise >>"$LOG_DIR/supervisor.log" 2>&1 </dev/null 9>&- &
    echo $! >"$pidfile"
    until [[ -s $RUN_DIR/supervisor.json ]]; do
        # The process itself, not its command line: right after the fork it is still this shell's copy.
        pid_running "$(<"$pidfile")" || die supervisor "exited while starting; see $LOG_DIR/supervisor.log"
        (( SECONDS < deadline )) || die supervisor "no state after 10s; see $LOG_DIR/supervisor.log"
        sleep 0.2
    done
    local units=() unit
    shopt -s nullglob
    for unit in "$RUN_DIR"/worker.pid "$RUN_DIR"/api-*.pid; do units+=("$(basename "$unit" .pid)"); done
    log supervisor "supervising ${units[*]} (pid $(<"$pidfile"))"
}

apps_up() {
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    start worker "http://127.0.0.1:$WORKER_WEB_PORT/feastflow/ready/" \
        FEASTFLOW_WORKER_WEB_PORT="$WORKER_WEB_PORT" FEASTFLOW_WORKER_NAME="$WORKER_NAME" \
        FEASTFLOW_WORKER_GENERATION="$WORKER_GENERATION" FEASTFLOW_STATIC_MEMBERSHIP=1 -- worker
    scrape_target worker worker "$WORKER_WEB_PORT"
    local port index=0
    for port in $API_PORTS; do
        index=$(( index + 1 ))
        start "api-$index" "http://127.0.0.1:$port/readyz" FEASTFLOW_API_PORT="$port" -- api
        scrape_target api "api-$index" "$port"
    done
    supervisor_up
}

apps_down() {
    local pidfile
    shopt -s nullglob
    stop_pidfile supervisor "$RUN_DIR/supervisor.pid" "supervise" 10
    rm -f "$RUN_DIR/supervisor.json"
    for pidfile in "$RUN_DIR"/api-*.pid "$RUN_DIR"/worker.pid; do
        stop_pidfile "$(basename "$pidfile" .pid)" "$pidfile" "$UNIT_PATTERN" 30
    done
    # Units a rollout or canary started and never recorded (it was killed part-way): stopped too.
    for pidfile in "$RUN_DIR"/started/*.pid; do
        if pid_alive "$pidfile" "$UNIT_PATTERN"; then
            stop_pidfile "$(basename "$pidfile" .pid) (left by a rollout)" "$pidfile" "$UNIT_PATTERN" 30
        fi
        rm -f "$pidfile"
    done
    forget_scrape_targets
}

# Each unit's pid, uptime and restart count, from the supervisor; without a virtualenv, the pid files alone.
apps_status() {
    local pidfile down=0
    if [[ -x $FEASTFLOW_BIN ]]; then
        "$FEASTFLOW_BIN" supervise --status
        return
    fi
    shopt -s nullglob
    for pidfile in "$RUN_DIR"/*.pid; do
        if pid_alive "$pidfile" "$UNIT_PATTERN"; then
            log "$(basename "$pidfile" .pid)" "up (pid $(<"$pidfile"))"
        else
            log "$(basename "$pidfile" .pid)" "down"; down=1
        fi
    done
    return "$down"
}

case "${1:-}" in
    up) take_lock apps; apps_up ;;
    down) take_lock apps; apps_down ;;
    status) apps_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
