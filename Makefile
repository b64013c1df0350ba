# Set-up on a fresh machine: `make run` (installs, runs the newest sample cycle end to end)
# and `make test` (installs, runs every test). Every variable of contract 3 is honoured.

SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9

export INVOICES_HOME ?= $(CURDIR)/.data
export AIRFLOW_HOME ?= $(INVOICES_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
# Bill cycles start at Bucharest midnight: dates given to the CLI (backfill --from-date) mean
# Bucharest dates, and the UI shows Bucharest time.
export AIRFLOW__CORE__DEFAULT_TIMEZONE ?= Europe/Bucharest
# Airflow's own database is SQLite under AIRFLOW_HOME unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
# names another: then a long busy timeout, so its processes wait for each other's writes.
ifeq ($(filter sqlite%,$(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)),$(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN))
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS ?= billing.airflow_db.CONNECT_ARGS
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC ?= billing.airflow_db.CONNECT_ARGS
endif
export AIRFLOW__LOGGING__LOGGING_LEVEL ?= WARNING

BENCH_ARGS ?=  # e.g. BENCH_ARGS="--customers 20000 --ledger sqlite"
N ?= 20000  # customers of the end-to-end row of make bench (through the DAG); N=1000000 for the full run
CYCLE ?= $(shell ls sample_data/cycles 2>/dev/null | sort | tail -n 1)

# `make airflow`: the UI's port, and where the running Airflow's session id is kept.
AIRFLOW_PORT ?= 8080
AIRFLOW_PID := $(AIRFLOW_HOME)/standalone.sid
AIRFLOW_LOG_LEVEL ?= INFO
# Airflow pools: how many notify tasks (chunks) may send at once over every running cycle.
# Each e-mail task keeps up to 4 SMTP connections; each SMS task paces itself at
# INVOICES_SMS_RATE. So the relay sees at most 4 x SMTP_POOL_SLOTS connections.
SMTP_POOL_SLOTS ?= 2
SMS_POOL_SLOTS ?= 1

# `make portal`: the self-service page (contract 6). Workers share codes, sessions and rate limits
# through the ledger database (or Redis, INVOICES_REDIS_URL). Behind the operator's proxy, set
# PORTAL_FORWARDED_ALLOW_IPS to the proxy's address so client addresses (rate limits) and the
# scheme (Secure cookies) come from its X-Forwarded-* headers.
PORTAL_PORT ?= 8000
PORTAL_HOST ?= 127.0.0.1
PORTAL_WORKERS ?= 2
PORTAL_FORWARDED_ALLOW_IPS ?= 127.0.0.1

# `make cluster`: Airflow on the CeleryExecutor with two workers (docs/cluster.md). Redis
# (CLUSTER_REDIS_URL) and PostgreSQL (CLUSTER_PG_URL) are the machine's; the ports are the
# API server's and moto's S3 server's. Everything it starts logs under $(INVOICES_HOME)/cluster/.
CLUSTER_PORT ?= 8280
CLUSTER_S3_PORT ?= 5055

.PHONY: install browser airflow-db pools run airflow airflow-stop cluster cluster-stop portal efactura-sim screenshots test lint bench constraints clean

install: $(VENV)/.installed $(VENV)/.compiled

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

# Bytecode for every installed package, once per install (about 15 s on two cores). uv writes
# none, and where PYTHONDONTWRITEBYTECODE is set Python never caches it either: then every
# process compiled the ~2,300 modules Airflow imports again: 1.5 to 3 s of each `airflow` command,
# task process and test worker. Python reads these files even with that variable set. A file
# that does not compile only stays uncached, as before: it does not fail the install.
$(VENV)/.compiled: $(VENV)/.installed
	@$(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
		> "$(VENV)/compileall.log" 2>&1 || echo "some installed files did not compile (see $(VENV)/compileall.log)"
	touch $@

# Debian's Chromium for the browser tests of the self-service page: Playwright drives it, since
# Playwright's own browser download cannot reach its host from our machines. The package lists a
# machine has are usually enough, so apt-get update runs only when the install fails without it.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		[ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null \
			|| { echo "the browser tests need $(CHROMIUM): run make browser as root, or apt-get install chromium"; exit 1; }; \
		mkdir -p "$(INVOICES_HOME)"; log="$(INVOICES_HOME)/chromium-install.log"; \
		echo "installing Debian's chromium for the browser tests (log: $$log)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > "$$log" 2>&1 \
			|| { apt-get update -qq >> "$$log" 2>&1 \
				&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >> "$$log" 2>&1; } \
			|| { tail -n 20 "$$log"; echo "apt-get could not install chromium"; exit 1; }; \
		test -x $(CHROMIUM) || { echo "chromium was installed but $(CHROMIUM) is missing"; exit 1; }; }

# Airflow's own database (SQLite under $(AIRFLOW_HOME) unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN).
airflow-db: install
	@mkdir -p "$(INVOICES_HOME)" "$(AIRFLOW_HOME)"
	@$(BIN)/airflow db migrate > "$(INVOICES_HOME)/airflow-migrate.log" 2>&1 \
		|| { cat "$(INVOICES_HOME)/airflow-migrate.log"; echo "airflow db migrate failed"; exit 1; }
	@$(BIN)/python -m billing.airflow_db

# The pools the notify tasks run in; `airflow pools set` updates them when they exist.
# (`make run` needs none: `airflow dags test` runs the tasks in-process, outside the pools.)
pools: airflow-db
	@$(BIN)/airflow pools set invoices_smtp $(SMTP_POOL_SLOTS) "e-mail notify tasks at once, all cycles" > /dev/null
	@$(BIN)/airflow pools set invoices_sms $(SMS_POOL_SLOTS) "SMS notify tasks at once, all cycles" > /dev/null

run: airflow-db
	@test -n "$(CYCLE)" || { echo "no cycle: set CYCLE=<cycle_id>"; exit 2; }
	@echo "running cycle $(CYCLE) through Airflow (log: $(INVOICES_HOME)/last-run.log)"
	@$(BIN)/airflow dags test invoice_cycle --conf '{"cycle_id": "$(CYCLE)"}' > "$(INVOICES_HOME)/last-run.log" 2>&1 \
		|| { grep -E "Error|error" "$(INVOICES_HOME)/last-run.log" | grep -v "^\s*File " | tail -n 5; \
		     echo "run of cycle $(CYCLE) failed: full log in $(INVOICES_HOME)/last-run.log"; exit 1; }
	@$(BIN)/invoices report $(CYCLE)

# Airflow with its UI on the embedded setup (LocalExecutor, SQLite), in the background: scheduler,
# DAG processor, triggerer and API server in a session of their own (setsid), which
# `make airflow-stop` ends. Task logs at AIRFLOW_LOG_LEVEL, so the report task's table shows.
airflow: pools
	@if [ -f "$(AIRFLOW_PID)" ] && pgrep -s "$$(cat "$(AIRFLOW_PID)")" > /dev/null; then \
		echo "Airflow is already running (session $$(cat "$(AIRFLOW_PID)")): make airflow-stop"; exit 1; fi
	@$(BIN)/python -c "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', $(AIRFLOW_PORT)))" 2>/dev/null \
		|| { echo "port $(AIRFLOW_PORT) is taken: stop what runs there, or AIRFLOW_PORT=<port> make airflow"; exit 1; }
	@$(BIN)/python -c "import sys; from airflow.dag_processing.dagbag import DagBag; \
		bag = DagBag(dag_folder='$(AIRFLOW__CORE__DAGS_FOLDER)'); \
		[print(f'{file}: {error}') for file, error in bag.import_errors.items()]; \
		sys.exit(1 if bag.import_errors else 0)" > "$(INVOICES_HOME)/airflow-parse.log" 2>&1 \
		|| { tail -n 20 "$(INVOICES_HOME)/airflow-parse.log"; echo "the DAGs do not parse"; exit 1; }
	@$(BIN)/airflow dags reserialize > "$(INVOICES_HOME)/airflow-reserialize.log" 2>&1 \
		|| { tail -n 20 "$(INVOICES_HOME)/airflow-reserialize.log"; echo "airflow dags reserialize failed"; exit 1; }
	@AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
		AIRFLOW__API__HOST=$${AIRFLOW__API__HOST:-127.0.0.1} AIRFLOW__API__WORKERS=$${AIRFLOW__API__WORKERS:-1} \
		AIRFLOW__CORE__PARALLELISM=$${AIRFLOW__CORE__PARALLELISM:-8} \
		AIRFLOW__LOGGING__LOGGING_LEVEL=$(AIRFLOW_LOG_LEVEL) \
		PATH="$(BIN):$$PATH" setsid $(BIN)/airflow standalone > "$(INVOICES_HOME)/airflow.log" 2>&1 < /dev/null & \
		echo $$! > "$(AIRFLOW_PID)"
	@echo "starting Airflow (log: $(INVOICES_HOME)/airflow.log)"
	@session=$$(cat "$(AIRFLOW_PID)"); for i in $$(seq 1 240); do \
		kill -0 "$$session" 2>/dev/null || { tail -n 30 "$(INVOICES_HOME)/airflow.log"; \
			pkill -KILL -s "$$session"; rm -f "$(AIRFLOW_PID)"; echo "Airflow stopped while starting"; exit 1; }; \
		$(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health', timeout=2)" \
			2>/dev/null && break; \
		[ $$i -lt 240 ] || { pkill -KILL -s "$$session"; rm -f "$(AIRFLOW_PID)"; \
			echo "Airflow did not answer on port $(AIRFLOW_PORT) in 4 minutes: stopped it"; exit 1; }; \
		sleep 1; done
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)"
	@passwords="$(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated"; \
	if [ -f "$$passwords" ]; then $(BIN)/python -c "import json, sys; \
		[print(f'login: {user} / password: {secret}') for user, secret in json.load(open(sys.argv[1])).items()]" \
		"$$passwords"; else echo "login: as [core] simple_auth_manager_users configures it"; fi
	@echo "DAGs start paused: unpause invoice_cycle in the UI or with 'airflow dags unpause invoice_cycle'"
	@echo "stop with: make airflow-stop"

# Ends every process of the session `make airflow` started (task processes included, which
# Airflow puts in process groups of their own), gently then for good.
# A killed process is gone only once it is reaped: on a loaded machine that takes a moment,
# so the last loop waits for the session to be empty before saying it stopped.
airflow-stop:
	@if [ ! -f "$(AIRFLOW_PID)" ]; then echo "Airflow is not running (no $(AIRFLOW_PID))"; exit 0; fi; \
	session=$$(cat "$(AIRFLOW_PID)"); \
	if ! pgrep -s "$$session" -f airflow > /dev/null; then \
		rm -f "$(AIRFLOW_PID)"; echo "Airflow is not running (session $$session has ended)"; exit 0; fi; \
	pkill -TERM -s "$$session"; \
	for i in $$(seq 1 30); do pgrep -s "$$session" > /dev/null || break; sleep 1; done; \
	pkill -KILL -s "$$session"; \
	for i in $$(seq 1 20); do pgrep -s "$$session" > /dev/null || break; sleep 0.5; done; \
	rm -f "$(AIRFLOW_PID)"; echo "Airflow stopped (session $$session)"

# Airflow on the CeleryExecutor (api-server, scheduler, dag-processor, two Celery workers, moto's
# S3 server), then a run of the sample cycle CYCLE on it; ends with the line
# "workers: <name>=<chunk tasks>, ...". billing/cluster.py does the work.
cluster: install
	@$(BIN)/python -m billing.cluster start --cycle "$(CYCLE)" \
		--api-port $(CLUSTER_PORT) --s3-port $(CLUSTER_S3_PORT)

# Stops every process `make cluster` started, after a partial start too.
cluster-stop:
	@$(BIN)/python -m billing.cluster stop

# The ANAF e-Factura simulator (tests/support/anaf_simulator.py) on 127.0.0.1, for a demo of
# invoices efactura submit|sync: it prints the API address and a refresh token to set as
# INVOICES_EFACTURA_URL, INVOICES_EFACTURA_TOKEN_URL and INVOICES_EFACTURA_REFRESH_TOKEN.
EFACTURA_SIM_PORT ?= 8091
efactura-sim: install
	@$(BIN)/python -m tests.support.anaf_simulator --port $(EFACTURA_SIM_PORT)

portal: install
	@mkdir -p "$(INVOICES_HOME)"
	@echo "self-service page on http://$(PORTAL_HOST):$(PORTAL_PORT) over $(INVOICES_HOME) ($(PORTAL_WORKERS) workers; Ctrl-C stops it)"
	@$(BIN)/uvicorn portal.app:create_app --factory --host $(PORTAL_HOST) --port $(PORTAL_PORT) \
		--workers $(PORTAL_WORKERS) --proxy-headers --forwarded-allow-ips "$(PORTAL_FORWARDED_ALLOW_IPS)" \
		--no-access-log --log-config portal/logging.json

# The pictures of docs/portal.md: the browser test's walk, saved at phone size (390 px wide).
screenshots: install browser
	PORTAL_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/portal/test_browser.py

# Two pytest-xdist workers, one a core of the machines in use: the Airflow suites (the backfill
# with a real scheduler alone takes two minutes) run beside the rest, not after it. A worker
# takes a whole test file at a time (loadfile), so a module's Airflow run is made once; the
# files come in the order tests/conftest.py gives them (the Airflow files first, then those with
# slow tests), not re-sorted by their number of tests. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: install browser
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Style, and the house plan: import-linter's contracts in pyproject.toml fail on any import that
# points up the layers (README.md, "The house plan").
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

bench: install
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev,bench]'
	@$(BIN)/python -c "import weasyprint" 2>/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& echo "installing Pango for the WeasyPrint comparison" \
		&& apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; } || true
	$(BIN)/python -m renderers.bench
	$(BIN)/python -m renderers.efactura.bench
	$(BIN)/python -m storage.bench
	$(BIN)/python -m notifiers.bench
	$(BIN)/python -m billing.bench $(BENCH_ARGS)
	$(BIN)/python -m portal.bench
	$(BIN)/python -m billing.bench_e2e --customers $(N) --xml both

# Re-pin every package after changing dependencies in pyproject.toml.
constraints:
	$(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable > constraints.txt

clean:
	rm -rf $(INVOICES_HOME)
