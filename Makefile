# Feast Flow: `make run` brings up the whole local stack and seeds demo data; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
FEASTFLOW := $(VENV)/bin/feastflow
DATA := $(or $(FEASTFLOW_DATA),$(CURDIR)/.data)
export FEASTFLOW_DATA := $(DATA)

.PHONY: help deps browser up run stop status test lint typecheck check bench rollout token-admin token-customer logs

help:
	@echo "make run    - start Kafka, Redis, PostgreSQL, a worker, two API pods and the gateway; seed demo data"
	@echo "make stop   - stop everything make run started"
	@echo "make test   - the same set-up, then the whole test suite"
	@echo "make check  - ruff and mypy --strict"
	@echo "make rollout [REF=git-ref] - rolling deploy of the running stack, one unit at a time"
	@echo "make bench  - the menu latency and order throughput benchmarks (print tables)"

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

deps: $(VENV)/.installed browser

# Debian's Chromium for tests/browser: Playwright drives it, so no browser is downloaded (idempotent).
browser:
	@deploy/local/browser.sh

$(DATA)/jwt-secret:
	@mkdir -p $(DATA)
	@$(PY) -c "import secrets; print(secrets.token_urlsafe(48))" > $@
	@chmod 600 $@

up: deps $(DATA)/jwt-secret
	deploy/local/infra.sh up
	$(FEASTFLOW) topics
	$(FEASTFLOW) migrate
	deploy/local/apps.sh up
	deploy/local/gateway.sh up
	$(FEASTFLOW) seed --url http://127.0.0.1:8080
	@deploy/local/welcome.sh

run: up
	@echo "Following logs; Ctrl-C stops the whole stack."
	@trap 'echo; $(MAKE) --no-print-directory stop; exit 0' INT TERM; \
	  tail -n 0 -F $(DATA)/logs/*.log & wait

stop:
	-deploy/local/gateway.sh down
	-deploy/local/apps.sh down
	deploy/local/infra.sh down

status:
	-deploy/local/infra.sh status
	-deploy/local/apps.sh status
	-deploy/local/gateway.sh status

test: up
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check models streams api feastflow tests bench

typecheck:
	$(VENV)/bin/mypy

check: deps lint typecheck

rollout: deps
	$(FEASTFLOW) rollout $(if $(REF),--ref $(REF))

bench: up
	$(PY) -m bench.latency
	$(PY) -m bench.orders

token-admin:
	@$(FEASTFLOW) token --role admin

token-customer:
	@$(FEASTFLOW) token --role customer
