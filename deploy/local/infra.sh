#!/usr/bin/env bash
# Local data services for Feast Flow: Redis, PostgreSQL 15, Kafka 3.9 (KRaft, from Maven Central jars).
#
#   deploy/local/infra.sh up|down|status [redis|postgres|kafka]...   (default: all three)
#
# Environment: FEASTFLOW_DATA (default <repo>/.data), FEASTFLOW_REDIS_PORT (6379), FEASTFLOW_PG_PORT (5432),
# FEASTFLOW_KAFKA_PORT (9092), FEASTFLOW_KAFKA_CONTROLLER_PORT (9093), FEASTFLOW_KAFKA_START_TIMEOUT (60 s).
# FEASTFLOW_PG_DIR: run PostgreSQL as a plain cluster in that folder (initdb + pg_ctl, its socket there too)
# instead of the system's 15/main; with other ports and FEASTFLOW_DATA this gives a second, private set of
# services (the chaos test kills and restarts its own, never the shared ones).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_PORT="${FEASTFLOW_REDIS_PORT:-6379}"
PG_PORT="${FEASTFLOW_PG_PORT:-5432}"
KAFKA_PORT="${FEASTFLOW_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${FEASTFLOW_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_START_TIMEOUT="${FEASTFLOW_KAFKA_START_TIMEOUT:-60}"

REDIS_DIR="$DATA_DIR/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"

PG_VERSION=15
PG_CLUSTER=main
PG_ROLE=feastflow
PG_PASSWORD=feastflow
PG_DATABASES=(feastflow feastflow_test)
PG_MARKER="$DATA_DIR/postgres/started-by-infra"
PG_DIR="${FEASTFLOW_PG_DIR:-}"
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
# A private cluster is anyone's to create: any installed server will do when $PG_VERSION is not there
# (CI's Ubuntu runners come with another one).
if [[ -n $PG_DIR && ! -x $PG_BIN/initdb ]]; then
    PG_BIN="$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)"
    PG_BIN="${PG_BIN%/initdb}"
    PG_BIN="${PG_BIN:-/usr/lib/postgresql/$PG_VERSION/bin}"
fi

KAFKA_SRC="$LOCAL_DIR/kafka"
KAFKA_DIR="$DATA_DIR/kafka"
KAFKA_LOG_DIRS="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_CLASSPATH="$KAFKA_DIR/classpath.txt"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_CLUSTER_ID="$KAFKA_DIR/cluster.id"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_JAVA_LOG_OPTS=(-Dlog4j.configuration="file:$KAFKA_SRC/log4j.properties" -Dkafka.logs.dir="$KAFKA_LOGS")

# ---------------------------------------------------------------- Redis

