# Plane for Swift. `make dev` runs the system locally, `make test` runs the whole test suite;
# both install what is missing first (scripts/bootstrap.sh, Debian, as root).
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: bootstrap build release dev test fuzz fuzz-corpus chaos bench bench-nats bench-runtime bench-controller bench-proxy bench-connect image package clean

bootstrap:
	bash scripts/bootstrap.sh

# SWIFTPM_FLAGS: extra flags for `swift build` (the README test runs `make dev` while
# `swift test` holds the build directory's lock, so it passes --ignore-lock, and
# --build-tests so that nothing is rebuilt: other tests run `plane` meanwhile).
SWIFTPM_FLAGS ?=

build: bootstrap
	swift build $(SWIFTPM_FLAGS)

# The production build of `plane` (docs/operations.md, "Building for production"):
# release configuration without run-time exclusivity checks; .build/release/plane.
release: bootstrap
	bash scripts/release-build.sh --product plane

# A whole local cluster in the foreground (`plane dev`): NATS, controller, drone with its
# HTTPS proxy and a local CA, the demo image. Uses dockerd (started here if none runs) or,
# without it, runc/crun. Ctrl-C stops everything.
dev: build
	bash scripts/docker-daemon.sh start || echo "make dev: no dockerd; plane dev uses the oci runtime"
	.build/debug/plane dev

# Starts dockerd for the Docker runtime tests when none runs (and stops it afterwards),
# checks the image plugin end to end, runs every test, then every fuzz target over its
# corpus and briefly (scripts/fuzz.sh --ci: a libFuzzer build in .build-fuzz).
test: bootstrap
	swift build --build-tests
	bash scripts/test-python.sh
	bash scripts/docker-daemon.sh start
	status=0; bash scripts/check-image.sh && bash scripts/run-tests.sh || status=$$?; bash scripts/docker-daemon.sh stop >/dev/null; \
	bash scripts/fuzz.sh --ci || status=$$?; exit $$status

# Every fuzz target under libFuzzer for FUZZ_SECONDS (default 60) each; prints executions/s.
fuzz: bootstrap
	bash scripts/fuzz.sh

# Adds what fuzzing here found (.build-fuzz/corpus) that reaches new coverage to Tests/FuzzCorpusGrown.
fuzz-corpus: bootstrap
	bash scripts/fuzz.sh --save-corpus

# The randomized partition and NATS-node-loss tests (LockPartitionTests) for CHAOS_SECONDS
# (default 900) each instead of the 60 s and 40 s `make test` gives them; CHAOS_SEED picks
# another schedule.
CHAOS_SECONDS ?= 900
chaos: bootstrap
	swift build --build-tests
	CHAOS_SECONDS=$(CHAOS_SECONDS) swift test --skip-build --filter "LockPartitionTests/(randomPartitionsNeverRunALockTwice|randomNATSNodeLossNeverRunsALockTwice)"

bench: bench-nats bench-runtime bench-controller bench-proxy bench-connect

# The Debian package (binary, systemd units, example configs) and an OCI image of plane (docs/operations.md).
package: bootstrap
	bash scripts/package.sh

# The plane-test-server container image (OCI layout and docker-load archive) via the package plugin.
image: bootstrap
	swift package --allow-writing-to-package-directory build-image --product plane-test-server

bench-nats: bootstrap
	bash scripts/bench-nats.sh

bench-runtime: bootstrap
	bash scripts/bench-runtime.sh

clean:
	rm -rf .build .build-fuzz .venv-bench

bench-controller: bootstrap
	bash scripts/bench-controller.sh

bench-proxy: bootstrap
	bash scripts/bench-proxy.sh

bench-connect: bootstrap
	bash scripts/bench-connect.sh
