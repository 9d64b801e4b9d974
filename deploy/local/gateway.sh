#!/usr/bin/env bash
# Local gateway for Feast Flow: a private nginx master in front of the API pods.
#
#   deploy/local/gateway.sh up|down|status
#
# `up` renders <data>/nginx/nginx.conf, checks it with `nginx -t`, then starts nginx, or reloads it
# when already running (so the set of pods can change). The system nginx service is never touched.
#
#   deploy/local/gateway.sh render   prints the config `up` would install (tests run it on ports of their own)
#
# Environment: FEASTFLOW_DATA (default <repo>/.data), FEASTFLOW_GATEWAY_PORT (8080),
# FEASTFLOW_API_PORTS (API pod ports on 127.0.0.1, space or comma separated, default "8081 8082"),
# per-client limits answered 429 with Retry-After: FEASTFLOW_GATEWAY_STREAMS_PER_CLIENT (20 concurrent SSE
# streams), FEASTFLOW_GATEWAY_READ_RATE (20 GET/s) and _READ_BURST (40), exempting the addresses or CIDRs in
# FEASTFLOW_GATEWAY_EXEMPT (default 127.0.0.1 and 127.0.1.0/24: the local load tools, bench.fanout spreading its
# clients over the latter; set it empty to limit everyone);
# FEASTFLOW_GATEWAY_HEADER_TIMEOUT and _BODY_TIMEOUT (10 s each); FEASTFLOW_GATEWAY_WORKERS (8 nginx workers,
# each with as many connections as the open-file hard limit allows: 8 x 19,744 here, for 50,000 streams).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GATEWAY_PORT="${FEASTFLOW_GATEWAY_PORT:-8080}"
API_PORTS="$(current_api_ports)"
# Per-client limits (see the header). The local load tools (rehearsal, bench) drive hundreds of streams and
# requests per second from 127.0.0.1 (and bench.fanout from 127.0.1.0/24), so those are exempt unless
# FEASTFLOW_GATEWAY_EXEMPT says otherwise.
GATEWAY_EXEMPT="${FEASTFLOW_GATEWAY_EXEMPT-127.0.0.1,127.0.1.0/24}"
STREAMS_PER_CLIENT="${FEASTFLOW_GATEWAY_STREAMS_PER_CLIENT:-20}"
READ_RATE="${FEASTFLOW_GATEWAY_READ_RATE:-20}"
READ_BURST="${FEASTFLOW_GATEWAY_READ_BURST:-40}"
HEADER_TIMEOUT="${FEASTFLOW_GATEWAY_HEADER_TIMEOUT:-10}"
BODY_TIMEOUT="${FEASTFLOW_GATEWAY_BODY_TIMEOUT:-10}"
WORKERS="${FEASTFLOW_GATEWAY_WORKERS:-8}"
WORKER_FILES="$(ulimit -Hn)"
[[ $WORKER_FILES =~ ^[0-9]+$ ]] && (( WORKER_FILES <= 65536 )) || WORKER_FILES=65536
# Each worker's connections (clients and pods) within its open-file limit, leaving room for logs and sockets.
WORKER_CONNECTIONS=$(( WORKER_FILES - 256 ))
BACKLOG="$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)"

NGINX_DIR="$DATA_DIR/nginx"
NGINX_CONF="$NGINX_DIR/nginx.conf"
NGINX_PIDFILE="$NGINX_DIR/nginx.pid"
NGINX_ERROR_LOG="$NGINX_DIR/logs/error.log"

# Quoted heredoc: nginx's own $variables stay literal; @NAME@ placeholders are filled by render_config.
read -r -d '' NGINX_TEMPLATE <<'NGINX' || true
# Rendered by deploy/local/gateway.sh; edits here are overwritten on the next `up`.
@USER@
# Sized for 50,000 SSE streams on a small machine: a proxied stream holds two connections (client and pod), and
# one process may hold at most 20,000 open files here, so the streams are spread over several workers.
worker_processes @WORKERS@;
worker_rlimit_nofile @WORKER_FILES@;
pid @DIR@/nginx.pid;
error_log @DIR@/logs/error.log warn;
# Long-lived SSE streams would otherwise keep old workers alive for up to an hour after reload/quit.
worker_shutdown_timeout 5s;

events {
    worker_connections @WORKER_CONNECTIONS@;
    # A storm queues thousands of connections at once: each wake-up takes all that are waiting.
    multi_accept on;
}

