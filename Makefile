# The two commands a new user needs: `make demo` and `make test`. Both set the machine up first.
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.slmkit-setup

.PHONY: setup demo test unit lint bench clean

# Re-run set-up when the dependency lists or the set-up scripts change.
$(SETUP_STAMP): pyproject.toml requirements/models.txt requirements/models-pii.txt scripts/setup.sh scripts/llama_cmake_args.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

setup: $(SETUP_STAMP)

# Ingest the example documents into the default knowledge base (only changes on later runs), then ask them.
demo: $(SETUP_STAMP)
	$(VENV)/bin/slmkit ingest examples/docs
	$(VENV)/bin/slmkit ask "How quickly must a lost laptop be reported?"

test: $(SETUP_STAMP) lint
	$(PY) -m pytest

unit: $(SETUP_STAMP)
	$(PY) -m pytest tests/unit -q

lint: $(SETUP_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy slmkit

bench: $(SETUP_STAMP)
	$(PY) benchmarks/slm_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
