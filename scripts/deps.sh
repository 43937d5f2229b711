#!/usr/bin/env bash
# Installs what building, testing and the demo need on a Debian 12 machine.
# Idempotent: it only calls apt when a command or file is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
have swtpm || need+=(swtpm swtpm-tools)
# pkg/tpm tests clear and lock out a swtpm with tpm2-tools.
have tpm2_clear || need+=(tpm2-tools)
have dnsmasq || need+=(dnsmasq)
have zstd || need+=(zstd)
have ip || need+=(iproute2)
have pgrep || need+=(procps)
have tail || need+=(coreutils)
have tar || need+=(tar)
have xorriso || need+=(xorriso)
[ -e /usr/share/OVMF/OVMF_CODE.fd ] && [ -e /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || need+=(ovmf)
# make uki and its Secure Boot test: the systemd EFI stub, sbsign, an ESP
# built with mtools, the snakeoil key decrypted with openssl.
[ -e /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need+=(systemd-boot-efi)
have sbsign || need+=(sbsigntool)
have mcopy || need+=(mtools)
have openssl || need+=(openssl)
have objcopy || need+=(binutils)
# make iso: isolinux and its isohybrid MBR for BIOS, ldlinux.c32; the image
# is written by xorriso, its EFI boot image by mtools (both above).
[ -e /usr/lib/ISOLINUX/isolinux.bin ] && [ -e /usr/lib/ISOLINUX/isohdpfx.bin ] || need+=(isolinux)
[ -e /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
# ...and GRUB's EFI modules and grub-mkimage for its UEFI side, which reads
# the kernel and initramfs from the image (no second copy in a UKI).
[ -e /usr/lib/grub/x86_64-efi/linux.mod ] && have grub-mkimage || need+=(grub-efi-amd64-bin)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
# make kernel: Debian's kernel source and what building it takes (objtool
# needs libelf, the config tools bison and flex).
[ -e /usr/src/linux-source-6.1.tar.xz ] || need+=(linux-source-6.1)
have gcc || need+=(gcc)
have make || need+=(make)
have bc || need+=(bc)
have bison || need+=(bison)
have flex || need+=(flex)
have perl || need+=(perl)
have xz || need+=(xz-utils)
[ -e /usr/include/gelf.h ] || need+=(libelf-dev)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
# The explorer's browser test renders the pages in headless Chromium.
have chromium || need+=(chromium)
# The PostgreSQL backend's tests (zgrid serve --postgres) start their own
# server with initdb and postgres.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql-15)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]}; run as root (or install them) first" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# The dnsmasq package starts a system service; our tests run their own
# instances in network namespaces and must not race it for port 53 or DHCP.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dnsmasq 2>/dev/null; then
	systemctl disable --now dnsmasq >/dev/null 2>&1 || true
fi
echo "deps: ok (kernel $(ls /boot/vmlinuz-* | sort -V | tail -1))"
