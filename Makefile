# Feast Flow: `make run` brings up the whole local stack and seeds demo data; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
FEASTFLOW := $(VENV)/bin/feastflow
DATA := $(or $(FEASTFLOW_DATA),$(CURDIR)/.data)
export FEASTFLOW_DATA := $(DATA)

.PHONY: layers diagrams screenshots help deps browser up run stop status test lint typecheck check bench rollout token-admin token-customer logs deploy-tools helm

help:
	@echo "make run    - start Kafka, Redis, PostgreSQL, a worker, two API pods, the gateway and Prometheus; seed demo data"
	@echo "make stop   - stop everything make run started"
	@echo "make status - what runs: each unit's pid, uptime and restart count (the supervisor restarts crashed units)"
	@echo "make test   - the same set-up, then the whole test suite"
	@echo "make check  - ruff and mypy --strict"
	@echo "make deploy-tools - helm, actionlint, kubernetes-validate, checkov, hadolint for tests/deploy (cached)"
	@echo "make rollout [REF=git-ref] - rolling deploy of the running stack, one unit at a time"
	@echo "make diagrams - render the architecture diagrams (docs/diagrams) to PNG and SVG"
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

# FEASTFLOW_INFRA=external: Kafka, Redis and PostgreSQL are already running on their local ports
# (CI's service containers), so infra.sh does not install or start them.
up: deps $(DATA)/jwt-secret
ifneq ($(FEASTFLOW_INFRA),external)
	deploy/local/infra.sh up
endif
	$(FEASTFLOW) topics
	$(FEASTFLOW) migrate
	deploy/local/apps.sh up
	deploy/local/gateway.sh up
	deploy/local/prometheus.sh up
	$(FEASTFLOW) seed --url http://127.0.0.1:8080
	@deploy/local/welcome.sh

run: up
	@echo "Following logs; Ctrl-C stops the whole stack."
	@trap 'echo; $(MAKE) --no-print-directory stop; exit 0' INT TERM; \
	  tail -n 0 -F $(DATA)/logs/*.log & wait

stop:
	-deploy/local/prometheus.sh down
	-deploy/local/gateway.sh down
	-deploy/local/apps.sh down
	deploy/local/infra.sh down

status:
	-deploy/local/infra.sh status
	-deploy/local/apps.sh status
	-deploy/local/gateway.sh status
	-deploy/local/prometheus.sh status

test: up deploy-tools
	$(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check models core streams api ops tests bench deploy docs
	$(VENV)/bin/ruff format --check models core streams api ops tests bench deploy docs

typecheck:
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy docs/diagrams/code_layers.py

# The layers (README, "Layout"): contracts in setup.cfg [importlinter].
layers:
	$(VENV)/bin/lint-imports setup.cfg

check: deps lint typecheck layers

rollout: deps
	$(FEASTFLOW) rollout $(if $(REF),--ref $(REF))

bench: up
	$(PY) -m bench.latency
	$(PY) -m bench.orders

# Render docs/diagrams/*.dot to PNG and SVG (Graphviz), recording each source's digest beside its renders.
diagrams: deps
	$(PY) docs/diagrams/code_layers.py > docs/diagrams/code-layers.dot
	docs/diagrams/render.sh

# Refresh the README's screenshots (docs/screenshots) from the browser tests.
screenshots: up
	FEASTFLOW_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/browser

token-admin:
	@$(FEASTFLOW) token --role admin

token-customer:
	@$(FEASTFLOW) token --role customer

# Tools of the deploy checks (tests/deploy), pinned. They are built or installed once into a cache that
# every checkout on the machine shares, and linked into $(DATA)/tools/bin, where the tests look.
DEPLOY_TOOLS ?= $(HOME)/.cache/feastflow/deploy-tools
HELM_VERSION := v3.22.0
ACTIONLINT_VERSION := v1.7.12
HELM := $(DEPLOY_TOOLS)/helm-$(HELM_VERSION)/helm
ACTIONLINT := $(DEPLOY_TOOLS)/actionlint-$(ACTIONLINT_VERSION)/actionlint
TOOLS_LOCK := deploy/tools/requirements.txt
TOOLS_VENV := $(DEPLOY_TOOLS)/venv-$(firstword $(shell sha256sum $(TOOLS_LOCK) | cut -c1-16))
TOOLS_BIN := $(DATA)/tools/bin
export DEPLOY_TOOLS_BIN := $(TOOLS_BIN)

$(HELM):
	@command -v go >/dev/null || { echo "deploy-tools: Go is needed to build helm (go install)" >&2; exit 1; }
	GOBIN=$(@D) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(ACTIONLINT):
	@command -v go >/dev/null || { echo "deploy-tools: Go is needed to build actionlint (go install)" >&2; exit 1; }
	GOBIN=$(@D) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

# The lock's hash is in the virtualenv's name, so a changed lock makes a new one.
$(TOOLS_VENV)/.installed:
	@test -x $(TOOLS_VENV)/bin/python || python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r $(TOOLS_LOCK)
	@touch $@

# helm alone, for the CD workflow's re-render of deploy/k8s.
helm: $(HELM)
	@mkdir -p $(TOOLS_BIN)
	@ln -sf $(HELM) $(TOOLS_BIN)/

deploy-tools: $(HELM) $(ACTIONLINT) $(TOOLS_VENV)/.installed
	@mkdir -p $(TOOLS_BIN)
	@ln -sf $(HELM) $(ACTIONLINT) $(TOOLS_BIN)/
	@ln -sf $(addprefix $(TOOLS_VENV)/bin/,checkov kubernetes-validate hadolint shellcheck) $(TOOLS_BIN)/
