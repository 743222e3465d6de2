# The two commands: `make demo` and `make test`. Each creates or reuses .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench browser clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# `vital demo` is the same two steps as one command.
demo: install
	test -f vital-demo/vital.toml || HF_HUB_OFFLINE=1 $(VENV)/bin/vital init vital-demo --demo
	HF_HUB_OFFLINE=1 $(VENV)/bin/vital run vital-demo/vital.toml

# Two workers; a test file stays on one (its module fixtures are built once).
test: install browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) vital-demo .pytest_cache
