# envoy-presign: build, run and test. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV    := .venv
PY      := $(VENV)/bin/python
TARGET  := wasm32-wasip1
WASM    := target/$(TARGET)/release/envoy_presign.wasm
STAMP   := $(VENV)/.installed

.PHONY: setup wasm-target build run test unit lint integration vectors clean bench fuzz

## setup: Wasm target + a project-local venv with pinned Envoy, SeaweedFS, boto3, pytest (idempotent)
setup: wasm-target $(STAMP)

wasm-target:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

$(STAMP): requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## build: the release .wasm at target/wasm32-wasip1/release/envoy_presign.wasm
build: wasm-target
	cargo build --release --target $(TARGET)
	@ls -l $(WASM)

## run: SeaweedFS + Envoy with the filter on localhost:10000; Ctrl-C stops both
run: build $(STAMP)
	$(PY) tests/stack.py run

## test: lint, host unit tests, wasm build, integration tests in real Envoy
test: lint unit build integration

unit:
	cargo test --lib

lint: wasm-target
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -- -D warnings

integration: build $(STAMP)
	ENVOY_PRESIGN_REQUIRE_WASM=1 $(PY) -m pytest -q tests/integration

## vectors: regenerate tests/vectors/presign.json with boto3
vectors: $(STAMP)
	$(PY) scripts/gen_vectors.py

clean:
	cargo clean

NOOP_WASM := bench/noop-filter/target/$(TARGET)/release/noop_filter.wasm

## bench: throughput/latency next to passthrough, native signing and a no-op Wasm floor (see bench/)
bench: build $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	cd bench/noop-filter && cargo build --release --target $(TARGET)
	$(PY) bench/run.py

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config canonical cache_entry

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (needs the nightly toolchain; installs cargo-fuzz)
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && cp -n seeds/$$t/* corpus/$$t/ 2>/dev/null; \
	  cargo +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E 'stat::number_of_executed_units|Done|ERROR|SUMMARY' | sed "s/^/$$t: /" || exit 1; \
	  test -z "$$(ls artifacts/$$t 2>/dev/null)" || { echo "$$t: crash artifacts in fuzz/artifacts/$$t"; exit 1; }; \
	done
