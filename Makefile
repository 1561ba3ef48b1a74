# The distillation loop as targets. Quick start: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := runs/demo
# Extras installed into the local environment; add `trt` on a TensorRT box.
EXTRAS ?= train,export,dev

.PHONY: setup test demo clean

setup: $(STAMP)

# Reinstalls only when the dependency set changes, so `make test` stays idempotent.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
