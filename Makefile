# envoy-presign: build, run and test. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV    := .venv
PY      := $(VENV)/bin/python
TARGET  := wasm32-wasip1
WASM    := target/$(TARGET)/release/envoy_presign.wasm
STAMP   := $(VENV)/.installed
# Test-only proxy-wasm filter that plants bytes in the cache's shared data.
WRITER  := tests/fixtures/shared-data-writer

.PHONY: setup wasm-target prometheus-tools browser-tools media-tools compose-tools test-tools build run run-https test unit lint rules integration vectors clean bench bench-instructions fuzz fuzz-quick soak mutants mutants-diff alertmanager-tools registry-tools images up up-https down manifests-crd-check

.PHONY: help check scripts-test

## help: this list: every documented target and its description, from the Makefile's `## target:` comments
help:
	@python3 scripts/make_help.py --default $(.DEFAULT_GOAL) $(firstword $(MAKEFILE_LIST))

## setup: Wasm target, a project-local venv with pinned Envoy, SeaweedFS, boto3, pytest,
## Debian's prometheus (promtool; the metrics tests), alertmanager, docker-registry and
## docker-compose (the Docker test), chromium (the browser tests), ffmpeg (the media tests), cargo-mutants
## and cargo-fuzz (idempotent)
setup: wasm-target $(STAMP) prometheus-tools alertmanager-tools registry-tools browser-tools media-tools compose-tools test-tools

CARGO_MUTANTS_VERSION := 27.1.0
CARGO_FUZZ_VERSION    := 0.13.2

# cargo-mutants and cargo-fuzz, pinned, from crates.io (about 4 minutes of compiling once).
test-tools:
	@cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants $(CARGO_MUTANTS_VERSION)' || \
	  cargo install cargo-mutants --version $(CARGO_MUTANTS_VERSION) --locked
	@cargo fuzz --version 2>/dev/null | grep -q ' $(CARGO_FUZZ_VERSION)$$' || \
	  cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

# Offline fallback (CI without rustup's server): the rust-std component shipped beside the
# project, for rustc 1.95.0 only, checked against its published sha256.
OFFLINE_STD := ../shared/toolchain/rust-std-1.95.0-wasm32-wasip1.tar.xz
OFFLINE_STD_SHA256 := e491b82d6854a93b216b505ec5df256f20374c3cc0f70df610a5a8d6243675df

wasm-target:
	@sysroot=$$(rustc --print sysroot); \
	if [ -d "$$sysroot/lib/rustlib/$(TARGET)/lib" ]; then exit 0; fi; \
	timeout 300 rustup target add $(TARGET) && exit 0; \
	echo "rustup could not add $(TARGET); trying the offline copy $(OFFLINE_STD)"; \
	rustc --version | grep -q '^rustc 1\.95\.0 ' || { echo "the offline copy fits rustc 1.95.0 only"; exit 1; }; \
	echo "$(OFFLINE_STD_SHA256)  $(OFFLINE_STD)" | sha256sum -c - && \
	tar -xJf $(OFFLINE_STD) -C "$$sysroot/lib/rustlib" && \
	test -d "$$sysroot/lib/rustlib/$(TARGET)/lib"

# $(call apt_tool,<commands>,<package>,<service>): installs Debian's <package> unless every
# one of <commands> is there. A package that starts a service where an init system runs (no
# policy-rc.d denying it) has that service stopped and disabled: the tests start their own
# servers on free ports (Debian's prometheus would otherwise hold :9090).
define apt_tool
	@for c in $(1); do command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  set -e; apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2); \
	  if [ -z "$(3)" ]; then :; \
	  elif [ -d /run/systemd/system ]; then systemctl disable --now $(3).service || true; \
	  elif [ -x /etc/init.d/$(3) ]; then /etc/init.d/$(3) stop || true; update-rc.d $(3) disable || true; fi; \
	fi
endef

# promtool and prometheus: the rules' tests, the metrics and report tests.
prometheus-tools:
	$(call apt_tool,promtool prometheus,prometheus,prometheus)

.PHONY: alerting report report-test

# Alertmanager and amtool: make alerting, the compose stack and the Docker test.
alertmanager-tools:
	$(call apt_tool,prometheus-alertmanager amtool,prometheus-alertmanager,prometheus-alertmanager)

