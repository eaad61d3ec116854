# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
OUT    ?= out/demo
export GX_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1

.PHONY: setup browser demo lint test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/coclabel demo --out $(OUT)

# The report's browser test needs Debian's chromium; installed here when missing (root + apt).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: chromium missing and not installable here; the browser test will be skipped"

# Undefined names and unused imports (pyflakes rules).
lint: setup
	$(BIN)/ruff check --select F --exclude .venv .

test: setup browser
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# A local Flink cluster (no Docker) for `--runner FlinkRunner`: docs/ENGINES.md.
.PHONY: flink-up flink-down test-flink
flink-up: setup
	infra/flink/up.sh

flink-down:
	infra/flink/down.sh

# Tests marked flink start and stop the cluster themselves.
test-flink: setup
	$(BIN)/python -m pytest -q -m flink

# The fuzzers' long run: FUZZ_EXAMPLES inputs each (the default suite tries 100), at low CPU
# priority; `--hypothesis-show-statistics` prints the counts. docs/RELIABILITY.md has the results.
FUZZ_EXAMPLES ?= 10000
.PHONY: fuzz
fuzz: setup
	COCLABEL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) nice -n 19 $(BIN)/python -m pytest -q tests/fuzz \
	  --hypothesis-show-statistics

clean:
	rm -rf out .pytest_cache .hypothesis
