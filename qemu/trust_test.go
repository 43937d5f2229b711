package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTrustRollbackFreezeRotation drives one node against a real zgrid
// serve through a key rotation and two attacks, in order:
//
//  1. rotation: the root keys rotate the release key (root v2 revokes the
//     old one); the registry refuses a release signed by the revoked key;
//  2. freeze: the current release (v2, by the new key) has expired when
//     the node sees it; the node refuses it and retries;
//  3. rollback: the next release (v3) is below the floor the node's image
//     was built with (4); refused;
//  4. v4: the node walks root 1 -> 2 and boots it to ready.
func TestTrustRollbackFreezeRotation(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	g := newGrid(t)
	floor := []byte(`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":4}}}` + "\n")
	if err := os.WriteFile(filepath.Join(g.data, "tuf", "channels.json"), floor, 0o644); err != nil {
		t.Fatal(err)
	}
	tree := core0Tree(t)
	g.publish(tree, 1)
	g.serve()

	newKey := filepath.Join(g.dir, "release2.key")
	g.run("key", "new", "--out", newKey)
	g.run("root", "rotate", "--data", g.data, "--sign", g.rootKey, "--release-key", newKey+".pub")
	g.restart()
	if out, err := g.cmd("release", "publish", "--data", g.data, "--server", g.url(""), "--key", g.key, "--channel", "stable", "--version", "2",
		"--component", "name=core0,flist="+g.flistOf(tree)+",mount=/", "--entry", "/bin/core0"); err == nil || !strings.Contains(out, "release refused") {
		t.Fatalf("release by the revoked key: %v\n%s", err, out)
	}
	g.publishWith(newKey, "2s", tree, 2)
	time.Sleep(3 * time.Second)

	vm, _ := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-000000000006", g.registry())
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`targets \(release\): .*expired`)); err != nil {
		t.Fatal(err)
	}
	g.publishWith(newKey, "24h", tree, 3)
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`stable version 3 is below this node's floor 4 \(rollback refused\)`)); err != nil {
		t.Fatal(err)
	}
	g.publishWith(newKey, "24h", tree, 4, "--heartbeat", "2s")
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`trust: root rotated from version 1 to 2`, `release: stable v4`} {
		if vm.Count(regexp.MustCompile(want)) == 0 {
			t.Errorf("console never showed %q", want)
		}
	}
}

// cmd runs zgrid and returns its combined output and error, for commands
// expected to fail.
func (g *grid) cmd(args ...string) (string, error) {
	out, err := exec.Command(bins.zgrid, args...).CombinedOutput()
	return string(out), err
}

// flistOf packs tree (again: builds are deterministic) and returns its
// digest.
func (g *grid) flistOf(tree string) string {
	out := strings.Fields(g.run("flist", "build", "--data", g.data, tree))
	return out[len(out)-1]
}
