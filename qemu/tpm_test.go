package qemu

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

// tpmVM is a VM with a swtpm whose state lives in stateDir: the same dir is
// the same TPM across boots, as a machine's TPM is across reboots.
func tpmVM(t *testing.T, stateDir, uuid, farm string, g *grid, extra string) *VM {
	t.Helper()
	return &VM{UUID: uuid, Extra: testenv.SwtpmForQEMU(t, stateDir),
		Append: strings.TrimSpace(fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=%s %s", g.registry(), farm, extra))}
}

// attestation is the node's identity record as the admin API shows it.
func attestation(t *testing.T, g *grid, id string) (kind, state, detail string) {
	t.Helper()
	m, err := g.node(id)
	if err != nil {
		t.Fatal(err)
	}
	ident, _ := m["identity"].(map[string]any)
	att, _ := ident["attestation"].(map[string]any)
	kind, _ = ident["kind"].(string)
	state, _ = att["state"].(string)
	detail, _ = att["detail"].(string)
	return kind, state, detail
}

// TestTPMIdentity boots one TPM twice and another once: the node ID is the
// TPM's (not the SMBIOS UUID's), enrollment binds the key to the EK, the
// first boot is attested, a boot with a changed command line is not, and a
// second TPM is a second node.
func TestTPMIdentity(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	stateA, stateB := filepath.Join(g.dir, "tpm-a"), filepath.Join(g.dir, "tpm-b")

	boot := func(state, uuid, extra, name string) (*VM, string) {
		vm := tpmVM(t, state, uuid, "demo", g, extra)
		vm.Kernel, vm.Initrd = kernel, g.initramfs(kver)
		vm.Monitor = filepath.Join(g.dir, name+".sock")
		runVM(t, g, vm, name+".log")
		line, err := vm.WaitFor(ctx, reIdentity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitFor(ctx, reReady); err != nil {
			t.Fatal(err)
		}
		vm.Stop()
		return vm, reIdentity.FindStringSubmatch(line)[1]
	}

	vm1, id1 := boot(stateA, "5a1c0b0e-0000-4000-8000-0000000000a1", "", "tpm1")
	if !strings.Contains(vm1.Tail(400), "from the TPM's identity key") || vm1.Count(regexp.MustCompile(`enrollment: activating`)) != 1 {
		t.Errorf("first boot did not enroll through credential activation:\n%s", vm1.Tail(60))
	}
	if kind, state, detail := attestation(t, g, id1); kind != "tpm" || state != "attested" {
		t.Fatalf("first boot: identity %q, attestation %q (%s), want tpm, attested", kind, state, detail)
	}
	out := g.run("node", "show", id1, "--data", g.data, "--server", g.url(""))
	for _, want := range []string{"tpm-attested", "ek          rsa2048 sha256:", "identity key activated: true", "event 3     pcr 15 component", "firmware    log matches the quoted PCRs"} {
		if !strings.Contains(out, want) {
			t.Errorf("node show lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "firmware ") {
			t.Logf("figure: SeaBIOS with swtpm, %s", strings.Join(strings.Fields(l), " "))
		}
	}

	// The same TPM under another SMBIOS UUID, with one more kernel
	// parameter: the same node, known already (no enrollment), not attested.
	vm2, id2 := boot(stateA, "5a1c0b0e-0000-4000-8000-0000000000a2", "zeroboot.debug", "tpm2")
	if id2 != id1 {
		t.Errorf("same TPM state: node %s, then %s", id1, id2)
	}
	if vm2.Count(regexp.MustCompile(`enrollment:`)) != 0 {
		t.Errorf("an enrolled node enrolled again:\n%s", vm2.Tail(60))
	}
	if _, state, detail := attestation(t, g, id2); state != "mismatch" || !strings.Contains(detail, "cmdline") {
		t.Errorf("tampered command line: attestation %q (%s), want mismatch naming the cmdline event", state, detail)
	}

	_, id3 := boot(stateB, "5a1c0b0e-0000-4000-8000-0000000000a1", "", "tpm3")
	if id3 == id1 {
		t.Errorf("a fresh TPM gave the first TPM's node ID %s", id1)
	}
	if _, state, _ := attestation(t, g, id3); state != "attested" {
		t.Errorf("second TPM: attestation %q, want attested", state)
	}

	// The same boot without a TPM, for the figures: the DMI path.
	dmi := &VM{UUID: "5a1c0b0e-0000-4000-8000-0000000000a4", Append: fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=demo", g.registry())}
	dmi, id4 := bootVM(t, ctx, g, dmi)
	if _, err := dmi.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	if kind, state, _ := attestation(t, g, id4); kind != "dmi" || state != "" {
		t.Errorf("node without a TPM: identity %q, attestation %q; want dmi and none", kind, state)
	}
	figures := regexp.MustCompile(`^(identity|registry) +[0-9.]+ +[0-9.]+ +[0-9.]+ +ok|created in [0-9]+ ms|tpm: [0-9]+ quotes`)
	for i, vm := range []*VM{vm1, vm2, dmi} {
		for _, l := range matching(vm, figures) {
			t.Logf("figure: %s: %s", []string{"TPM, enrolling", "TPM, enrolled", "DMI"}[i], strings.Join(strings.Fields(l), " "))
		}
	}
}

// TestTPMApprovalFarm holds a new node until an admin approves it; the node
// then boots without a reboot.
func TestTPMApprovalFarm(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	g.run("farm", "create", "lab", "--channel", "stable", "--enroll", "approval", "--data", g.data, "--server", g.url(""))
	vm := tpmVM(t, filepath.Join(g.dir, "tpm"), "5a1c0b0e-0000-4000-8000-0000000000b1", "lab", g, "")
	vm, id := bootVM(t, ctx, g, vm)
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`awaits approval in farm lab: zgrid node approve `+id)); err != nil {
		t.Fatal(err)
	}
	if m, err := g.node(id); err != nil || m["state"] != "pending" {
		t.Fatalf("held node: state %v (%v), want pending", m["state"], err)
	}
	approved := time.Now()
	g.run("node", "approve", id, "--data", g.data, "--server", g.url(""))
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: approval to Core-0 ready %.1f s (the node asks again every 5 s at most)", time.Since(approved).Seconds())
	if _, state, detail := attestation(t, g, id); state != "attested" {
		t.Errorf("approved node: attestation %q (%s), want attested", state, detail)
	}
}

// TestFarmRequiresTPM refuses a node without a TPM with a reason on its
// console, and takes a CI VM with no identity at all only once the farm
// allows ephemeral nodes (without a reboot).
func TestFarmRequiresTPM(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	g.run("farm", "create", "secure", "--channel", "stable", "--require-tpm", "--data", g.data, "--server", g.url(""))
	vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-0000000000c1", Append: fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=secure", g.registry())}
	vm, _ = bootVM(t, ctx, g, vm)
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`refused the boot \(HTTP 403\): farm secure requires a TPM identity; node n[0-9a-f]+ is a dmi node \(its TPM: open /dev/tpmrm0: no TPM\)`)); err != nil {
		t.Fatal(err)
	}
	vm.Stop()

	// No SMBIOS UUID, QEMU's locally administered MAC: nothing to derive
	// an ID from.
	ci := &VM{Append: fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=demo", g.registry())}
	startVM(t, g, ci)
	line, err := ci.WaitFor(ctx, regexp.MustCompile(`using ephemeral ID (e[0-9a-f]{32}) for this boot`))
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`e[0-9a-f]{32}`).FindString(line)
	if _, err := ci.WaitFor(ctx, regexp.MustCompile(`takes no ephemeral nodes: zgrid farm set demo --allow-ephemeral`)); err != nil {
		t.Fatal(err)
	}
	g.run("farm", "set", "demo", "--channel", "stable", "--allow-ephemeral", "--data", g.data, "--server", g.url(""))
	if _, err := ci.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	if kind, _, _ := attestation(t, g, id); kind != "ephemeral" {
		t.Errorf("CI node %s: identity kind %q, want ephemeral", id, kind)
	}
}
