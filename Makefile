# The two commands of the README: `make serve` and `make test`. Each one creates
# .venv and installs what it needs on first use (again when pyproject.toml or
# constraints.txt change); torch is pinned by constraints.txt.
VENV ?= .venv
PIP = $(VENV)/bin/pip install --quiet --constraint constraints.txt

.PHONY: serve test lint

serve: $(VENV)/.installed-all
	$(VENV)/bin/aimass serve --demo

# Coverage counts the CLI and server subprocesses too; their data files go beside this one.
# Two xdist workers, one module each at a time (module fixtures are built once), in collection
# order: tests/conftest.py puts the modules with slow tests first so quick ones fill the end.
test: $(VENV)/.installed-dev lint
	COVERAGE_FILE=$(CURDIR)/.coverage $(VENV)/bin/pytest --cov -n 2 --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

# torch first, alone, so nothing later can pull another build of it.
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[$*]'
	touch $@
