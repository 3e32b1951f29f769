# shoal build. `make demo` runs the main job, `make test` runs the tests.
SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
export PATH := $(TOOLS):$(PATH)

.PHONY: all deps build test test-unit test-integration lint proto proto-tools proto-check demo demo-down bench bench-quick clean images

all: build

deps:
	./scripts/install-deps.sh

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/shoal ./cmd/shoal

# The one test command (README, .ci/run): lint, generated-code check, then
# every test with the race detector, then the DNS fuzz target. The fuzz
# budget is a count of runs (about 30 s here), not a duration: Go 1.26's
# fuzz coordinator can fail a clean run with "context deadline exceeded"
# when a duration ends on a loaded machine (golang/go#75804, fixed in 1.27).
test: build lint proto-check
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzServe$$' -fuzztime 400000x -timeout 10m ./netdns/

test-unit: deps
	$(GO) test -race -count=1 -short ./...

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

proto-tools:
	@mkdir -p $(TOOLS)
	@[ -x $(TOOLS)/protoc-gen-go ] && $(TOOLS)/protoc-gen-go --version | grep -q $(PROTOC_GEN_GO_VERSION) || \
		GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ -x $(TOOLS)/protoc-gen-go-grpc ] && $(TOOLS)/protoc-gen-go-grpc --version | grep -q $(PROTOC_GEN_GO_GRPC_VERSION:v%=%) || \
		GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: deps proto-tools
	cd proto && protoc -I . -I /usr/include \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		*.proto

# Fails when the committed generated code differs from what `make proto` makes.
proto-check: proto
	@git diff --exit-code -- proto/ || { echo "proto/: committed generated code is stale; run 'make proto' and commit"; exit 1; }

# The main job: a local cluster (1 manager + 2 workers, each in a network
# namespace of its own) running the demo apps as containers, in the
# background. Needs root. `make demo-down` stops it and removes all it made.
demo: build images
	./scripts/demo.sh up

demo-down:
	./scripts/demo.sh down

# The benchmarks also need their peers (docker.io for BenchmarkSwarm, never
# started as a host service): SHOAL_BENCH_DEPS=1 installs them.
bench: build
	SHOAL_BENCH_DEPS=1 ./scripts/install-deps.sh
	./bench/run.sh full

bench-quick: build
	SHOAL_BENCH_DEPS=1 ./scripts/install-deps.sh
	./bench/run.sh quick

# The demo apps (testdata/apps) at v1 and v2 as image tars in bin/images, for
# `shoal image load -i`. Nothing is rebuilt when no input changed.
images:
	$(GO) run ./scripts/mkimages -out bin/images

clean: demo-down
	rm -rf bin .tools