# Debian's OCI registry: the Docker test pushes the plugin image to it and pulls it back.
registry-tools:
	$(call apt_tool,docker-registry,docker-registry,docker-registry)

# Chromium, for test_redirect.py's browser test (run --headless --no-sandbox --disable-gpu,
# without background networking, driven over the DevTools protocol).
browser-tools:
	$(call apt_tool,chromium,chromium,)

# ffmpeg and ffprobe, for test_media.py: they make the MP4, HLS and DASH fixtures and read
# them back through Envoy as a transcoder or a player would.
media-tools:
	$(call apt_tool,ffmpeg ffprobe,ffmpeg,)

# docker-compose (Debian's, v1), for make up / make down and the Docker test that runs them.
compose-tools:
	$(call apt_tool,docker-compose,docker-compose,)

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

## run-https: the same with the store behind TLS: a test CA made at start (tests/testca.py),
## SeaweedFS serving S3 over https, Envoy's origin cluster envoy/origin-https.yaml's (verified)
run-https: build $(STAMP)
	$(PY) tests/stack.py run-https

## images: the stand-in images (Envoy, SeaweedFS, Prometheus, Alertmanager) from this
## machine's binaries: no registry is needed (docker/standin_images.py)
images: $(STAMP) prometheus-tools alertmanager-tools
	$(PY) docker/standin_images.py

COMPOSE_PROJECT ?= envoy-presign
COMPOSE := docker-compose -p $(COMPOSE_PROJECT) -f docker/compose.yaml

## up: docker/compose.yaml (Envoy with the filter, SeaweedFS with a seeded bucket, Prometheus,
## Alertmanager) on 127.0.0.1; prints what to try. `make down` removes it all.
up: build images compose-tools
	$(COMPOSE) up -d --build
	$(PY) docker/up.py

# up-https's test CA, certificate and key (outside git, one directory per project).
COMPOSE_TLS_DIR = $(CURDIR)/target/compose-https/$(COMPOSE_PROJECT)

## up-https: `make up` with the store behind TLS: a new test CA and a certificate for `seaweedfs`
## in target/compose-https/<project>/ (tests/testca.py), SeaweedFS serving S3 over https too
## (docker/compose.https.yaml), Envoy's origin cluster envoy/origin-https.yaml's
## (docker/envoy/envoy-https.yaml). Each run makes a new CA, so the containers are recreated.
## `make down` removes it all, the directory included.
up-https: build images compose-tools
	$(PY) docker/up.py --make-certs $(COMPOSE_TLS_DIR)
	COMPOSE_TLS_DIR=$(COMPOSE_TLS_DIR) $(COMPOSE) -f docker/compose.https.yaml up -d --build --force-recreate
	$(PY) docker/up.py --https $(COMPOSE_TLS_DIR)

down:
	$(COMPOSE) down -v --remove-orphans
	rm -rf $(COMPOSE_TLS_DIR)

# make test's stages, in order. scripts/stages.py runs each as `$(MAKE) <stage>`, prints its
# duration as it ends and a table (stage, seconds, status) at the end, and stops at the first
# stage that fails (exit status non-zero). `make test TEST_STAGES="unit rules"` runs a few.
TEST_STAGES := lint unit scripts-test mutants-diff fuzz-quick build rules integration alerting report-test

## test: lint, host unit tests, the scripts' tests, mutants of the changed core, a short fuzz run,
## wasm build, Prometheus rules, integration tests in real Envoy, alerting, the report; each stage
## timed as it ends, a table of them at the end; stops at the first failing stage
test:
	@python3 scripts/stages.py --make "$(MAKE)" --name test -- $(TEST_STAGES)

## check: the quick gate: `make lint` (fmt, clippy for the host and wasm32-wasip1), `make unit`
## and `make build`, each timed; under a minute after an edit on a warm machine
check:
	@python3 scripts/stages.py --make "$(MAKE)" --name check -- lint unit build

## unit: host unit tests (cargo test --lib)
unit:
	cargo test --lib

## scripts-test: the tests of scripts/ (tests/scripts: the mutants-diff base on throwaway git
## repositories, the stage runner on a fake Makefile, make help) and of the docs (tests/docs: links,
## README's snippets against the shipped files); a few seconds, in make test
scripts-test: $(STAMP)
	$(PY) -m pytest -q tests/scripts tests/docs

