# zeroboot: `make demo` boots a node in QEMU against a local registry;
# `make test` runs every test (unit, fuzz seed corpora, netns, QEMU end-to-end).
SHELL := /bin/bash
GO ?= go
BIN := bin
KVER ?= $(shell ls /lib/modules 2>/dev/null | sort -V | tail -1)
# The clock floor PID 1 enforces: the time of the commit being built, so the
# same source gives the same binary.
BUILD_TIME ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# zgrid's release name (zgrid version, GET /v1/version, zgrid_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.buildTime=$(BUILD_TIME) -X github.com/zeroboot/zeroboot/cmd/zgrid/internal/server.Version=$(VERSION)
STATIC := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

# make uki: the node's Unified Kernel Image, signed for Secure Boot
# (docs/uki.md). GRID is a zgrid data dir (its TUF root, channels and CA go
# into the initramfs); REGISTRY and FARM go into the signed command line.
GRID ?= grid
REGISTRY ?=
FARM ?= default
CONSOLE ?= console=ttyS0 console=tty0
KERNEL ?= /boot/vmlinuz-$(KVER)
UKI_STUB ?= /usr/lib/systemd/boot/efi/linuxx64.efi.stub
# Debian's snakeoil db key, enrolled in OVMF_VARS_4M.snakeoil.fd: for tests
# only. Real machines: your own db key (SB_PASS= when it is not encrypted).
SB_KEY ?= /usr/share/ovmf/PkKek-1-snakeoil.key
SB_CERT ?= /usr/share/ovmf/PkKek-1-snakeoil.pem
SB_PASS ?= snakeoil
# make iso: one hybrid image (BIOS and UEFI, CD and USB stick) with the same
# GRID, REGISTRY, FARM, CONSOLE and KERNEL (docs/iso.md). The UEFI side is
# GRUB reading the image's kernel and initramfs (ISO_EFI=grub), or a UKI
# holding a second copy (ISO_EFI=uki, unsigned, made by bin/mkuki); ISO_UKI
# names an EFI application for EFI/BOOT/BOOTX64.EFI instead (say a signed
# out/zeroboot.efi from make uki, for Secure Boot).
ISO_EFI ?= grub
ISO_UKI ?=
# make pxe: out/pxe/ holds the boot files zgrid serve --boot-dir serves and a
# static iPXE script with the same GRID, REGISTRY, FARM, CONSOLE and KERNEL,
# for any web server (docs/pxe.md).

# make kernel: our own kernel, one file (kernel-config/README.md): Debian's
# linux-source from KERNEL_SOURCE configured from nothing plus the fragments
# in kernel-config/, every driver built in, the initramfs for GRID embedded
# and "CONSOLE panic=-1 zeroboot.registry=REGISTRY zeroboot.farm=FARM" built
# in as the command line (the boot loader's is appended). KERNEL_BUILD keeps
# the source and object files, so a rebuild on the same machine compiles
# only what changed (its name starts with _ so the go tool's ./... does not
# walk the kernel tree); KERNEL_JOBS compile jobs run at nice KERNEL_NICE.
# Writes out/kernel.
KERNEL_SOURCE ?= /usr/src/linux-source-6.1.tar.xz
KERNEL_BUILD ?= out/_kernel
KERNEL_JOBS ?= $(shell nproc)
KERNEL_NICE ?= 10
KERNEL_ENV = KERNEL_SOURCE=$(abspath $(KERNEL_SOURCE)) KERNEL_BUILD=$(abspath $(KERNEL_BUILD)) JOBS=$(KERNEL_JOBS) NICE=$(KERNEL_NICE) BUILD_TIME=$(BUILD_TIME)

# grid-initramfs,TARGET,DOC[,MODULES,OUT]: checks REGISTRY and GRID, then
# writes OUT (default out/initramfs.cpio.zst) trusting GRID's TUF root,
# channels and CA, with MODULES the mkinitramfs module flags (default
# Debian's modules for KVER).
define grid-initramfs
@test -n "$(REGISTRY)" || { echo "make $(1): set REGISTRY=https://host:port (and FARM=, GRID=zgrid data dir); see $(2)" >&2; exit 1; }
@for f in $(GRID)/tuf/root/1.root.json $(GRID)/tuf/channels.json $(GRID)/tls/ca.pem; do test -f $$f || { echo "make $(1): $$f missing: GRID=$(GRID) is not a zgrid data dir (zgrid init, zgrid root init)" >&2; exit 1; }; done
@mkdir -p out
$(BIN)/mkinitramfs -init $(BIN)/init $(or $(3),-kernel-version $(KVER)) \
	-file $(GRID)/tuf/root/1.root.json:/etc/zeroboot/root.json \
	-file $(GRID)/tuf/channels.json:/etc/zeroboot/channels.json \
	-file $(GRID)/tls/ca.pem:/etc/zeroboot/ca.pem \
	-o $(or $(4),out/initramfs.cpio.zst)
endef

.PHONY: all deps build test unit e2e demo bench fuzz vet fmt clean uki iso iso-kernel pxe kernel kernel-test

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BIN)
	$(STATIC) -o $(BIN)/init ./init
	$(STATIC) -o $(BIN)/core0 ./cmd/core0
	$(STATIC) -o $(BIN)/demosvc ./cmd/demosvc
	$(STATIC) -o $(BIN)/zgrid ./cmd/zgrid
	$(STATIC) -o $(BIN)/mkinitramfs ./cmd/mkinitramfs
	$(STATIC) -o $(BIN)/mkuki ./cmd/mkuki
	$(STATIC) -o $(BIN)/mkiso ./cmd/mkiso