http {
    client_body_temp_path @DIR@/tmp/client_body;
    proxy_temp_path       @DIR@/tmp/proxy;
    fastcgi_temp_path     @DIR@/tmp/fastcgi;
    uwsgi_temp_path       @DIR@/tmp/uwsgi;
    scgi_temp_path        @DIR@/tmp/scgi;

    server_tokens off;
    default_type application/octet-stream;

    # Slow-header and slow-body clients are cut off instead of holding a connection open.
    client_header_timeout @HEADER_TIMEOUT@s;
    client_body_timeout @BODY_TIMEOUT@s;
    send_timeout 30s;
    keepalive_timeout 65s;
    client_max_body_size 2m;
    large_client_header_buffers 4 8k;

    # Keep the caller's request id; otherwise mint one.
    map $http_x_request_id $feastflow_request_id {
        default $http_x_request_id;
        ""      $request_id;
    }

    # The path without its query string: a stream's `?access_token=` must never reach a log.
    map $request_uri $feastflow_path {
        "~^(?<feastflow_bare>[^?]*)" $feastflow_bare;
        default            "-";
    }

    log_format feastflow '$remote_addr [$time_local] "$request_method $feastflow_path $server_protocol" '
                         '$status $body_bytes_sent rid=$feastflow_request_id upstream=$upstream_addr '
                         'upstream_status=$upstream_status rt=$request_time urt=$upstream_response_time';
    access_log @DIR@/logs/access.log feastflow;

    # Per-client limits. Addresses in FEASTFLOW_GATEWAY_EXEMPT (the local load tools' 127.0.0.1 and 127.0.1.0/24 by default)
    # get an empty key, which nginx does not count.
    geo $feastflow_exempt {
        default 0;
@EXEMPT@
    }
    map $feastflow_exempt $feastflow_client {
        1       "";
        default $binary_remote_addr;
    }
    map "$feastflow_exempt $request_method" $feastflow_reader {
        "~^0 (GET|HEAD)$" $binary_remote_addr;
        default           "";
    }
    # Menu reads: the pods mark a menu shareable for a second (Cache-Control: s-maxage=1), so the gateway answers
    # most of them from here, each city's copy refreshed by one request at a time. Keyed by the request line and
    # whether the client takes gzip (normalised below), never by the raw Accept-Encoding, so odd values cannot
    # split the cache.
    proxy_cache_path @DIR@/cache levels=1 keys_zone=feastflow_menus:2m max_size=64m inactive=60s use_temp_path=off;
    # gzip named, bare or with a q above 0: the only Accept-Encoding a menu read passes on; anything else is plain.
    map $http_accept_encoding $feastflow_gzip {
        default "";
        "~*(^|,)\s*gzip\s*(;\s*q=(1(\.0{0,3})?|0?\.[0-9]{0,2}[1-9]))?\s*(,|$)" gzip;
    }
    limit_conn_zone $feastflow_client zone=feastflow_streams:10m;
    limit_req_zone $feastflow_reader zone=feastflow_reads:10m rate=@READ_RATE@r/s;
    limit_conn_status 429;
    limit_req_status 429;
    limit_conn_log_level info;
    limit_req_log_level info;

    # Each connection to a pod leaves from one of 100 loopback addresses (127.0.2.100-199), picked by the
    # connection's serial number. From 127.0.0.1 alone every connect() had to search the ephemeral ports for one
    # not yet paired with that pod, a search that grows with every stream the pod holds: in a drained pod's
    # reconnect storm the kernel's __inet_check_established was a fifth of the machine's CPU (perf).
    map $connection $feastflow_upstream_source {
        "~(?<feastflow_serial_tail>[0-9][0-9])$" 127.0.2.1$feastflow_serial_tail;
        default                                  127.0.2.100;
    }

    upstream feastflow_api {
@SERVERS@
        keepalive 32;
        # Idle connections to the pods are let go after 3 s: a stopping pod waits for that instead of closing them
        # under a request being sent (api/server.py, PEERS_CLOSE_S), as nginx learns a pod stopped only by its
        # refused connects.
        keepalive_timeout 3s;
    }

    server {
        # A reconnect storm (a drained pod's clients all at once) must wait in a queue, not be dropped: with
        # reuseport every worker has its own listen socket and queue (workers x somaxconn in all), and the
        # kernel spreads new connections over them instead of waking whichever worker grabs a shared one.
        listen 127.0.0.1:@PORT@ backlog=@BACKLOG@ reuseport;
        # Request-scoped error lines quote the request line, query string included: only critical ones here.
        error_log @DIR@/logs/error.log crit;

        # Every error nginx itself produces answers the contract's JSON body (the pods' own errors pass as sent).
        # URIs, not named locations: an error met while reading the request line has no location to hand over.
        error_page 400 /__feastflow_errors/400;
        # Malformed framing (an HTTP version or transfer coding nginx does not speak, no length) is the client's.
        error_page 411 501 505 =400 /__feastflow_errors/400;
        error_page 404 /__feastflow_errors/404;
        error_page 405 /__feastflow_errors/405;
        error_page 408 /__feastflow_errors/408;
        error_page 413 /__feastflow_errors/413;
        error_page 414 /__feastflow_errors/414;
        error_page 429 /__feastflow_errors/429;
        error_page 494 =431 /__feastflow_errors/431;
        error_page 500 /__feastflow_errors/500;
        error_page 502 503 504 =503 /__feastflow_errors/503;

        # Every route serves GET (and HEAD) or POST; other methods never reach a pod.
        if ($request_method !~ ^(GET|HEAD|POST)$) {
            return 405;
        }

        location ~ ^/v1/(cities/[^/]+/menu|orders/[^/]+)/stream$ {
            limit_conn feastflow_streams @STREAMS_PER_CLIENT@;
            limit_req zone=feastflow_reads burst=@READ_BURST@ nodelay;
            proxy_pass http://feastflow_api;
@PROXY@
            # Server-sent events: stream every chunk as it comes, keep idle streams open.
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
        }

        location ~ ^/v1/cities/[^/]+/menu$ {
            limit_req zone=feastflow_reads burst=@READ_BURST@ nodelay;
            proxy_pass http://feastflow_api;
@PROXY@
            proxy_set_header Accept-Encoding $feastflow_gzip;
            proxy_cache feastflow_menus;
            proxy_cache_key "$request_uri $feastflow_gzip";
            proxy_ignore_headers Vary;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_use_stale updating;
            proxy_buffering on;
            proxy_buffers 16 16k;
            proxy_read_timeout 30s;
            # HIT, MISS, EXPIRED, UPDATING...: how the gateway answered.
            add_header X-Cache $upstream_cache_status always;
        }

        location / {
            limit_req zone=feastflow_reads burst=@READ_BURST@ nodelay;
            proxy_pass http://feastflow_api;
@PROXY@
            proxy_buffering off;
            proxy_read_timeout 1h;
        }

        location = /__feastflow_errors/400 {
            internal;
            default_type application/json;
            return 400 '{"error":{"code":"bad_request","message":"the request is malformed"}}\n';
        }
        location = /__feastflow_errors/404 {
            internal;
            default_type application/json;
            return 404 '{"error":{"code":"not_found","message":"no such resource"}}\n';
        }
        location = /__feastflow_errors/405 {
            internal;
            default_type application/json;
            add_header Allow "GET, HEAD, POST" always;
            return 405 '{"error":{"code":"method_not_allowed","message":"this method is not served here"}}\n';
        }
        location = /__feastflow_errors/408 {
            internal;
            default_type application/json;
            return 408 '{"error":{"code":"request_timeout","message":"the request was not received in time"}}\n';
        }
        location = /__feastflow_errors/413 {
            internal;
            default_type application/json;
            return 413 '{"error":{"code":"payload_too_large","message":"the body is larger than 2 MiB"}}\n';
        }
        location = /__feastflow_errors/414 {
            internal;
            default_type application/json;
            return 414 '{"error":{"code":"uri_too_long","message":"the URL is too long"}}\n';
        }
        location = /__feastflow_errors/429 {
            internal;
            default_type application/json;
            add_header Retry-After 1 always;
            return 429 '{"error":{"code":"rate_limited","message":"too many requests or streams from this client"}}\n';
        }
        location = /__feastflow_errors/431 {
            internal;
            default_type application/json;
            return 431 '{"error":{"code":"headers_too_large","message":"the request headers are too large"}}\n';
        }
        location = /__feastflow_errors/500 {
            internal;
            default_type application/json;
            return 500 '{"error":{"code":"internal","message":"the gateway failed"}}\n';
        }
        location = /__feastflow_errors/503 {
            internal;
            default_type application/json;
            add_header Retry-After 2 always;
            return 503 '{"error":{"code":"unavailable","message":"no API pod is available; retry"}}\n';
        }
    }
}
NGINX