redis_answers() {
    python3 - "$REDIS_PORT" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.settimeout(1)
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

redis_up() {
    if redis_answers; then
        log redis "already running on 127.0.0.1:$REDIS_PORT"
        return
    fi
    tcp_open "$REDIS_PORT" && die redis "port $REDIS_PORT is taken by something that does not answer PING"
    command -v redis-server >/dev/null || apt_install redis redis-server
    mkdir -p "$REDIS_DIR"
    # Append-only file: the read model survives `make stop` / `make run` like Kafka's data does.
    local start; start="$(now_ms)"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_PIDFILE" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
        --save '' --appendonly yes --appendfsync everysec </dev/null >/dev/null 9>&- \
        || die redis "redis-server failed to start, see $REDIS_DIR/redis.log"
    local deadline=$(( SECONDS + 10 ))
    until redis_answers; do
        (( SECONDS < deadline )) || die redis "no PONG after 10 s, see $REDIS_DIR/redis.log"
        sleep 0.2
    done
    log redis "started on 127.0.0.1:$REDIS_PORT (pid $(<"$REDIS_PIDFILE"), $(elapsed "$start"))"
}

redis_down() {
    stop_pidfile redis "$REDIS_PIDFILE" redis-server 10
}

redis_status() {
    if redis_answers; then log redis "up 127.0.0.1:$REDIS_PORT$(owner_note "$REDIS_PIDFILE" redis-server)"
    else log redis "down"; return 1; fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

# as_pg COMMAND... — run as the database superuser: the postgres user when we are root, else ourselves.
# cd / because the postgres user cannot read the caller's working directory.
as_pg() {
    if (( EUID == 0 )); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_psql() {
    local socket=()
    [[ -n $PG_DIR ]] && socket=(-h "$PG_DIR")
    if [[ -n $PG_DIR ]] && (( EUID != 0 )); then socket+=(-U "$(id -un)"); fi
    as_pg psql "${socket[@]}" -p "$PG_PORT" -d postgres -X -q -t -A -v ON_ERROR_STOP=1 "$@"
}

# A killed postmaster leaves postmaster.pid behind. The server refuses to start while that pid exists, and a
# zombie exists until PID 1 reaps it (this VM's init takes seconds): wait for it, and once only a zombie is
# left (dead, holding nothing) remove the lock file for it.
pg_private_wait_reaped() {
    local pid deadline=$(( SECONDS + 10 ))
    pid="$(head -n 1 "$PG_DIR/postmaster.pid" 2>/dev/null)" || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    wait_pid_gone "$pid" 10 || return 0  # really running: pg_ctl says so
    while [[ -e /proc/$pid ]]; do
        if (( SECONDS >= deadline )); then
            log postgres "postmaster $pid is dead but not yet reaped; removing its lock file"
            rm -f "$PG_DIR/postmaster.pid"
            return 0
        fi
        sleep 0.2
    done
}

# A private cluster in $PG_DIR, owned by the superuser, listening on 127.0.0.1:$PG_PORT and a socket in $PG_DIR.
pg_private_start() {
    local start; start="$(now_ms)"
    if [[ ! -f $PG_DIR/PG_VERSION ]]; then
        mkdir -p "$PG_DIR"
        (( EUID == 0 )) && chown postgres: "$PG_DIR"
        chmod 700 "$PG_DIR"
        as_pg "$PG_BIN/initdb" -D "$PG_DIR" -E UTF8 --no-sync --auth-local=peer --auth-host=scram-sha-256 \
            >"$PG_DIR.initdb.log" 2>&1 || die postgres "initdb failed, see $PG_DIR.initdb.log"
        log postgres "created a cluster in $PG_DIR"
    fi
    pg_private_wait_reaped
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR" start \
        </dev/null >/dev/null 9>&- || die postgres "pg_ctl start failed, see $PG_DIR/server.log"
    mkdir -p "$(dirname "$PG_MARKER")"
    touch "$PG_MARKER"
    log postgres "started $PG_DIR on 127.0.0.1:$PG_PORT ($(elapsed "$start"))"
}

pg_ensure_installed() {
    [[ -n $PG_DIR && -x $PG_BIN/initdb ]] && return 0
    if [[ ! -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ]] || ! command -v pg_ctlcluster >/dev/null; then
        apt_install postgres "postgresql-$PG_VERSION" postgresql-client-common postgresql-common
    fi
}

pg_ensure_cluster() {
    if [[ ! -f /etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf ]]; then
        pg_createcluster -p "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER" >/dev/null \
            || die postgres "pg_createcluster $PG_VERSION $PG_CLUSTER failed"
        log postgres "created cluster $PG_VERSION/$PG_CLUSTER"
    fi
    local port; port="$(pg_conftool -s "$PG_VERSION" "$PG_CLUSTER" show port)"
    [[ $port == "$PG_PORT" ]] || die postgres "cluster $PG_VERSION/$PG_CLUSTER is configured for port $port," \
        "not FEASTFLOW_PG_PORT=$PG_PORT (change it with: pg_conftool $PG_VERSION $PG_CLUSTER set port $PG_PORT)"
}

pg_start() {
    local start; start="$(now_ms)"
    if ! pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; then
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start </dev/null 9>&- \
            || die postgres "pg_ctlcluster start failed, see /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
        mkdir -p "$(dirname "$PG_MARKER")"
        touch "$PG_MARKER"
    fi
    local deadline=$(( SECONDS + 30 ))
    until pg_ready; do
        (( SECONDS < deadline )) || die postgres "not accepting connections on 127.0.0.1:$PG_PORT after 30 s"
        sleep 0.2
    done
    log postgres "started cluster $PG_VERSION/$PG_CLUSTER on 127.0.0.1:$PG_PORT ($(elapsed "$start"))"
}

# Creates the role and databases that are missing; never alters existing ones.
pg_ensure_role_and_databases() {
    local dbs missing item
    dbs="$(printf "'%s'," "${PG_DATABASES[@]}")"
    missing="$(pg_psql -c "
        SELECT 'role' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE')
        UNION ALL
        SELECT 'db:' || d FROM unnest(ARRAY[${dbs%,}]) AS d
        WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d)")" \
        || die postgres "cannot query the server on port $PG_PORT as the postgres user"
    for item in $missing; do
        case "$item" in
            role)
                pg_psql -c "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
                log postgres "created role $PG_ROLE" ;;
            db:*)
                pg_psql -c "CREATE DATABASE ${item#db:} OWNER $PG_ROLE"
                log postgres "created database ${item#db:}" ;;
        esac
    done
}