## mutants: cargo-mutants over the pure core against the host unit tests; fails on any mutant
## that survives outside the exclusions (each with its reason) in .cargo/mutants.toml, or that
## times out. About 10-15 minutes (2 jobs); installs cargo-mutants 27.1.0 if missing.
mutants: test-tools
	cargo mutants -j 2 -- --lib

# The start of the change under test, computed from git alone (scripts/mutants_base.py): the
# commit before the newest pause of more than MUTANTS_GAP_HOURS between consecutive commits of
# HEAD's first-parent history, i.e. the latest burst of commits, plus uncommitted changes.
# MUTANTS_BASE=<commit> overrides it.
MUTANTS_BASE ?=
MUTANTS_GAP_HOURS ?= 1

## mutants-diff: the same, only on the lines of src/ changed by the latest burst of commits (and
## uncommitted ones): the base is computed and printed with why (scripts/mutants_base.py;
## MUTANTS_BASE=<commit> overrides it). In make test
mutants-diff: test-tools
	@python3 scripts/mutants_base.py --gap-hours '$(MUTANTS_GAP_HOURS)' --base '$(MUTANTS_BASE)' --diff target/mutants-change.diff
	cargo mutants -j 2 --in-diff target/mutants-change.diff -- --lib

## lint: cargo fmt --check and clippy -D warnings: the host, wasm32-wasip1 (also its test-only
## feature builds), the shared-data writer fixture and the fuzz crate
lint: wasm-target
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -- -D warnings
	cargo clippy --release --target $(TARGET) --features hostcall-count -- -D warnings
	cargo clippy --release --target $(TARGET) --features test-panic,test-clock-offset -- -D warnings
	cd $(WRITER) && cargo fmt -- --check && cargo clippy --release --target $(TARGET) -- -D warnings
	cd fuzz && cargo fmt -- --check && cargo clippy --bins -- -D warnings
	cd bench/noop-filter && cargo fmt -- --check && cargo clippy --release --target $(TARGET) -- -D warnings
	cd bench/floor-filter && cargo fmt -- --check && cargo clippy --release --target $(TARGET) -- -D warnings

## rules: check envoy/prometheus/rules.yml and run its unit tests (rules_test.yml; the
## several-day anomaly and period tests, anomaly_test.yml and period_test.yml, about 15 s)
rules: prometheus-tools
	promtool check rules envoy/prometheus/rules.yml
	promtool test rules envoy/prometheus/rules_test.yml
	promtool test rules envoy/prometheus/anomaly_test.yml envoy/prometheus/period_test.yml

## alerting: amtool check-config on envoy/alertmanager/alertmanager.yml, then its routing
## (amtool config routes test) and inhibition (a real Alertmanager) cases
alerting: alertmanager-tools $(STAMP)
	amtool check-config envoy/alertmanager/alertmanager.yml
	$(PY) -m pytest -q tests/monitoring/test_alertmanager.py

REPORT_PERIOD ?= week
REPORT_PROMETHEUS ?= http://127.0.0.1:9090
REPORT_OUT ?= reports

## report: the plan's report for the last REPORT_PERIOD (day, week or month) ending at the last
## midnight UTC, from the Prometheus at REPORT_PROMETHEUS, into REPORT_OUT/ (Markdown + PNG)
report: $(STAMP)
	$(PY) tools/report.py --prometheus $(REPORT_PROMETHEUS) --period $(REPORT_PERIOD) --out $(REPORT_OUT)

## report-test: 35 days of synthetic history backfilled into a real Prometheus; the report's
## numbers must be the generator's and its planted regression flagged; the dashboard's
## history and anomaly queries must return data (tests/monitoring/test_report.py)
report-test: prometheus-tools $(STAMP)
	$(PY) -m pytest -q tests/monitoring/test_report.py tests/monitoring/test_runbook.py

# Parallel pytest-xdist workers of `make integration`; INTEGRATION_WORKERS=0 runs the suite in
# one process.
INTEGRATION_WORKERS ?= 3

