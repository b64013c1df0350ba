# Set-up on a fresh machine: `make run` (installs, runs the newest sample cycle end to end)
# and `make test` (installs, runs every test). Every variable of contract 3 is honoured.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9

export INVOICES_HOME ?= $(CURDIR)/.data
export AIRFLOW_HOME ?= $(INVOICES_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
export AIRFLOW__LOGGING__LOGGING_LEVEL ?= WARNING

BENCH_ARGS ?=  # e.g. BENCH_ARGS="--customers 20000 --ledger sqlite"
CYCLE ?= $(shell ls sample_data/cycles 2>/dev/null | sort | tail -n 1)

.PHONY: install run test lint bench constraints clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

run: install
	@test -n "$(CYCLE)" || { echo "no cycle: set CYCLE=<cycle_id>"; exit 2; }
	@mkdir -p "$(INVOICES_HOME)"
	@echo "running cycle $(CYCLE) through Airflow (log: $(INVOICES_HOME)/last-run.log)"
	@$(BIN)/airflow db migrate > "$(INVOICES_HOME)/airflow-migrate.log" 2>&1 \
		|| { cat "$(INVOICES_HOME)/airflow-migrate.log"; echo "airflow db migrate failed"; exit 1; }
	@$(BIN)/airflow dags test invoice_cycle --conf '{"cycle_id": "$(CYCLE)"}' > "$(INVOICES_HOME)/last-run.log" 2>&1 \
		|| { grep -E "Error|error" "$(INVOICES_HOME)/last-run.log" | grep -v "^\s*File " | tail -n 5; \
		     echo "run of cycle $(CYCLE) failed: full log in $(INVOICES_HOME)/last-run.log"; exit 1; }
	@$(BIN)/invoices report $(CYCLE)

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
