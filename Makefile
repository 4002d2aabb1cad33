# make demo: install into .venv (once) and run the CPU-sized benchmark on the synthetic replica
# (the binary task, the same methods under the pose-shift protocol, then the action-unit track of the au suite).
# make test: install into .venv (once) and run the tests.
# make docs: build the documentation site into site/ (mkdocs, strict); make docs-serve: serve it on 127.0.0.1:8000.
VENV ?= .venv
PY := $(VENV)/bin/python
BENCH := $(VENV)/bin/ratspain-bench
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench docs docs-serve clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BENCH) data imbalance
	$(BENCH) run --suite quick --protocol loro,pose-shift
	$(BENCH) run --suite au --task au
	$(BENCH) leaderboard --out leaderboard

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

bench: $(STAMP)
	$(PY) benchmarks/lbp_grid.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf ratspain-runs .pytest_cache site
