#!/usr/bin/env bash
# Builds our own kernel (make kernel): Debian's linux-source, configured
# from nothing (allnoconfig) plus the fragments in kernel-config/, every
# driver built in, our initramfs embedded (CONFIG_INITRAMFS_SOURCE) and the
# command line built in (CONFIG_CMDLINE). One file boots a node.
#
# Environment (the Makefile sets them; see kernel-config/README.md):
#   INITRAMFS       our initramfs (.cpio.zst, made with mkinitramfs -no-modules); required
#   CMDLINE         built-in kernel command line; empty: the boot loader gives it all
#   OUT             the bzImage to write (default out/kernel)
#   KERNEL_SOURCE   the source tarball (default /usr/src/linux-source-6.1.tar.xz)
#   KERNEL_BUILD    source and object files, kept so the next build on this
#                   machine only recompiles what changed (default out/_kernel:
#                   the go tool's ./... skips names starting with _)
#   JOBS            parallel compile jobs (default: nproc)
#   NICE            niceness of the compile, for shared machines (default 10)
#   BUILD_TIME      seconds since the epoch for the version string (default 0),
#                   so the same inputs give the same kernel
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
: "${INITRAMFS:?kernel.sh: set INITRAMFS to our initramfs (.cpio.zst)}"
CMDLINE=${CMDLINE-}
OUT=${OUT:-out/kernel}
KERNEL_SOURCE=${KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
KERNEL_BUILD=${KERNEL_BUILD:-out/_kernel}
JOBS=${JOBS:-$(nproc)}
NICE=${NICE:-10}
BUILD_TIME=${BUILD_TIME:-0}
frags=("$repo/kernel-config/stateless-node.config" "$repo/kernel-config/qemu.config" "$repo/kernel-config/own-kernel.config")

die() { echo "kernel.sh: $*" >&2; exit 1; }
for tool in gcc make bc bison flex perl tar xz cmp awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not installed (make deps installs the kernel build tools)"
done
# objtool (retpolines, noinstr checks) links against libelf.
[ -e /usr/include/gelf.h ] || die "/usr/include/gelf.h missing: install libelf-dev (make deps)"
[ -f "$KERNEL_SOURCE" ] || die "$KERNEL_SOURCE missing: install linux-source-6.1 (make deps)"
[ -f "$INITRAMFS" ] || die "$INITRAMFS missing: build it with mkinitramfs -no-modules"
case $INITRAMFS in *.cpio.zst) ;; *) die "INITRAMFS=$INITRAMFS: want a .cpio.zst (the kernel embeds it as it is)" ;; esac
case $CMDLINE in *'"'* | *'\'*) die "CMDLINE may not hold \" or \\ (it becomes a kconfig string)" ;; esac
for f in "${frags[@]}"; do [ -f "$f" ] || die "$f missing"; done

mkdir -p "$KERNEL_BUILD" "$(dirname "$OUT")"
build=$(cd "$KERNEL_BUILD" && pwd)
src=$build/src obj=$build/obj log=$build/build.log
start=$(date +%s.%N)

# The source tree is unpacked once per tarball; a new linux-source package
# (another size or date) gives a fresh tree and a full build.
stamp="$KERNEL_SOURCE $(stat -c '%s %Y' "$KERNEL_SOURCE")"
if [ "$(cat "$build/src.stamp" 2>/dev/null)" != "$stamp" ]; then
	echo "kernel: unpacking $KERNEL_SOURCE into $src"
	rm -rf "$src" "$obj" "$build/src.stamp"
	mkdir -p "$src"
	tar -xJf "$KERNEL_SOURCE" -C "$src" --strip-components=1
	echo "$stamp" >"$build/src.stamp"
fi
mkdir -p "$obj"

# A fixed path for the initramfs, replaced only when its bytes change: the
# .config stays the same from one build to the next, and an unchanged
# initramfs re-links nothing.
cmp -s "$INITRAMFS" "$obj/initramfs.cpio.zst" || cp "$INITRAMFS" "$obj/initramfs.cpio.zst"

# The whole configuration, later lines winning: the fragments, then what
# this build is for.
{
	cat "${frags[@]}"
	echo "CONFIG_INITRAMFS_SOURCE=\"$obj/initramfs.cpio.zst\""
	echo 'CONFIG_LOCALVERSION="-zeroboot"'
	echo '# CONFIG_LOCALVERSION_AUTO is not set'
	if [ -n "$CMDLINE" ]; then
		echo 'CONFIG_CMDLINE_BOOL=y'
		echo "CONFIG_CMDLINE=\"$CMDLINE\""
		echo '# CONFIG_CMDLINE_OVERRIDE is not set'
	else
		echo '# CONFIG_CMDLINE_BOOL is not set'
	fi
} >"$obj/zeroboot.config"

kmake() {
	nice -n "$NICE" make -C "$src" O="$obj" -j"$JOBS" \
		KBUILD_BUILD_USER=zeroboot KBUILD_BUILD_HOST=zeroboot KBUILD_BUILD_VERSION=1 \
		KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$BUILD_TIME" '+%Y-%m-%d %H:%M:%S UTC')" "$@"
}
: >"$log"
kmake KCONFIG_ALLCONFIG="$obj/zeroboot.config" allnoconfig >>"$log" 2>&1 ||
	{ tail -n 30 "$log" >&2; die "allnoconfig failed (log: $log)"; }

# Every value asked for must be in the result: kconfig silently drops an
# option whose dependencies are missing. m counts as y (no modules).
missing=$(awk '
	FNR == NR {
		if (match($0, /^CONFIG_[A-Za-z0-9_]+=/)) { k = substr($0, 1, RLENGTH - 1); v = substr($0, RLENGTH + 1); if (v == "m") v = "y"; want[k] = v }
		else if (match($0, /^# CONFIG_[A-Za-z0-9_]+ is not set$/)) { want[$2] = "n" }
		next
	}
	match($0, /^CONFIG_[A-Za-z0-9_]+=/) { have[substr($0, 1, RLENGTH - 1)] = substr($0, RLENGTH + 1) }
	END {
		for (k in want) {
			h = (k in have) ? have[k] : "n"
			if (h != want[k]) printf "  %s: want %s, have %s\n", k, want[k], h
		}
	}' "$obj/zeroboot.config" "$obj/.config" | sort)
[ -z "$missing" ] || die "the kernel config lacks what the fragments ask for (a missing dependency; see $obj/.config):
$missing"

echo "kernel: building bzImage with $JOBS jobs at nice $NICE (log: $log)"
kmake bzImage >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "make bzImage failed (log: $log)"; }

# The kernel must carry our initramfs byte for byte.
cmp -s "$obj/initramfs.cpio.zst" "$obj/usr/initramfs_inc_data" ||
	die "$obj/usr/initramfs_inc_data is not $INITRAMFS: the initramfs was not embedded"
cp "$obj/arch/x86/boot/bzImage" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
took=$(echo "$(date +%s.%N) - $start" | bc)
printf 'kernel: %s (%s, %s bytes, initramfs %s bytes embedded) in %.1f s\n' "$OUT" "$(cat "$obj/include/config/kernel.release")" \
	"$(stat -c %s "$OUT")" "$(stat -c %s "$INITRAMFS")" "$took"
