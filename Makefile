# Set-up and day-to-day commands. `make run` and `make test` are all a fresh machine needs
# (Python 3.11+ and make); every target installs what it uses into .venv first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-12)

# Tests never use a real secret; production must set its own SECRET_KEY.
TEST_ENV := SECRET_KEY=test-only-not-secret DEBUG=0

.PHONY: install run test bench soak backup restore schema schema-check lint typecheck check lock clean-data graphiql-assets

install: $(STAMP)

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "Python 3.11 or newer is required ($(PYTHON) is $$($(PYTHON) --version 2>&1)); try make PYTHON=python3.12"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	@rm -f $(VENV)/.installed-* && touch $@

## Serve on http://$(HOST):$(PORT)/ (default 127.0.0.1:8000) with migrations and demo data.
run: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py serve --migrate --seed-demo-if-empty

## The test suite, on the embedded PostgreSQL or on DATABASE_URL when set.
test: install schema-check
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

## The benchmark (docs/PERFORMANCE.md): BENCH_EVENTS, BENCH_SCALE=1, BENCH_DURATION, ... (bench/__main__.py);
## PEER=postgraphile then compares every shape with PostGraphile 5 on the same data (bench/peer.py, npm).
bench: install
	@case "$(PEER)" in ""|postgraphile) ;; *) echo "unknown PEER=$(PEER); the peer is postgraphile"; exit 2;; esac
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || \
		{ echo "make bench needs wrk: apt-get install wrk (or your system's package)"; exit 1; }
	$(PY) -m bench
	@if [ "$(PEER)" = postgraphile ]; then $(PY) -m bench.peer; fi

## Load and a database restart at once, then checks that nothing was lost (bench/soak.py): SOAK_SECONDS (120), ...
soak: install
	$(PY) -m bench.soak

## Back up the database (pg_dump) to FILE (default backups/<database>-<UTC time>.dump).
backup: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py backup_db $(if $(FILE),-o $(FILE))

## Restore FILE into a new database DATABASE on the same server (pg_restore).
restore: install
	@test -n "$(FILE)" -a -n "$(DATABASE)" || { echo "usage: make restore FILE=backups/x.dump DATABASE=new_name"; exit 2; }
	DEBUG=$${DEBUG:-1} $(PY) manage.py restore_db $(FILE) --database $(DATABASE)

## Regenerate the published contracts from the code: schema.graphql (GraphQL) and
## audit-details.schema.json (JSON Schema of each event type's details).
schema: install
	$(TEST_ENV) $(PY) manage.py export_schema graphql_api.schema --path schema.graphql
	@echo >> schema.graphql
	$(TEST_ENV) $(PY) manage.py export_details_schema --path audit-details.schema.json

## Fail when either contract differs from what the code serves (run `make schema`, review, commit).
schema-check: install
	@$(TEST_ENV) $(PY) manage.py export_schema graphql_api.schema --path $(VENV)/schema.graphql.new >/dev/null
	@echo >> $(VENV)/schema.graphql.new
	@diff -u schema.graphql $(VENV)/schema.graphql.new || \
		{ echo "schema.graphql is out of date: run 'make schema', review the diff, commit it."; exit 1; }
	@$(TEST_ENV) $(PY) manage.py export_details_schema --path $(VENV)/audit-details.schema.json.new
	@diff -u audit-details.schema.json $(VENV)/audit-details.schema.json.new || \
		{ echo "audit-details.schema.json is out of date: run 'make schema', review the diff, commit it."; exit 1; }
	@echo "schema.graphql and audit-details.schema.json match the code."

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(TEST_ENV) $(PY) -m mypy .

check: lint typecheck

## Re-pin dependencies after editing pyproject.toml (universal lock for Python 3.11-3.13).
lock: install
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes --no-header -o requirements.lock

## Fetch GraphiQL's pinned files with npm into graphql_api/static/graphiql (maintainers; the files are committed).
graphiql-assets: install
	$(PY) -m graphql_api.assets

## Delete the embedded database (stop `make run` first; it is recreated on next use).
clean-data:
	rm -rf .data
