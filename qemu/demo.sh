#!/usr/bin/env bash
# make demo: a local registry on loopback, a signed demo release, and one
# node booting it in QEMU until Core-0 reports ready. Exit 0 only then.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
KERNEL=${KERNEL:-$(ls /boot/vmlinuz-* | sort -V | tail -1)}
KVER=${KERNEL#/boot/vmlinuz-}
ACCEL=${ZEROBOOT_QEMU_ACCEL:-tcg}
TIMEOUT=${DEMO_TIMEOUT:-300}
HOST=192.0.2.2 # the host's loopback as seen from QEMU's user network
PORT=${DEMO_PORT:-$((20000 + RANDOM % 20000))}
work=$(mktemp -d /tmp/zeroboot-demo.XXXXXX)
pids=()

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
cleanup() {
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

say "control plane in $work"
$BIN/zgrid init --data "$work/grid" --san "$HOST" >"$work/init.log"
$BIN/zgrid key new --out "$work/root.key" >/dev/null
$BIN/zgrid key new --out "$work/release.key" >/dev/null
$BIN/zgrid root init --data "$work/grid" --root-key "$work/root.key.pub" --sign "$work/root.key" \
	--release-key "$work/release.key.pub" --channel stable >/dev/null

say "packing the demo Core-0 into an flist"
mkdir -p "$work/core0/bin" && cp "$BIN/core0" "$work/core0/bin/core0"
flist=$($BIN/zgrid flist build --data "$work/grid" "$work/core0" | tail -1)
say "flist $flist"
$BIN/zgrid release publish --data "$work/grid" --key "$work/release.key" \
	--channel stable --version 1 --expires 24h \
	--component "name=core0,flist=$flist,mount=/" --entry /bin/core0 --arg --heartbeat --arg 5s >/dev/null

say "starting zgrid serve on 127.0.0.1:$PORT"
$BIN/zgrid serve --data "$work/grid" --listen "127.0.0.1:$PORT" >"$work/serve.log" 2>&1 &
server=$!
pids+=($server)
export ZGRID_SERVER="https://127.0.0.1:$PORT"
for _ in $(seq 100); do
	$BIN/zgrid farm create demo --channel stable --data "$work/grid" >/dev/null 2>&1 && break
	if ! kill -0 "$server" 2>/dev/null; then
		say "FAILED: zgrid serve exited:"
		cat "$work/serve.log"
		exit 1
	fi
	sleep 0.2
done
$BIN/zgrid farm list --data "$work/grid" | grep -qw demo || { say "FAILED: farm demo not created; zgrid serve log in $work/serve.log"; KEEP=1; exit 1; }

say "building the initramfs for kernel $KVER"
$BIN/mkinitramfs -init "$BIN/init" -kernel-version "$KVER" \
	-file "$work/grid/tuf/root/1.root.json:/etc/zeroboot/root.json" \
	-file "$work/grid/tuf/channels.json:/etc/zeroboot/channels.json" \
	-file "$work/grid/tls/ca.pem:/etc/zeroboot/ca.pem" \
	-o "$work/initramfs.cpio.zst"

say "booting the node in QEMU ($ACCEL); console follows"
qemu-system-x86_64 -accel "$ACCEL" -m 1024M -smp 2 -nodefaults -no-user-config \
	-display none -no-reboot -serial stdio \
	-kernel "$KERNEL" -initrd "$work/initramfs.cpio.zst" \
	-append "console=ttyS0 panic=-1 zeroboot.registry=https://$HOST:$PORT zeroboot.farm=demo" \
	-netdev "user,id=n0,net=192.0.2.0/24" -device virtio-net-pci,netdev=n0 -device virtio-rng-pci \
	-uuid 5a1c0b0e-de70-4000-8000-000000000001 </dev/null >"$work/console.log" 2>&1 &
qemu=$!
pids+=($qemu)
# Show the console as it comes; tail ends with QEMU.
tail -n +1 -f --pid="$qemu" "$work/console.log" | sed -u 's/^/  | /' &
pids+=($!)

start=$SECONDS
while :; do
	if $BIN/zgrid node list --data "$work/grid" 2>/dev/null | grep -qw ready; then break; fi
	if ! kill -0 "$qemu" 2>/dev/null; then
		say "FAILED: QEMU exited before the node was ready; console in $work/console.log"
		KEEP=1
		exit 1
	fi
	if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
		say "FAILED: no node ready after ${TIMEOUT}s; console in $work/console.log"
		KEEP=1
		exit 1
	fi
	sleep 1
done
sleep 1
echo
$BIN/zgrid node list --data "$work/grid"
node=$($BIN/zgrid node list --data "$work/grid" | awk '$0 ~ /ready/ {print $1; exit}')
echo
$BIN/zgrid node show --data "$work/grid" "$node"
echo
say "SUCCESS: node $node booted the signed release and Core-0 reported ready in $((SECONDS - start))s"
