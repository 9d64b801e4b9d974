#!/usr/bin/env bash
# Printed at the end of `make run`: where everything is and how to get a token.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
worker_port="$(sed -n 's/^FEASTFLOW_WORKER_WEB_PORT=//p' "$DATA_DIR/run/worker.env" 2>/dev/null || true)"
worker_port="${FEASTFLOW_WORKER_WEB_PORT:-${worker_port:-6066}}"
gateway="http://127.0.0.1:${FEASTFLOW_GATEWAY_PORT:-8080}"
pods=""
for port in $(current_api_ports); do pods+="http://127.0.0.1:$port  "; done
# Signed-in links: a token in the URL fragment never leaves the browser (no request, no log carries it).
feastflow="$REPO_DIR/.venv/bin/feastflow"
customer_page="$gateway/app/"
admin_page="$gateway/admin/"
if customer_token="$("$feastflow" token --role customer --sub local-customer 2>/dev/null)" \
        && admin_token="$("$feastflow" token --role admin --sub local-admin 2>/dev/null)"; then
    customer_page+="#token=$customer_token"
    admin_page+="#token=$admin_token"
fi
cat <<TEXT

Feast Flow is up.
  gateway (customers, admins)  $gateway
  API pods                     $pods
  worker operator views        http://127.0.0.1:$worker_port/feastflow/
  Prometheus                   http://127.0.0.1:${FEASTFLOW_PROMETHEUS_PORT:-9090}
  OpenAPI                      $gateway/v1/openapi.json

Open in a browser (signed in for 24 hours, the dashboard 8; the token stays in that tab):
  customer page    $customer_page
  admin dashboard  $admin_page

Tokens:   .venv/bin/feastflow token --role admin      (or --role customer [--sub NAME])
Watch:    curl -N $gateway/v1/cities/blr/menu/stream
Change:   curl -X POST $gateway/v1/admin/events -H "Authorization: Bearer \$(.venv/bin/feastflow token --role admin)" \\
            -H "Content-Type: application/json" \\
            -d '{"type":"price.set","city":"blr","restaurant_id":"blr-r01","item_id":"blr-r01-i001","price_cents":4200}'
Status:   make status           (pids, uptimes, restarts: a crashed worker or API pod is restarted)
Deploy:   make rollout          (rolling restart; REF=<git ref> to roll to another version)
Stop:     make stop
TEXT
