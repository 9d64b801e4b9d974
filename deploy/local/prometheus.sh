#!/usr/bin/env bash
# The local stack's Prometheus (Debian's package, run as a private process, never the system service).
#
#   deploy/local/prometheus.sh up|down|status
#
# `up` renders deploy/prometheus/prometheus.local.yml into <data>/prometheus/prometheus.yml, checks it with
# promtool, and starts Prometheus on 127.0.0.1:$FEASTFLOW_PROMETHEUS_PORT (9090), or reloads it when it
# already runs (SIGHUP: the lifecycle and admin HTTP APIs stay off, so no local process can stop it or
# delete its data over HTTP). Which units to scrape it learns from <data>/prometheus/targets/, written by apps.sh and by
# `feastflow rollout` as units start and stop.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROM_PORT="${FEASTFLOW_PROMETHEUS_PORT:-9090}"
PROM_DIR="$DATA_DIR/prometheus"
PROM_CONF="$PROM_DIR/prometheus.yml"
PROM_PIDFILE="$PROM_DIR/prometheus.pid"
PROM_LOG="$DATA_DIR/logs/prometheus.log"
RULES_DIR="$REPO_DIR/deploy/prometheus/rules"

ensure_prometheus() {
    command -v prometheus >/dev/null && command -v promtool >/dev/null || apt_install prometheus prometheus
}

render_config() {
    mkdir -p "$PROM_DIR/targets" "$PROM_DIR/data" "$DATA_DIR/logs"
    sed -e "s|@DATA@|$DATA_DIR|g" -e "s|@RULES@|$RULES_DIR|g" -e "s|@PORT@|$PROM_PORT|g" \
        "$REPO_DIR/deploy/prometheus/prometheus.local.yml" >"$PROM_CONF.new"
    promtool check config "$PROM_CONF.new" >/dev/null || die prometheus "rendered config is invalid: $PROM_CONF.new"
    mv -f "$PROM_CONF.new" "$PROM_CONF"
}

prometheus_up() {
    ensure_prometheus
    render_config
    if pid_alive "$PROM_PIDFILE" "prometheus"; then
        kill -HUP "$(<"$PROM_PIDFILE")"
        log prometheus "already running on http://127.0.0.1:$PROM_PORT; configuration reloaded"
        return 0
    fi
    tcp_open "$PROM_PORT" && die prometheus "port $PROM_PORT is taken by another process (set FEASTFLOW_PROMETHEUS_PORT)"
    local start deadline
    start="$(now_ms)"
    setsid nohup prometheus \
        --config.file="$PROM_CONF" \
        --storage.tsdb.path="$PROM_DIR/data" \
        --storage.tsdb.retention.time=2d \
        --web.listen-address="127.0.0.1:$PROM_PORT" \
        >>"$PROM_LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$PROM_PIDFILE"
    deadline=$(( SECONDS + 60 ))
    until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready"; do
        # The pid was just started here (no stale file to guard against); its command line can read empty
        # while it execs, so ask only whether it runs, as apps.sh does.
        pid_running "$(<"$PROM_PIDFILE")" || die prometheus "exited while starting; see $PROM_LOG"
        (( SECONDS < deadline )) || die prometheus "not ready after 60s; see $PROM_LOG"
        sleep 0.5
    done
    log prometheus "ready on http://127.0.0.1:$PROM_PORT (pid $(<"$PROM_PIDFILE"), $(elapsed "$start"))"
}

case "${1:-}" in
    up) take_lock prometheus; prometheus_up ;;
    down) take_lock prometheus; stop_pidfile prometheus "$PROM_PIDFILE" "prometheus" 30 ;;
    status)
        if pid_alive "$PROM_PIDFILE" "prometheus"; then log prometheus "up on http://127.0.0.1:$PROM_PORT"
        else log prometheus "down"; exit 1; fi ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