# The proxy settings every location shares.
read -r -d '' PROXY_SETTINGS <<'NGINX' || true
            proxy_http_version 1.1;
            proxy_bind $feastflow_upstream_source;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-Id $feastflow_request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # The gateway's own: a pod's copy would be repeated, or (from a cached answer) another request's.
            proxy_hide_header X-Request-Id;
            add_header X-Request-Id $feastflow_request_id always;
            # Retry another pod only for failures before a response; "non_idempotent" is deliberately
            # absent, so a POST that may have reached a pod is never sent twice.
            proxy_next_upstream error timeout http_502 http_503;
            # A pod that is down refuses at once; a hung one must not stall the request for 60 s. 5 s, not less: a
            # pod busy taking in a connection storm can take seconds to accept.
            proxy_connect_timeout 5s;
            chunked_transfer_encoding on;
NGINX

ensure_nginx() {
    command -v nginx >/dev/null || apt_install gateway nginx
}

# Fills API_PORT_LIST from FEASTFLOW_API_PORTS (in this shell: a die in a subshell would not stop us).
parse_api_ports() {
    local port
    read -r -a API_PORT_LIST <<<"${API_PORTS//,/ }"
    (( ${#API_PORT_LIST[@]} > 0 )) || die gateway "FEASTFLOW_API_PORTS is empty"
    for port in "${API_PORT_LIST[@]}"; do
        [[ $port =~ ^[0-9]+$ ]] || die gateway "bad port '$port' in FEASTFLOW_API_PORTS"
    done
}

# Fills EXEMPT_LIST from FEASTFLOW_GATEWAY_EXEMPT and checks that every limit is a whole number.
parse_limits() {
    local entry name
    read -r -a EXEMPT_LIST <<<"${GATEWAY_EXEMPT//,/ }"
    for entry in "${EXEMPT_LIST[@]}"; do
        [[ $entry =~ ^[0-9a-fA-F:.]+(/[0-9]+)?$ ]] || die gateway "bad address '$entry' in FEASTFLOW_GATEWAY_EXEMPT"
    done
    for name in STREAMS_PER_CLIENT READ_RATE READ_BURST HEADER_TIMEOUT BODY_TIMEOUT WORKERS; do
        [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die gateway "FEASTFLOW_GATEWAY_${name} must be a positive whole number"
    done
}

render_config() {
    local servers="" port user="" exempt="" entry
    for port in "${API_PORT_LIST[@]}"; do
        # max_fails=0: a failed connection never takes a pod out of the rotation. The request moves on to the
        # next pod anyway (proxy_next_upstream), and a stopped pod refuses at once; but in a connection storm one
        # connect that took too long marked a pod down for everyone, then the other, and thousands got 503s.
        servers+="        server 127.0.0.1:$port max_fails=0;"$'\n'
    done
    for entry in "${EXEMPT_LIST[@]}"; do
        exempt+="        $entry 1;"$'\n'
    done
    # Workers must write request-body temp files under the root-owned data folder.
    (( EUID == 0 )) && user="user root;"
    local conf="$NGINX_TEMPLATE"
    conf="${conf//@USER@/$user}"
    conf="${conf//@DIR@/$NGINX_DIR}"
    conf="${conf//@PORT@/$GATEWAY_PORT}"
    conf="${conf//@SERVERS@/${servers%$'\n'}}"
    conf="${conf//@EXEMPT@/${exempt%$'\n'}}"
    conf="${conf//@PROXY@/$PROXY_SETTINGS}"
    conf="${conf//@STREAMS_PER_CLIENT@/$STREAMS_PER_CLIENT}"
    conf="${conf//@READ_RATE@/$READ_RATE}"
    conf="${conf//@READ_BURST@/$READ_BURST}"
    conf="${conf//@HEADER_TIMEOUT@/$HEADER_TIMEOUT}"
    conf="${conf//@BODY_TIMEOUT@/$BODY_TIMEOUT}"
    conf="${conf//@WORKERS@/$WORKERS}"
    conf="${conf//@WORKER_FILES@/$WORKER_FILES}"
    conf="${conf//@WORKER_CONNECTIONS@/$WORKER_CONNECTIONS}"
    conf="${conf//@BACKLOG@/$BACKLOG}"
    printf '%s\n' "$conf"
}

nginx_cmd() { nginx -p "$NGINX_DIR/" -e "$NGINX_ERROR_LOG" "$@"; }

gateway_running() { pid_alive "$NGINX_PIDFILE" "nginx: master"; }

# Writes the new config only when `nginx -t` accepts it, so a bad render never replaces a working one.
install_config() {
    mkdir -p "$NGINX_DIR"/{logs,tmp,cache}
    render_config >"$NGINX_CONF.new"
    if ! nginx_cmd -t -q -c "$NGINX_CONF.new"; then
        die gateway "rendered config rejected by nginx -t: $NGINX_CONF.new"
    fi
    mv "$NGINX_CONF.new" "$NGINX_CONF"
}

# Worker processes of MASTER that still accept connections (not "worker process is shutting down").
accepting_workers() {
    local pid
    while read -r pid; do
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" =~ ^nginx:\ worker\ process\ *$ ]] && echo "$pid"
    done < <(awk -v master="$1" '$4 == master { print $1 }' /proc/[0-9]*/stat 2>/dev/null)
    return 0
}

# Old workers keep taking new connections until the master has started new ones, so return only
# once they stopped: a caller that changed the pods and sends a request right away must hit the new set.
reload_and_wait() {
    local master old_workers deadline=$(( SECONDS + 10 ))
    master="$(<"$NGINX_PIDFILE")"
    old_workers="$(accepting_workers "$master")"
    nginx_cmd -c "$NGINX_CONF" -s reload || die gateway "reload failed, see $NGINX_ERROR_LOG"
    while grep -qxF -f <(printf '%s\n' "$old_workers") <(accepting_workers "$master"); do
        (( SECONDS < deadline )) || die gateway "old workers still accepting 10 s after reload, see $NGINX_ERROR_LOG"
        sleep 0.05
    done
}

gateway_up() {
    ensure_nginx
    parse_api_ports
    parse_limits
    install_config
    local pods="${API_PORT_LIST[*]}"
    if gateway_running; then
        reload_and_wait
        log gateway "reloaded on 127.0.0.1:$GATEWAY_PORT (pid $(<"$NGINX_PIDFILE"), pods: $pods)"
        return
    fi
    tcp_open "$GATEWAY_PORT" && die gateway "port $GATEWAY_PORT is taken by another process"
    nginx_cmd -c "$NGINX_CONF" </dev/null >>"$NGINX_DIR/logs/nginx.out" 2>&1 9>&- \
        || die gateway "nginx failed to start, see $NGINX_ERROR_LOG"
    local deadline=$(( SECONDS + 10 ))
    until gateway_running && tcp_open "$GATEWAY_PORT"; do
        (( SECONDS < deadline )) || die gateway "not listening on $GATEWAY_PORT after 10 s, see $NGINX_ERROR_LOG"
        sleep 0.1
    done
    log gateway "started on 127.0.0.1:$GATEWAY_PORT (pid $(<"$NGINX_PIDFILE"), pods: $pods)"
}

gateway_down() {
    if ! gateway_running; then
        log gateway "not running (nothing started by this script)"
        return
    fi
    local pid; pid="$(<"$NGINX_PIDFILE")"
    nginx_cmd -c "$NGINX_CONF" -s quit || true
    # worker_shutdown_timeout bounds a graceful quit at ~5 s; beyond that fall back to signals.
    if wait_pid_gone "$pid" 10; then
        rm -f "$NGINX_PIDFILE"
        log gateway "stopped (pid $pid)"
    else
        stop_pidfile gateway "$NGINX_PIDFILE" "nginx: master" 5
    fi
}

gateway_status() {
    if gateway_running; then
        log gateway "up 127.0.0.1:$GATEWAY_PORT (pid $(<"$NGINX_PIDFILE"))"
    else
        log gateway "down"
        return 1
    fi
}

usage() { echo "usage: $0 up|down|status|render" >&2; exit 2; }

main() {
    [[ $# == 1 ]] || usage
    case "$1" in
        up) take_lock gateway; ensure_python3 gateway; gateway_up ;;
        down) take_lock gateway; gateway_down ;;
        status) gateway_status ;;
        render) parse_api_ports; parse_limits; render_config ;;
        *) usage ;;
    esac
}

main "$@"
