# MLScope: `make test` on a fresh machine creates .venv, installs pinned deps and runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test unit bench dashboards lint local compose-check clean help

help:
	@echo "make test        run every test (creates $(VENV) with pinned deps)"
	@echo "make bench       print speed/footprint/cost tables against baselines"
	@echo "make dashboards  regenerate dashboards/*.json from the Python sources"
	@echo "make local       run docker-compose.yml natively on 127.0.0.1, no Docker (ARGS=--help: options)"
	@echo "make lint        promtool/amtool/compose/dashboard checks of the shipped configs"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest -m "not integration and not e2e"

bench: $(STAMP)
	$(PY) -m bench

dashboards: $(STAMP)
	$(PY) -m dashboards

lint: $(STAMP)
	$(PY) -m pytest tests/test_rules.py tests/test_alertmanager.py tests/test_prometheus_config.py tests/test_compose.py tests/test_dashboards.py tests/test_k8s.py

local: $(STAMP)
	$(PY) -m mlscope local $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
