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
export AIRFLOW__LOGGING__LOGGING_LEVEL ?= WARNING

BENCH_ARGS ?=  # e.g. BENCH_ARGS="--customers 20000 --ledger sqlite"
CYCLE ?= $(shell ls sample_data/cycles 2>/dev/null | sort | tail -n 1)

# `make airflow`: the UI's port, and where the running Airflow's process group id is kept.
AIRFLOW_PORT ?= 8080
AIRFLOW_PID := $(AIRFLOW_HOME)/standalone.pgid
# Airflow pools: how many notify tasks (chunks) may send at once over every running cycle.
# Each e-mail task keeps up to 4 SMTP connections; each SMS task paces itself at
# INVOICES_SMS_RATE. So the relay sees at most 4 x SMTP_POOL_SLOTS connections.
SMTP_POOL_SLOTS ?= 2
SMS_POOL_SLOTS ?= 1

.PHONY: install airflow-db pools run airflow airflow-stop test lint bench constraints clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

# Airflow's own database (SQLite under $(AIRFLOW_HOME) unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN).
airflow-db: install
	@mkdir -p "$(AIRFLOW_HOME)"
	@$(BIN)/airflow db migrate > "$(INVOICES_HOME)/airflow-migrate.log" 2>&1 \
		|| { cat "$(INVOICES_HOME)/airflow-migrate.log"; echo "airflow db migrate failed"; exit 1; }

# The pools the notify tasks run in; `airflow pools set` updates them when they exist.
pools: airflow-db
	@$(BIN)/airflow pools set invoices_smtp $(SMTP_POOL_SLOTS) "e-mail notify tasks at once, all cycles" > /dev/null
	@$(BIN)/airflow pools set invoices_sms $(SMS_POOL_SLOTS) "SMS notify tasks at once, all cycles" > /dev/null

run: pools
	@test -n "$(CYCLE)" || { echo "no cycle: set CYCLE=<cycle_id>"; exit 2; }
	@echo "running cycle $(CYCLE) through Airflow (log: $(INVOICES_HOME)/last-run.log)"
	@$(BIN)/airflow dags test invoice_cycle --conf '{"cycle_id": "$(CYCLE)"}' > "$(INVOICES_HOME)/last-run.log" 2>&1 \
		|| { grep -E "Error|error" "$(INVOICES_HOME)/last-run.log" | grep -v "^\s*File " | tail -n 5; \
		     echo "run of cycle $(CYCLE) failed: full log in $(INVOICES_HOME)/last-run.log"; exit 1; }
	@$(BIN)/invoices report $(CYCLE)

# Airflow with its UI on the embedded setup (LocalExecutor, SQLite), in the background: scheduler,
# DAG processor, triggerer and API server in one process group, stopped by `make airflow-stop`.
airflow: pools
	@if [ -f "$(AIRFLOW_PID)" ] && kill -0 -- -$$(cat "$(AIRFLOW_PID)") 2>/dev/null; then \
		echo "Airflow is already running (process group $$(cat "$(AIRFLOW_PID)")): make airflow-stop"; exit 1; fi
	@$(BIN)/airflow dags reserialize > "$(INVOICES_HOME)/airflow-reserialize.log" 2>&1 \
		|| { tail -n 20 "$(INVOICES_HOME)/airflow-reserialize.log"; echo "the DAGs do not parse"; exit 1; }
	@AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
		AIRFLOW__API__HOST=$${AIRFLOW__API__HOST:-127.0.0.1} AIRFLOW__API__WORKERS=$${AIRFLOW__API__WORKERS:-1} \
		AIRFLOW__CORE__PARALLELISM=$${AIRFLOW__CORE__PARALLELISM:-8} \
		PATH="$(BIN):$$PATH" setsid $(BIN)/airflow standalone > "$(INVOICES_HOME)/airflow.log" 2>&1 < /dev/null & \
		echo $$! > "$(AIRFLOW_PID)"
	@echo "starting Airflow (log: $(INVOICES_HOME)/airflow.log)"
	@for i in $$(seq 1 240); do \
		kill -0 -- -$$(cat "$(AIRFLOW_PID)") 2>/dev/null || { tail -n 30 "$(INVOICES_HOME)/airflow.log"; \
			echo "Airflow stopped while starting"; rm -f "$(AIRFLOW_PID)"; exit 1; }; \
		$(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health', timeout=2)" \
			2>/dev/null && break; \
		[ $$i -lt 240 ] || { kill -KILL -- -$$(cat "$(AIRFLOW_PID)"); rm -f "$(AIRFLOW_PID)"; \
			echo "Airflow did not answer on port $(AIRFLOW_PORT) in 4 minutes: stopped it"; exit 1; }; \
		sleep 1; done
	@$(BIN)/python -c "import json, sys; users = json.load(open(sys.argv[1])); \
		print('Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)'); \
		[print(f'login: {user} / password: {secret}') for user, secret in users.items()]" \
		"$(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated"
	@echo "DAGs start paused: unpause invoice_cycle in the UI or with 'airflow dags unpause invoice_cycle'"
	@echo "stop with: make airflow-stop"

# Stops the whole process tree of `make airflow` (its process group), gently then for good.
airflow-stop:
	@if [ ! -f "$(AIRFLOW_PID)" ]; then echo "Airflow is not running (no $(AIRFLOW_PID))"; exit 0; fi; \
	group=$$(cat "$(AIRFLOW_PID)"); \
	kill -TERM -- -$$group 2>/dev/null; \
	for i in $$(seq 1 30); do kill -0 -- -$$group 2>/dev/null || break; sleep 1; done; \
	kill -KILL -- -$$group 2>/dev/null; \
	rm -f "$(AIRFLOW_PID)"; echo "Airflow stopped (process group $$group)"

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev,bench]'
	@$(BIN)/python -c "import weasyprint" 2>/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& echo "installing Pango for the WeasyPrint comparison" \
		&& apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; } || true
	$(BIN)/python -m renderers.bench
	$(BIN)/python -m storage.bench
	$(BIN)/python -m notifiers.bench
	$(BIN)/python -m billing.bench $(BENCH_ARGS)

# Re-pin every package after changing dependencies in pyproject.toml.
constraints:
	$(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable > constraints.txt

clean:
	rm -rf $(INVOICES_HOME)
