# zeroboot: `make demo` boots a node in QEMU against a local registry;
# `make test` runs every test (unit, fuzz seed corpora, netns, QEMU end-to-end).
SHELL := /bin/bash
GO ?= go
BIN := bin
KVER ?= $(shell ls /lib/modules 2>/dev/null | sort -V | tail -1)
# The clock floor PID 1 enforces: the time of the commit being built, so the
# same source gives the same binary.
BUILD_TIME ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS := -s -w -X main.buildTime=$(BUILD_TIME)
STATIC := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all deps build test unit e2e demo bench fuzz vet fmt clean

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BIN)
	$(STATIC) -o $(BIN)/init ./init
	$(STATIC) -o $(BIN)/core0 ./cmd/core0
	$(STATIC) -o $(BIN)/zgrid ./cmd/zgrid
	$(STATIC) -o $(BIN)/mkinitramfs ./cmd/mkinitramfs

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# Every test, including fuzz seed corpora (run as plain tests), network
# namespace tests (root) and QEMU boots. -p 2 matches the 2-core machines.
test: deps vet
	ZEROBOOT_E2E=required $(GO) test -p 2 -timeout 40m -count=1 ./...

unit:
	$(GO) test -short -count=1 ./...

e2e: deps
	$(GO) test -count=1 -timeout 30m -v ./qemu/

demo: deps build
	@qemu/demo.sh

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x ./pkg/flist/ ./cmd/zgrid/... ./bench/

# Every fuzz target in turn, each for FUZZTIME (default 30s); stops at the
# first failure. See scripts/fuzz.sh.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -rf $(BIN) out
