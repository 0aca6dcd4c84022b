# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv when missing, runs the whole workflow on the synthetic demo corpus
#   make test   -> creates .venv when missing, runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
SNAKEMAKE_ARGS ?=

.PHONY: demo test lint venv clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-nodeps.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned (pip takes them from this machine's disk; uv would download them)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[workflow,dev]'
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

demo: venv
	$(VENV)/bin/snakemake --cores $(CORES) --resources gpu=1 $(SNAKEMAKE_ARGS)
	$(PY) -m au_transfer.cli summary results

test: venv
	$(VENV)/bin/ruff check src tests workflow/scripts bench
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests workflow/scripts bench
	$(VENV)/bin/snakemake --lint

bench: venv
	$(PY) bench/faces.py
	$(PY) bench/features.py

clean:
	rm -rf results .snakemake
