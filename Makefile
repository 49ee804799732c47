# `make run`: the whole platform on this machine (embedded default: SQLite, in-memory layers,
# file-system Celery broker; upstream clouds answered by the local simulators, sourcing on).
# `make test`: the test suite (Postgres when DATABASE_URL is set).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
MANAGE := $(BIN)/python manage.py

.PHONY: run test install install-dev lint typecheck migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when a requirements file changed.
$(VENV)/.installed-base: requirements/base.txt requirements/agent.txt | $(BIN)/python
	$(PIP) install -r requirements/base.txt -r requirements/agent.txt
	touch $@

$(VENV)/.installed-dev: requirements/dev.txt $(VENV)/.installed-base
	$(PIP) install -r requirements/dev.txt
	touch $@

install: $(VENV)/.installed-base
install-dev: $(VENV)/.installed-dev

migrate: install
	mkdir -p var
	$(MANAGE) migrate --noinput
	$(MANAGE) sync_schedule

# The local agent registers with a bootstrap token generated once per checkout.
var/dev.env:
	mkdir -p var
	token="bt_$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))')"; \
	  printf 'NODE_BOOTSTRAP_TOKEN=%s\nGPU_AGENT_BOOTSTRAP_TOKEN=%s\n' "$$token" "$$token" > $@
	chmod 600 $@

run: migrate var/dev.env
	$(MANAGE) create_demo_operator
	PATH="$(CURDIR)/$(BIN):$$PATH" \
	  SOURCING_SIMULATORS=$${SOURCING_SIMULATORS:-true} SOURCING_ENABLED=$${SOURCING_ENABLED:-true} \
	  AUTO_PROVISIONING_ENABLED=$${AUTO_PROVISIONING_ENABLED:-true} \
	  $(BIN)/honcho -e var/dev.env -f Procfile.dev start

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy .

clean:
	rm -rf var
