# codex-ctr — one command for the demo, one for the tests.
SHELL := /bin/bash
CARGO ?= cargo
FIXTURE := rootfs-fixtures/out/busybox
DEMO_ROOT := /run/codex-oci-demo

.PHONY: all deps api-clients build release link-order fixtures demo test test-release test-mutants lint bench bench-scale test-scale clean vm-test fuzz soak install

all: build

# What building and the fixtures need from Debian (installed only when missing).
# protobuf-compiler builds the CRI client (k8s-cri); containernetworking-plugins is the CNI of
# tests/tests/cri.rs.
DEPS := busybox-static tini tmux libseccomp-dev pkg-config file python3 skopeo umoci docker-registry apache2-utils nftables iproute2 protobuf-compiler containernetworking-plugins openssl
deps:
	@missing=$$(for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(MAKE) -s api-clients

# The Docker API's real clients (tests/tests/ctr_api.rs), only when missing: a docker CLI
# (Debian's docker.io, installed with services kept from starting: no Docker daemon runs
# here), docker-py (Debian's python3-docker) and Compose v1 (Debian's docker-compose,
# which brings its own python3-docker). A machine that already has them (a
# static docker client, pip's docker) keeps its own.
api-clients:
	@if ! command -v docker >/dev/null; then \
	  echo "installing: docker.io (client use only; its daemon is not started)"; \
	  own=; [ -e /usr/sbin/policy-rc.d ] || { own=1; printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; }; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null; \
	  rc=$$?; [ -z "$$own" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi
	@if ! command -v docker-compose >/dev/null; then \
	  echo "installing: docker-compose (Compose v1, for tests/tests/ctr_api.rs)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	fi
	@if ! python3 -c 'import docker' 2>/dev/null; then \
	  echo "installing: python3-docker"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-docker >/dev/null; \
	fi

build: deps
	$(CARGO) build --workspace --all-targets

# All three binaries are released as static-pie executables (glibc and libseccomp
# linked in): each exec skips the dynamic loader and its relocations (1.2-1.5 ms of CPU
# per `codex-oci run`; a `codex-ctr run --rm`, which execs codex-ctr twice, the command
# and its supervisor, got 1.3 ms faster), and the peak RSS drops by the shared libraries'
# pages (docs/benchmarks.md, "Static runtime binaries", "Static codex-ctr"). crt-static is
# given to the final link only (`cargo rustc`): with RUSTFLAGS it would reach the
# proc-macros, which cannot be static. A static glibc's NSS (getgrnam, getaddrinfo) loads
# the host's NSS modules (libnss_systemd...), which crash a static process: codex-ctr
# looks group and host names up through the host's `getent` instead (codex_sys::nss), no
# NSS code may be linked into any of them, and the build fails if any is. Debug builds
# (the test suite's) stay dynamic; `make test-release` runs tests on these.
#
# All three are linked by link/ordered-link: a binary with a profile (link/NAME.order,
# written by `make link-order`) gets the functions the profile saw touched laid out
# first and together, so the rest of its text is never mapped (docs/benchmarks.md, "Link
# order"). Symbols are v0-mangled: their demangled names, which the profile keeps, then
# tell a generic function's instances apart. Relative relocations are packed (RELR): a
# few KiB to read at each exec instead of 250-380 KiB.
STATIC_BINS := codex-ctr codex-oci codex-shim
SECCOMP_LIBDIR = $(shell pkg-config --variable=libdir libseccomp)
RELEASE_RUSTFLAGS := -C symbol-mangling-version=v0
RELEASE_LINK := -C linker=$(CURDIR)/link/ordered-link -C link-arg=-Wl,-z,pack-relative-relocs
release: deps
	@set -e; export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(SECCOMP_LIBDIR) RUSTFLAGS="$(RELEASE_RUSTFLAGS)"; \
	for b in $(STATIC_BINS); do \
	  flags="$(RELEASE_LINK)"; \
	  case " $(STATIC_BINS) " in *" $$b "*) flags="$$flags -C target-feature=+crt-static";; esac; \
	  report=$(CURDIR)/target/release/$$b.link-order; \
	  if [ -e link/$$b.order ]; then \
	    sum=$$(cat link/ordered-link link/$$b.order | sha256sum | cut -c1-16); \
	    flags="$$flags -C link-arg=--codex-link-order=$(CURDIR)/link/$$b.order#$$sum -C link-arg=--codex-link-report=$$report"; \
	  fi; \
	  echo "+ cargo rustc --release -p codex-cli --bin $$b -- $$flags"; \
	  $(CARGO) rustc --release -p codex-cli --bin $$b -- $$flags; \
	  [ ! -e link/$$b.order ] || echo "link order: $$(cat $$report)"; \
	  case " $(STATIC_BINS) " in *" $$b "*) \
	    if grep -q -a -e /etc/nsswitch.conf target/release/$$b; then \
	      echo "release: target/release/$$b is static but links glibc's NSS (getpwnam, getgrnam, getaddrinfo...): it would load the host's NSS modules and crash" >&2; \
	      exit 1; \
	    fi;; \
	  esac; \
	done