pg_up() {
    pg_ensure_installed
    if pg_ready; then
        log postgres "already running on 127.0.0.1:$PG_PORT"
    elif [[ -n $PG_DIR ]]; then
        pg_private_start
    else
        pg_ensure_cluster
        pg_start
    fi
    pg_ensure_role_and_databases
}

pg_down() {
    if [[ ! -f $PG_MARKER ]]; then
        log postgres "left running (not started by this script)"
        return
    fi
    if [[ -n $PG_DIR ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w stop </dev/null >/dev/null || log postgres "not running"
        rm -f "$PG_MARKER"
        return
    fi
    if pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; then
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast </dev/null
        log postgres "stopped cluster $PG_VERSION/$PG_CLUSTER"
    else
        log postgres "not running"
    fi
    rm -f "$PG_MARKER"
}

pg_status() {
    local note=""
    [[ -f $PG_MARKER ]] && note=" (started by infra.sh)"
    if command -v pg_isready >/dev/null && pg_ready; then log postgres "up 127.0.0.1:$PG_PORT$note"
    else log postgres "down"; return 1; fi
}

# ---------------------------------------------------------------- Kafka

# True when a Kafka broker answers an ApiVersions (v0) request: the port alone opens before the
# broker has caught up with the controller and starts serving requests.
kafka_answers() {
    python3 - "$KAFKA_PORT" <<'PY'
import socket, struct, sys
client_id = b"feastflow-infra"
body = struct.pack(">hhih", 18, 0, 4242, len(client_id)) + client_id
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.settimeout(2)
        s.sendall(struct.pack(">i", len(body)) + body)
        head = b""
        while len(head) < 10:
            chunk = s.recv(10 - len(head))
            if not chunk:
                sys.exit(1)
            head += chunk
    _size, correlation_id, error_code = struct.unpack(">iih", head)
    sys.exit(0 if correlation_id == 4242 and error_code == 0 else 1)
except OSError:
    sys.exit(1)
PY
}

kafka_ensure_tools() {
    command -v java >/dev/null || apt_install kafka openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install kafka maven
}

# The classpath points into ~/.m2, so it is also rebuilt when a jar has gone missing.
kafka_classpath_fresh() {
    [[ -s $KAFKA_CLASSPATH && $KAFKA_CLASSPATH -nt $KAFKA_SRC/pom.xml ]] || return 1
    local jar
    while IFS= read -r -d: jar; do
        [[ -f $jar ]] || return 1
    done < <(tr -d '\n' <"$KAFKA_CLASSPATH"; printf ':')
}

kafka_resolve_classpath() {
    kafka_classpath_fresh && return
    local start; start="$(now_ms)"
    log kafka "resolving jars from Maven Central (cached in ~/.m2)"
    mkdir -p "$KAFKA_LOGS"
    if ! mvn -q -B -f "$KAFKA_SRC/pom.xml" dependency:build-classpath -Dmdep.includeScope=runtime \
            -Dmdep.outputFile="$KAFKA_CLASSPATH.tmp" </dev/null >"$KAFKA_LOGS/maven.log" 2>&1; then
        tail -n 20 "$KAFKA_LOGS/maven.log" >&2
        die kafka "maven could not resolve the classpath, see $KAFKA_LOGS/maven.log"
    fi
    mv "$KAFKA_CLASSPATH.tmp" "$KAFKA_CLASSPATH"
    log kafka "classpath resolved ($(tr ':' '\n' <"$KAFKA_CLASSPATH" | wc -l) jars, $(elapsed "$start"))"
}

kafka_render_config() {
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@LOG_DIRS@|$KAFKA_LOG_DIRS|g" \
        "$KAFKA_SRC/server.properties" >"$KAFKA_PROPS"
}

kafka_java() {
    java "${KAFKA_JAVA_LOG_OPTS[@]}" -cp "$(<"$KAFKA_CLASSPATH")" "$@"
}

# Formats the storage once; the cluster id is generated once and kept in the data folder.
kafka_format_storage() {
    [[ -f $KAFKA_LOG_DIRS/meta.properties ]] && return
    if [[ ! -s $KAFKA_CLUSTER_ID ]]; then
        kafka_java -Xmx128m kafka.tools.StorageTool random-uuid >"$KAFKA_CLUSTER_ID.tmp" 2>>"$KAFKA_LOGS/format.log"
        mv "$KAFKA_CLUSTER_ID.tmp" "$KAFKA_CLUSTER_ID"
    fi
    local cluster_id; cluster_id="$(tr -d '[:space:]' <"$KAFKA_CLUSTER_ID")"
    kafka_java -Xmx256m kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" -g \
        </dev/null >>"$KAFKA_LOGS/format.log" 2>&1 \
        || die kafka "storage format failed, see $KAFKA_LOGS/format.log"
    log kafka "formatted storage in $KAFKA_LOG_DIRS (cluster id $cluster_id)"
}

kafka_launch() {
    # setsid: the broker must outlive the calling shell and its process group (CI steps, Ctrl-C).
    # The pid is written by the process itself, so it is right whether or not setsid forks.
    # shellcheck disable=SC2016  # $$ and $@ belong to the inner sh
    nohup setsid sh -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PIDFILE" \
        java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        "${KAFKA_JAVA_LOG_OPTS[@]}" -cp "$(<"$KAFKA_CLASSPATH")" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
}

# kafka_wait START_MS [PIDFILE] — waits for the broker to answer; fails early when its process dies.
kafka_wait() {
    local start="$1" pidfile="${2:-}" deadline=$(( SECONDS + KAFKA_START_TIMEOUT ))
    until kafka_answers; do
        if [[ -n $pidfile ]] && ! pid_alive "$pidfile" kafka.Kafka && (( $(now_ms) - start > 2000 )); then
            grep -h -E '^\[[^]]*\] (ERROR|FATAL) |^Caused by:' "$KAFKA_LOGS/server.log" "$KAFKA_LOGS/kafka.out" \
                2>/dev/null | tail -n 8 >&2 || true
            die kafka "broker process exited during startup, see $KAFKA_LOGS/"
        fi
        (( SECONDS < deadline )) || die kafka "no answer on 127.0.0.1:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s, see $KAFKA_LOGS/"
        sleep 1
    done
}

kafka_up() {
    if kafka_answers; then
        log kafka "already running on 127.0.0.1:$KAFKA_PORT"
        return
    fi
    local start; start="$(now_ms)"
    if pid_alive "$KAFKA_PIDFILE" kafka.Kafka; then
        log kafka "still starting (pid $(<"$KAFKA_PIDFILE")), waiting"
        kafka_wait "$start" "$KAFKA_PIDFILE"
        log kafka "running on 127.0.0.1:$KAFKA_PORT ($(elapsed "$start"))"
        return
    fi
    if tcp_open "$KAFKA_PORT"; then
        log kafka "port $KAFKA_PORT is open but not answering yet (not started by this script), waiting"
        kafka_wait "$start"
        log kafka "running on 127.0.0.1:$KAFKA_PORT ($(elapsed "$start"))"
        return
    fi
    tcp_open "$KAFKA_CONTROLLER_PORT" \
        && die kafka "controller port $KAFKA_CONTROLLER_PORT is taken (set FEASTFLOW_KAFKA_CONTROLLER_PORT)"
    kafka_ensure_tools
    mkdir -p "$KAFKA_LOG_DIRS" "$KAFKA_LOGS"
    kafka_resolve_classpath
    kafka_render_config
    kafka_format_storage
    start="$(now_ms)"
    kafka_launch
    sleep 0.2
    kafka_wait "$start" "$KAFKA_PIDFILE"
    log kafka "started on 127.0.0.1:$KAFKA_PORT (pid $(<"$KAFKA_PIDFILE"), $(elapsed "$start"))"
}

kafka_down() {
    stop_pidfile kafka "$KAFKA_PIDFILE" kafka.Kafka 30
}

kafka_status() {
    if kafka_answers; then log kafka "up 127.0.0.1:$KAFKA_PORT$(owner_note "$KAFKA_PIDFILE" kafka.Kafka)"
    else log kafka "down"; return 1; fi
}

# ---------------------------------------------------------------- main

owner_note() {
    if pid_alive "$1" "$2"; then printf ' (pid %s, started by infra.sh)' "$(<"$1")"
    else printf ' (not started by infra.sh)'; fi
}

usage() { echo "usage: $0 up|down|status [redis|postgres|kafka]..." >&2; exit 2; }

# The services named, in the order given (default: all; down stops Kafka first, as before).
main() {
    (( $# >= 1 )) || usage
    local action="$1" service rc=0; shift
    local services=("$@")
    if (( ${#services[@]} == 0 )); then
        if [[ $action == down ]]; then services=(kafka redis postgres); else services=(redis postgres kafka); fi
    fi
    for service in "${services[@]}"; do
        case "$service" in redis|kafka) ;; postgres) service=pg ;; *) usage ;; esac
    done
    case "$action" in
        up) take_lock infra; ensure_python3 infra ;;
        down) take_lock infra ;;
        status) ensure_python3 infra ;;
        *) usage ;;
    esac
    for service in "${services[@]}"; do
        [[ $service == postgres ]] && service=pg
        "${service}_${action}" || rc=1
    done
    return "$rc"
}

main "$@"