## integration: the pytest suite in tests/integration (real Envoy, real SeaweedFS, Docker),
## on INTEGRATION_WORKERS (3) pytest-xdist workers, a whole module at a time
# integration also builds the filter with the test-only features, in target/test-only
# (test_faults.py: a panicking VM is reloaded, its cause logged; test_docker.py: an Envoy
# with a skewed clock). Each worker has its own session fixtures (SeaweedFS, Envoys) on ports
# no other worker is given (tests/stack.py, PORT_CLAIMS_ENV); --dist loadfile keeps a module on
# one worker (its module fixtures made once: test_docker.py's images and fleet), and
# --no-loadscope-reorder keeps the order tests/integration/conftest.py gives, longest first.
integration: build $(STAMP) prometheus-tools alertmanager-tools registry-tools browser-tools media-tools compose-tools
	cargo build --release --target $(TARGET) --features test-panic,test-clock-offset --target-dir target/test-only
	ENVOY_PRESIGN_REQUIRE_WASM=1 $(PY) -m pytest -q tests/integration \
	  $(if $(filter-out 0,$(INTEGRATION_WORKERS)),-n $(INTEGRATION_WORKERS) --dist loadfile --no-loadscope-reorder)

## manifests-crd-check CRDS=<dir>: deploy/'s manifests against full CRD files (e.g. from
## `kubectl get crd <name> -o yaml` on your cluster), and deploy/schemas/ compared with them
manifests-crd-check: $(STAMP)
	@test -n "$(CRDS)" || { echo "usage: make manifests-crd-check CRDS=<directory of CRD .yaml files>"; exit 2; }
	$(PY) tests/k8s_schema.py --schemas deploy/schemas/*.yaml --cross-check $(CRDS)/*.yaml
	$(PY) tests/k8s_schema.py --schemas $(CRDS)/*.yaml -- deploy/*/envoy-presign.yaml

## vectors: regenerate tests/vectors/presign.json with boto3
vectors: $(STAMP)
	$(PY) scripts/gen_vectors.py

## clean: cargo clean (the filter and the shared-data writer fixture)
clean:
	cargo clean
	cd $(WRITER) && cargo clean

NOOP_WASM := bench/noop-filter/target/$(TARGET)/release/noop_filter.wasm

## bench: throughput/latency next to passthrough, native signing, a no-op Wasm floor and a floor of the rewrite (see bench/)
bench: build $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	cd bench/noop-filter && cargo build --release --target $(TARGET)
	cd bench/floor-filter && cargo build --release --target $(TARGET)
	cargo build --release --target $(TARGET) --features hostcall-count --target-dir target/hostcall-count
	set -o pipefail; cargo bench --bench core | tee target/bench-core.txt
	$(PY) bench/run.py

## bench-instructions: Envoy's instructions per request under callgrind, the bench's rows a-e, l-n (about 3 minutes; see bench/instructions.py)
bench-instructions: build $(STAMP)
	$(call apt_tool,valgrind callgrind_control,valgrind,)
	cd bench/noop-filter && cargo build --release --target $(TARGET)
	cd bench/floor-filter && cargo build --release --target $(TARGET)
	$(PY) bench/instructions.py

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config canonical cache_entry credentials
# `make fuzz`: nightly with AddressSanitizer. `make fuzz-quick` (in make test): the stable
# toolchain with no sanitizer, which cargo-fuzz supports; the fuzzed core has no `unsafe`, so a
# panic, an arithmetic overflow (debug assertions are on) or a broken property is what it finds.
FUZZ_TOOLCHAIN ?= +nightly
FUZZ_SANITIZER ?= address

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (needs the nightly toolchain; installs cargo-fuzz)
fuzz: test-tools
	set -o pipefail; cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && cp -n seeds/$$t/* corpus/$$t/ 2>/dev/null; \
	  cargo $(FUZZ_TOOLCHAIN) fuzz run -s $(FUZZ_SANITIZER) $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E 'stat::number_of_executed_units|Done|ERROR|SUMMARY' | sed "s/^/$$t: /" || exit 1; \
	  test -z "$$(ls artifacts/$$t 2>/dev/null)" || { echo "$$t: crash artifacts in fuzz/artifacts/$$t"; exit 1; }; \
	done

## fuzz-quick: every fuzz target for 10 s on the stable toolchain (part of make test)
fuzz-quick:
	$(MAKE) fuzz FUZZ_SECONDS=10 FUZZ_TOOLCHAIN= FUZZ_SANITIZER=none

SOAK_SECONDS ?= 60

## soak: SOAK_SECONDS (default 60) of mixed traffic through Envoy (2 workers, 64 cache slots): no 5xx,
## counters equal to what was sent, cache within its bound, flat RSS (SOAK_SECONDS=10: quick run)
soak: build $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) tests/soak.py