# Writes the link profiles (link/*.order) from a profiling build whose every function has
# a page of its own, run on the fixture (link/profile.py says how): codex-oci's from a
# run and a lifecycle, codex-ctr's and codex-shim's from run --rm and a detached
# container's commands (in a network namespace of its own: the default network's bridge
# lives and dies there). Needs root and a loop device; run it when `make test-release`
# says a profile is stale.
LINK_ORDER_DIR := $(CURDIR)/target/link-order
link-order: deps fixtures
	@set -e; export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(SECCOMP_LIBDIR) RUSTFLAGS="$(RELEASE_RUSTFLAGS)" \
	  CARGO_TARGET_DIR=$(LINK_ORDER_DIR); \
	for b in codex-oci codex-ctr codex-shim; do \
	  flags="-C link-arg=-Wl,-z,pack-relative-relocs -C llvm-args=-align-all-functions=12"; \
	  case " $(STATIC_BINS) " in *" $$b "*) flags="$$flags -C target-feature=+crt-static";; esac; \
	  echo "+ cargo rustc --release -p codex-cli --bin $$b -- $$flags (profiling build)"; \
	  $(CARGO) rustc --release -p codex-cli --bin $$b --config profile.release.strip=false -- $$flags; \
	done; \
	python3 link/profile.py codex-oci $(LINK_ORDER_DIR)/release; \
	unshare --net sh -c 'ip link set lo up && exec python3 link/profile.py codex-ctr $$0' $(LINK_ORDER_DIR)/release

# The binaries, shell completions and man pages under $(DESTDIR)$(PREFIX).
PREFIX ?= /usr/local
DESTDIR ?=
install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
	  $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 target/release/codex-oci target/release/codex-ctr target/release/codex-shim \
	  $(DESTDIR)$(PREFIX)/bin/
	target/release/codex-ctr completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/codex-ctr
	target/release/codex-ctr completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_codex-ctr
	target/release/codex-ctr completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/codex-ctr.fish
	target/release/codex-ctr manpages $(DESTDIR)$(PREFIX)/share/man/man1

$(FIXTURE)/config.json: rootfs-fixtures/make-busybox-bundle.sh
	rootfs-fixtures/make-busybox-bundle.sh $(FIXTURE)

fixtures: deps $(FIXTURE)/config.json
	@# A container run on the fixture itself leaves device nodes in its rootfs/dev (the
	@# script leaves it empty): rebuild rather than hand tests a polluted rootfs.
	@if [ -n "$$(ls -A $(FIXTURE)/rootfs/dev 2>/dev/null)" ]; then \
	  echo "fixtures: $(FIXTURE)/rootfs/dev is not empty: rebuilding"; \
	  rm -rf $(FIXTURE) && rootfs-fixtures/make-busybox-bundle.sh $(FIXTURE); \
	fi

# A real container: its own PID 1, hostname and root filesystem.
demo: release fixtures
	@bundle=$$(mktemp -d /tmp/codex-demo-bundle.XXXXXX) && trap 'rm -rf "$$bundle"' EXIT && \
	ln -s $(CURDIR)/$(FIXTURE)/rootfs "$$bundle/rootfs" && \
	python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["process"]["args"]=["sh","-c","echo \"PID inside: $$$$\"; echo \"hostname: $$(hostname)\"; echo \"/ holds: $$(ls / | tr \"\\n\" \" \")\"; echo \"mounts: $$(wc -l < /proc/self/mountinfo)\"; grep -E \"^(CapEff|NoNewPrivs)\" /proc/self/status"]; json.dump(c,open(sys.argv[2],"w"),indent=1)' $(FIXTURE)/config.json "$$bundle/config.json" && \
	echo "+ codex-oci run --bundle $$bundle demo-$$$$" && \
	target/release/codex-oci --root $(DEMO_ROOT) run --bundle "$$bundle" demo-$$$$ && \
	echo "+ host hostname: $$(hostname), host PID of this shell: $$$$"
	@# The engine half runs in a network namespace of its own: its bridge, NAT rules and
	@# published port live and die there, and the host's network is left as it was.
	@unshare --net sh -c 'ip link set lo up && exec demo/engine-demo.sh "$$1" "$$2"' demo \
	  $(CURDIR)/target/release/codex-ctr $(CURDIR)/$(FIXTURE)/rootfs.tar

