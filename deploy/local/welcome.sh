#!/usr/bin/env bash
# Printed at the end of `make run`: where everything is and how to get a token.
set -euo pipefail
cat <<TEXT

Feast Flow is up.
  gateway (customers, admins)  http://127.0.0.1:${FEASTFLOW_GATEWAY_PORT:-8080}
  API pods                     http://127.0.0.1:8081  http://127.0.0.1:8082
  worker operator views        http://127.0.0.1:${FEASTFLOW_WORKER_WEB_PORT:-6066}/feastflow/ready/
  OpenAPI                      http://127.0.0.1:8080/v1/openapi.json

Tokens:   .venv/bin/feastflow token --role admin      (or --role customer [--sub NAME])
Watch:    curl -N http://127.0.0.1:8080/v1/cities/blr/menu/stream
Change:   curl -X POST http://127.0.0.1:8080/v1/admin/events -H "Authorization: Bearer \$(.venv/bin/feastflow token --role admin)" \\
            -d '{"type":"price.set","city":"blr","restaurant_id":"blr-r01","item_id":"blr-r01-i001","price_cents":4200}'
Stop:     make stop
TEXT
