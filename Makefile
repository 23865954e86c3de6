# codex-ctr — one command for the demo, one for the tests.
SHELL := /bin/bash
CARGO ?= cargo
FIXTURE := rootfs-fixtures/out/busybox
DEMO_ROOT := /run/codex-oci-demo

.PHONY: all deps build release fixtures demo test lint bench clean vm-test soak

all: build

# What building and the fixtures need from Debian (installed only when missing).
DEPS := busybox-static libseccomp-dev pkg-config file python3
deps:
	@missing=$$(for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

build: deps
	$(CARGO) build --workspace --all-targets

release: deps
	$(CARGO) build --release -p codex-cli

$(FIXTURE)/config.json: rootfs-fixtures/make-busybox-bundle.sh
	rootfs-fixtures/make-busybox-bundle.sh $(FIXTURE)

fixtures: deps $(FIXTURE)/config.json

# A real container: its own PID 1, hostname and root filesystem.
demo: release fixtures
	@rm -rf /tmp/codex-demo-bundle && mkdir -p /tmp/codex-demo-bundle
	@ln -s $(CURDIR)/$(FIXTURE)/rootfs /tmp/codex-demo-bundle/rootfs
	@python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["process"]["args"]=["sh","-c","echo \"PID inside: $$$$\"; echo \"hostname: $$(hostname)\"; echo \"/ holds: $$(ls / | tr \"\\n\" \" \")\"; echo \"mounts: $$(wc -l < /proc/self/mountinfo)\"; grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status"]; json.dump(c,open(sys.argv[2],"w"),indent=1)' $(FIXTURE)/config.json /tmp/codex-demo-bundle/config.json
	@echo "+ codex-oci run --bundle /tmp/codex-demo-bundle demo-$$$$"
	@target/release/codex-oci --root $(DEMO_ROOT) run --bundle /tmp/codex-demo-bundle demo-$$$$
	@echo "+ host hostname: $$(hostname), host PID of this shell: $$$$"
	@demo/engine-demo.sh $(CURDIR)/target/release/codex-ctr $(CURDIR)/$(FIXTURE)/rootfs.tar

# Everything: unit tests, then the root-run integration tests on real binaries.
test: build fixtures lint
	$(CARGO) test --workspace --lib --bins
	CODEX_FIXTURE=$(CURDIR)/$(FIXTURE) $(CARGO) test -p codex-tests
	$(CARGO) test -p codex-engine --tests
	CODEX_OCI=$(CURDIR)/target/debug/codex-oci vm/run-cgroup-v2-tests.sh

# The cgroup v2 VM tier: QEMU (software emulation) boots Debian's kernel on a pure
# cgroup v2 hierarchy and runs real containers with limits (vm/README.md). Installs
# qemu-system-x86 (bookworm-backports) and linux-image-amd64 when missing; says SKIP
# loudly when it cannot (a failure when VM_TESTS_REQUIRED is set).
vm-test: release fixtures
	CODEX_OCI=$(CURDIR)/target/release/codex-oci vm/run-cgroup-v2-tests.sh

# The soak (not in `make test`): SOAK_MINUTES (default 60) of create/start/exec/stop/rm
# churn, up to SOAK_CONTAINERS (200) at once from SOAK_WORKERS (4) workers, then zero
# leaks. docs/reliability.md has the numbers measured here.
SOAK_MINUTES ?= 60
soak: build fixtures
	SOAK_MINUTES=$(SOAK_MINUTES) CODEX_FIXTURE=$(CURDIR)/$(FIXTURE) \
	  $(CARGO) test -p codex-tests --test ctr_soak -- --ignored --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: release fixtures
	bench/run.sh

clean:
	$(CARGO) clean
	rm -rf rootfs-fixtures/out