# Everything: unit tests, then the root-run integration tests on real binaries (the debug
# builds, then the released static ones: test-release). Every step
# runs even when an earlier one failed; at the end the skips are listed ("N skipped: ...",
# tests/report-skips.sh) and the target fails if any step did. CODEX_REQUIRE_ALL=1 makes
# every skip a failure (CI sets it).
SKIPS := $(CURDIR)/target/codex-tests/skips
test: build fixtures lint
	@rm -rf $(SKIPS) && mkdir -p $(SKIPS)
	@rc=0; \
	echo "+ cargo test --workspace --lib --bins"; \
	$(CARGO) test --no-fail-fast --workspace --lib --bins || rc=1; \
	echo "+ cargo test -p codex-tests"; \
	CODEX_FIXTURE=$(CURDIR)/$(FIXTURE) $(CARGO) test --no-fail-fast -p codex-tests || rc=1; \
	echo "+ cargo test -p codex-engine --tests"; \
	$(CARGO) test --no-fail-fast -p codex-engine --tests || rc=1; \
	echo "+ cargo test --doc -p codex-engine"; \
	$(CARGO) test --doc -p codex-engine || rc=1; \
	echo "+ cargo test -p codex-net --tests"; \
	$(CARGO) test --no-fail-fast -p codex-net --tests || rc=1; \
	echo "+ make test-release"; \
	$(MAKE) --no-print-directory test-release || rc=1; \
	echo "+ vm/run-cgroup-v2-tests.sh"; \
	CODEX_OCI=$(CURDIR)/target/debug/codex-oci vm/run-cgroup-v2-tests.sh || rc=1; \
	tests/report-skips.sh $(SKIPS); \
	if [ $$rc -ne 0 ]; then echo "make test: FAILED (see above)"; fi; \
	exit $$rc

# The released (static, fat-LTO, panic=abort) binaries under the runtime's spec tests and
# the engine's main paths: the rest of the suite runs the debug builds. The runtime files
# are those the runc step of .ci/run uses; codex_* tests run here too. Tests named
# paused_* hold a process at a test pause (CODEX_TEST_PAUSE), which release builds
# compile out: they run on the debug builds only (the runtime's are paused_init_*: a
# plain paused_ would also skip the tests of paused containers).
RELEASE_RUNTIME_TESTS := $(foreach f,$(wildcard tests/tests/*.rs),$(if $(filter ctr%,$(notdir $(f))),,--test $(basename $(notdir $(f)))))
RELEASE_ENGINE_TESTS := ctr ctr_cli ctr_ephemeral ctr_forked_start ctr_flags ctr_network ctr_ports ctr_registry ctr_images ctr_health ctr_restart ctr_tty ctr_recovery ctr_api
test-release: release fixtures
	@rc=0; \
	echo "+ the runtime's tests on target/release/codex-oci"; \
	CODEX_OCI=$(CURDIR)/target/release/codex-oci CODEX_FIXTURE=$(CURDIR)/$(FIXTURE) \
	  $(CARGO) test --no-fail-fast -p codex-tests $(RELEASE_RUNTIME_TESTS) -- --skip paused_init_ || rc=1; \
	echo "+ the engine's tests on target/release/codex-ctr and codex-shim"; \
	CODEX_OCI=$(CURDIR)/target/release/codex-oci CODEX_CTR=$(CURDIR)/target/release/codex-ctr \
	  CODEX_FIXTURE=$(CURDIR)/$(FIXTURE) \
	  $(CARGO) test --no-fail-fast -p codex-tests $(addprefix --test ,$(RELEASE_ENGINE_TESTS)) -- --skip paused_ || rc=1; \
	echo "+ the link profiles still name the code (link/*.order, at least 90 % of their Rust functions found)"; \
	for p in link/*.order; do \
	  r=target/release/$$(basename $$p .order).link-order; \
	  if [ ! -s $$r ]; then echo "$$r: missing: the binary was not linked with its profile" >&2; rc=1; continue; fi; \
	  awk '{ print "link order: " $$0; if ($$2 < 0.9 * $$5) { print "the profile is stale: run make link-order" > "/dev/stderr"; exit 1 } }' $$r || rc=1; \
	done; \
	exit $$rc

# The mutant check: the runtime test suite against two stand-in runtimes that crash
# (tests/mutants/panics.sh) or do nothing (tests/mutants/noop.sh); lists every test that
# still PASSES (each one proves nothing). MUTANT_MAX_PASS=N makes more than N a failure.
test-mutants: build fixtures
	tests/mutants/run.sh

# The cgroup v2 VM tier: QEMU (software emulation) boots Debian's kernel on a pure
# cgroup v2 hierarchy and runs real containers with limits (vm/README.md). Installs
# qemu-system-x86 (bookworm-backports) and linux-image-amd64 when missing; says SKIP
# loudly when it cannot (a failure when VM_TESTS_REQUIRED is set).
vm-test: release fixtures
	CODEX_OCI=$(CURDIR)/target/release/codex-oci vm/run-cgroup-v2-tests.sh

# Coverage-guided fuzzing (libFuzzer via cargo-fuzz), FUZZ_SECONDS per target (default
# 60); FUZZ_TARGETS picks some. Not part of `test`: see docs/reliability.md.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

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

# N running containers in one root (not in `make test`): docs/benchmarks.md, "Scale".
SCALE_N ?= 1000
bench-scale: release fixtures
	SCALE_N=$(SCALE_N) bench/scale.sh

# ctr_scale's killed-supervisor test among SCALE_N *running* containers (make test runs it
# with 300 created ones): minutes, so not in `make test`.
test-scale: build fixtures
	CODEX_SCALE_N=$(SCALE_N) CODEX_SCALE_RUNNING=1 cargo test -p codex-tests --test ctr_scale -- --test-threads 1

clean:
	$(CARGO) clean
	rm -rf rootfs-fixtures/out
