# omni: developer entry points. `make demo` and `make test` work on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv lab lab-down lab-status demo test unit lint bench bench-fleet bench-create mutation

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

lab: venv
	bash lab/lab.sh up

lab-down:
	bash lab/lab.sh down

lab-status:
	bash lab/lab.sh status

demo: lab
	bash lab/demo.sh

unit: venv
	$(VENV)/bin/pytest -m 'not lab'

test: lint lab
	OMNI_LAB_REQUIRED=1 $(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check omni tests bench windmill_scripts
	$(VENV)/bin/mypy

# Benchmarks measure and report (bench/RESULTS.md, bench/results.json, README); they never
# fail on a time. `make bench` = single commands, then the fleet; the full fleet run (N = 10,
# 100, 300 tenants, Ansible beside omni) took 42 minutes on the lab: BENCH_FLEET_ARGS narrows it.
BENCH_FLEET_ARGS ?=

bench: lab
	$(VENV)/bin/python bench/run.py
	$(VENV)/bin/python bench/fleet.py $(BENCH_FLEET_ARGS)

bench-fleet: lab
	$(VENV)/bin/python bench/fleet.py $(BENCH_FLEET_ARGS)

# tenant create step by step against the irreducible server work (issue 12, item 1): both
# paths (migrating, template), 3 runs each, plus a py-spy profile; about 10 minutes.
BENCH_CREATE_ARGS ?= --runs 3 --write

bench-create: lab
	$(VENV)/bin/python bench/create_breakdown.py $(BENCH_CREATE_ARGS)

# Mutation testing of the pure core (mutmut 3, config in pyproject's [tool.mutmut]); unit
# tests only, no lab. Prints killed/total per module; fails under 85 %.
mutation: venv
	@$(PY) -c 'import mutmut' 2>/dev/null || $(VENV)/bin/pip install -q 'mutmut>=3.8,<4'
	$(PY) tools/mutation_report.py --min 85
