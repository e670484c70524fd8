# The two commands of the quick start: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch comes from the machine's wheel cache here; pin it in the install step, not in pyproject.
TORCH  := torch==2.14.1 torchvision==0.29.1
DEBS   := dataset-fashion-mnist openclipart-svg openclipart-png chromium chromium-driver
# The LiT head's wider training and held-out data (make lit-data): icon themes from Debian, emoji
# artwork from npm tarballs pinned here, all unpacked under data/ (git-ignored, never committed).
LIT_DEBS := papirus-icon-theme breeze-icon-theme adwaita-icon-theme tuxpaint-stamps-default
NPM_DIR  := data/npm
# Iconify's JSON packages of open artwork (name@version): more emoji and icon styles, named icons.
ICONIFY  := emojione@1.2.3 streamline-emojis@1.2.4 game-icons@1.2.4 flat-color-icons@1.2.3
LIT_DATA := data/lit-data
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
INTEGRATIONS := integrations/langchain-mmgr integrations/llama-index-retrievers-mmgr integrations/mmgr-haystack

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint bench train-head examples-data debs lit-debs lit-data clean

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
bench: $(VENV)/.installed-dev debs lit-data
	for m in $$(cd benchmarks && ls [a-z]*.py | sed 's/\.py$$//'); do echo "== benchmarks.$$m"; $(BIN)/python -m benchmarks.$$m --json || exit 1; done

# Reproduce the shipped lit:default head (and its record, with every candidate tried) from lit-data.
train-head: $(VENV)/.installed-dev lit-data
	$(BIN)/python scripts/train_lit_head.py --out-dir $(LIT_DATA) --sweep --threads 1 --with-benchmark

# Captioned training images and the held-out sets for the LiT head (see scripts/prepare_data.py).
lit-data: $(VENV)/.installed-dev debs lit-debs $(NPM_DIR)/.unpacked-v2
	$(BIN)/python scripts/prepare_data.py --out $(LIT_DATA) --fmnist-per-class 1000

$(NPM_DIR)/.unpacked-v2:
	mkdir -p $(NPM_DIR)/twemoji $(NPM_DIR)/emoji-datasource $(NPM_DIR)/openmoji $(NPM_DIR)/fluentui-emoji $(NPM_DIR)/emojilib
	cd $(NPM_DIR) && npm pack --silent @twemoji/svg@15.0.0 emoji-datasource@16.0.0 openmoji@17.0.0 fluentui-emoji@1.3.0 emojilib@4.0.3 >/dev/null
	cd $(NPM_DIR) && npm pack --silent $(foreach s,$(ICONIFY),@iconify-json/$(s)) >/dev/null
	for s in $(ICONIFY); do n=$${s%@*}; mkdir -p $(NPM_DIR)/$$n && tar xzf $(NPM_DIR)/iconify-json-$$n-$${s#*@}.tgz -C $(NPM_DIR)/$$n package/icons.json package/info.json || exit 1; done
	tar xzf $(NPM_DIR)/emojilib-4.0.3.tgz -C $(NPM_DIR)/emojilib package/dist/emoji-en-US.json package/LICENSE
	tar xzf $(NPM_DIR)/twemoji-svg-15.0.0.tgz -C $(NPM_DIR)/twemoji
	tar xzf $(NPM_DIR)/emoji-datasource-16.0.0.tgz -C $(NPM_DIR)/emoji-datasource package/emoji.json package/LICENSE
	tar xzf $(NPM_DIR)/fluentui-emoji-1.3.0.tgz -C $(NPM_DIR)/fluentui-emoji package/icons/flat package/icons/high-contrast package/LICENSE
	tar xzf $(NPM_DIR)/openmoji-17.0.0.tgz -C $(NPM_DIR)/openmoji package/color/svg package/data/openmoji.json package/LICENSE.txt
	touch $@

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

lit-debs:
	@missing=""; for p in $(LIT_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) mmgr_data .pytest_cache build *.egg-info
