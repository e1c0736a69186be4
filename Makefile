# musicmap — set-up, demo, tests, benchmarks.
#   make demo   sets up .venv and runs `musicmap demo` (serves http://127.0.0.1:8050)
#   make check  ruff, mypy and the fast tests: the loop after every change (docs/testing.md)
#   make test   sets up .venv, installs ffmpeg/chromium when missing, runs ruff, mypy and every test (CI)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip's local mirrors print one 'is ignored' warning per package: keep the log readable.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.musicmap-installed
# torch first, pinned to the CPU wheel; then the project (its torch range is already satisfied).
TORCH_SPEC ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_MISSING = $(strip $(foreach pair,ffmpeg:ffmpeg $(1),$(if $(shell command -v $(word 1,$(subst :, ,$(pair))) 2>/dev/null),,$(word 2,$(subst :, ,$(pair))))))
export HF_HUB_OFFLINE ?= 1

.PHONY: setup system-deps test-deps demo check test test-slow lint bench bench-large clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml requirements-musicnn.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(QUIET_PIP)
	$(BIN)/pip install --quiet -e ".[dev,ray]" $(QUIET_PIP)
	@# MusiCNN's weights: their own hash-pinned step, without the wheel's impossible dependencies.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-musicnn.txt $(QUIET_PIP)
	@touch $(STAMP)

# Debian packages: ffmpeg decodes m4a/AAC and other formats soundfile cannot read.
system-deps:
	@missing="$(call APT_MISSING,)"; if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# The browser tests drive Debian's Chromium through chromedriver; the JavaScript OpenSubsonic client
# (npm subsonic-api, pinned in tests/js/package-lock.json) runs on Debian's Node.js.
test-deps: setup
	@missing="$(call APT_MISSING,chromium:chromium chromedriver:chromium-driver node:nodejs npm:npm)"; if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@[ -d tests/js/node_modules/subsonic-api ] || npm ci --prefix tests/js --no-audit --no-fund --silent

demo: setup
	$(BIN)/musicmap demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# The tests that need no browser, Ray, kill trial, wheel build, real music, process of their own or
# long model run (pyproject.toml's markers; docs/testing.md).
CHECK_MARKS := not (slow or browser or ray or kills or install or subprocess or real_music or heavy)

check: setup lint
	$(BIN)/python -m pytest -m "$(CHECK_MARKS)" $(PYTEST_ARGS)

test: test-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: test-deps
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_pipeline.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_maest.py --variant 30 --tracks 4 --windows-per-track 8
	$(BIN)/python benchmarks/bench_musicnn.py quality
	$(BIN)/python benchmarks/bench_musicnn.py speed
	$(BIN)/python benchmarks/bench_index.py scale
	$(BIN)/python benchmarks/bench_index.py efficiency
	$(BIN)/python benchmarks/bench_index.py long
	$(BIN)/python benchmarks/bench_store.py index --sizes 10000,100000 --dims 768,2304
	$(BIN)/python benchmarks/bench_store.py sql
	$(BIN)/python benchmarks/bench_load.py load
	$(BIN)/python benchmarks/bench_load.py concurrency
	$(BIN)/python benchmarks/bench_map.py fit
	$(BIN)/python benchmarks/bench_map.py place
	$(BIN)/python benchmarks/bench_map.py threads
	$(BIN)/python benchmarks/bench_small_map.py
	$(BIN)/python benchmarks/bench_scale.py engines
	$(BIN)/python benchmarks/bench_scale.py shards
	$(BIN)/python benchmarks/bench_explorer.py --sizes 10000,100000 --screenshots test-artifacts/explorer/bench
	$(BIN)/python benchmarks/bench_taste.py listener --grid
	$(BIN)/python benchmarks/bench_taste.py recording

# The 1M-vector rows (HNSW: about 10 min for 768-d, 40 for 2304-d, and 20 GB of memory at 2304-d;
# IVF-PQ: 4 and 13 min; the explorer at 1M tracks: about 15 min, 10 of them writing the store).
bench-large: setup
	$(BIN)/python benchmarks/bench_store.py index --sizes 1000000 --dims 768,2304
	$(BIN)/python benchmarks/bench_store.py index --sizes 1000000 --dims 768,2304 --kind ivfpq
	$(BIN)/python benchmarks/bench_explorer.py --sizes 1000000 --screenshots test-artifacts/explorer/bench

clean:
	rm -rf $(VENV) musicmap-demo .mypy_cache .ruff_cache .pytest_cache