uki: deps build
	$(call grid-initramfs,uki,docs/uki.md)
	@set -e; key=$$(mktemp); trap 'rm -f $$key' EXIT; \
	if [ -n "$(SB_PASS)" ]; then openssl pkey -in $(SB_KEY) -passin pass:$(SB_PASS) -out $$key; else cp $(SB_KEY) $$key; fi; \
	$(BIN)/mkuki -kernel $(KERNEL) -initrd out/initramfs.cpio.zst -stub $(UKI_STUB) \
		-cmdline "$(CONSOLE) panic=-1 zeroboot.registry=$(REGISTRY) zeroboot.farm=$(FARM)" \
		-sign-key $$key -sign-cert $(SB_CERT) -out out/zeroboot.efi
	@echo "uki: out/zeroboot.efi ($$(du -h out/zeroboot.efi | cut -f1)), signed with $(SB_CERT)"

iso: deps build
	$(call grid-initramfs,iso,docs/iso.md)
	$(BIN)/mkiso -kernel $(KERNEL) -initrd out/initramfs.cpio.zst -efi $(ISO_EFI) -stub $(UKI_STUB) $(if $(ISO_UKI),-uki $(ISO_UKI)) \
		-cmdline "$(CONSOLE) panic=-1 zeroboot.registry=$(REGISTRY) zeroboot.farm=$(FARM)" \
		-out out/zeroboot.iso
	@echo "iso: out/zeroboot.iso ($$(du -h out/zeroboot.iso | cut -f1)); to a USB stick: dd if=out/zeroboot.iso of=/dev/sdX bs=4M conv=fsync"

pxe: deps build
	@# iPXE expands ${...} and splits on spaces in every script line: only a plain alphabet goes in.
	@! printf '%s' "$(CONSOLE) $(REGISTRY) $(FARM)" | grep -q '[^]A-Za-z0-9 ._:/=,[-]' || { echo "make pxe: CONSOLE, REGISTRY and FARM may hold only A-Z a-z 0-9 space . _ : / = , [ ] -" >&2; exit 1; }
	$(call grid-initramfs,pxe,docs/pxe.md)
	@mkdir -p out/pxe
	cp $(KERNEL) out/pxe/vmlinuz
	cp out/initramfs.cpio.zst out/pxe/initramfs.cpio.zst
	@printf '#!ipxe\n# zeroboot (make pxe): kernel and initramfs beside this script\nkernel vmlinuz initrd=initramfs.cpio.zst %s\ninitrd initramfs.cpio.zst\nboot\n' \
		"$(CONSOLE) panic=-1 zeroboot.registry=$(REGISTRY) zeroboot.farm=$(FARM)" > out/pxe/boot.ipxe
	@echo "pxe: out/pxe/{vmlinuz,initramfs.cpio.zst,boot.ipxe}; zgrid serve --boot-dir out/pxe --boot-listen :8080, or any web server for boot.ipxe"

kernel: deps build
	$(call grid-initramfs,kernel,kernel-config/README.md,-no-modules,out/kernel-initramfs.cpio.zst)
	$(KERNEL_ENV) INITRAMFS=out/kernel-initramfs.cpio.zst OUT=out/kernel \
		CMDLINE="$(CONSOLE) panic=-1 zeroboot.registry=$(REGISTRY) zeroboot.farm=$(FARM)" scripts/kernel.sh

# make iso-kernel: the hybrid image (BIOS and UEFI, CD and USB) of make
# kernel's one file: isolinux loads it alone, and it is its own
# EFI/BOOT/BOOTX64.EFI (docs/iso.md).
iso-kernel: kernel
	$(BIN)/mkiso -kernel out/kernel -uki out/kernel -out out/zeroboot-kernel.iso
	@echo "iso-kernel: out/zeroboot-kernel.iso ($$(du -h out/zeroboot-kernel.iso | cut -f1)); to a USB stick: dd if=out/zeroboot-kernel.iso of=/dev/sdX bs=4M conv=fsync"

# Builds our kernel for a test grid (in KERNEL_BUILD, the same tree make
# kernel uses) and boots it in QEMU with nothing but -kernel, to Core-0
# ready (qemu/kernel_test.go). Not part of make test: the first build on a
# machine compiles the whole kernel.
kernel-test: deps
	$(KERNEL_ENV) ZEROBOOT_E2E=required $(GO) test -tags zeroboot_kernel -run TestOwnKernel -count=1 -v -timeout 40m ./qemu

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags zeroboot_kernel ./qemu

# Every test, including fuzz seed corpora (run as plain tests), network
# namespace tests (root) and QEMU boots. -p 2 matches the 2-core machines.
# The QEMU boots run last and alone: a TCG guest whose vCPUs are starved
# by compiles and tests beside it can livelock in its kernel.
test: deps vet
	ZEROBOOT_E2E=required $(GO) test -p 2 -timeout 20m -count=1 $$($(GO) list ./... | grep -v '/qemu$$')
	ZEROBOOT_E2E=required $(GO) test -timeout 40m -count=1 ./qemu
	@# The debug build's own tests (zeroboot.debug.*), which ./... leaves out.
	$(GO) test -tags zeroboot_debug -count=1 ./init

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
