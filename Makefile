# The two commands of the quick start: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch comes from the machine's wheel cache here; pin it in the install step, not in pyproject.
TORCH  := torch==2.14.1 torchvision==0.29.1
DEBS   := dataset-fashion-mnist openclipart-svg openclipart-png chromium chromium-driver
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
INTEGRATIONS := integrations/langchain-mmgr integrations/llama-index-retrievers-mmgr integrations/mmgr-haystack

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint bench train-head examples-data debs clean

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed-dev debs
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check mmgr_qdrant tests benchmarks integrations scripts examples
	$(BIN)/mypy mmgr_qdrant

# Every benchmark prints a table and, with --json, one JSON line last.
bench: $(VENV)/.installed-dev debs
	for m in $$(cd benchmarks && ls [a-z]*.py | sed 's/\.py$$//'); do echo "== benchmarks.$$m"; $(BIN)/python -m benchmarks.$$m --json || exit 1; done

# Reproduce the shipped lit:default head (and its record) from the Debian data packages.
train-head: $(VENV)/.installed-dev debs
	$(BIN)/python scripts/train_lit_head.py --threads 1 --with-benchmark

# Regenerate examples/data from the held-out part of openclipart.
examples-data: $(VENV)/.installed-dev debs
	$(BIN)/python scripts/make_examples.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[all]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml $(wildcard integrations/*/pyproject.toml)
	$(BIN)/pip install -q -e '.[dev]'
	for p in $(INTEGRATIONS); do [ ! -f $$p/pyproject.toml ] || $(BIN)/pip install -q -e "$$p[dev]" || exit 1; done
	touch $@

# Debian packages with the data the benchmarks and data tests read (Fashion-MNIST, openclipart),
# and the headless browser the web page test drives (chromium, chromium-driver).
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) mmgr_data .pytest_cache build *.egg-info
