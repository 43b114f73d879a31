# Plane for Swift. `make dev` runs the system locally, `make test` runs the whole test suite;
# both install what is missing first (scripts/bootstrap.sh, Debian, as root).
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: bootstrap build dev test bench bench-nats clean

bootstrap:
	bash scripts/bootstrap.sh

build: bootstrap
	swift build

# For now the system is the `plane` executable; issue 08 turns this into a local cluster.
dev: build
	.build/debug/plane --help

test: bootstrap
	swift build --build-tests
	swift test

bench: bench-nats

bench-nats: bootstrap
	bash scripts/bench-nats.sh

clean:
	rm -rf .build .venv-bench
