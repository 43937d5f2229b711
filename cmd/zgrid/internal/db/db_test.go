package db

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

func open(t *testing.T) *DB {
	t.Helper()
	d, err := Open(created(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestFarms(t *testing.T) {
	d := open(t)
	for _, n := range []string{"zeta", "alpha"} {
		if err := d.CreateFarm(registry.Farm{Name: n, Channel: "stable"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreateFarm(registry.Farm{Name: "alpha", Channel: "beta"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate farm: err=%v, want ErrExists", err)
	}
	f, err := d.Farm("alpha")
	if err != nil || f.Channel != "stable" {
		t.Fatalf("Farm(alpha) = %+v, %v", f, err)
	}
	if _, err := d.Farm("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Farm(nope): err=%v, want ErrNotFound", err)
	}
	fs, err := d.Farms()
	if err != nil || len(fs) != 2 || fs[0].Name != "alpha" || fs[1].Name != "zeta" {
		t.Fatalf("Farms() = %+v, %v", fs, err)
	}
}

func TestReleaseVersionsGrow(t *testing.T) {
	d := open(t)
	add := func(ch string, v uint64) error { return d.AddRelease(registry.ReleaseInfo{Channel: ch, Version: v}) }
	for _, tc := range []struct {
		ch   string
		v    uint64
		want error
	}{
		{"stable", 5, nil},
		{"stable", 5, ErrVersion},
		{"stable", 4, ErrVersion},
		{"stable", 300, nil},
		{"stable", 256, ErrVersion}, // lower than 300 though it sorts after 5 as text
		{"stable-x", 1, nil},        // a channel whose name extends another
		{"beta", 1, nil},
		{"beta", 2, nil},
	} {
		if err := add(tc.ch, tc.v); !errors.Is(err, tc.want) {
			t.Errorf("add %s/%d: err=%v, want %v", tc.ch, tc.v, err, tc.want)
		}
	}
	for ch, want := range map[string]uint64{"stable": 300, "beta": 2, "stable-x": 1} {
		r, err := d.LatestRelease(ch)
		if err != nil || r.Version != want {
			t.Errorf("LatestRelease(%s) = %d, %v; want %d", ch, r.Version, err, want)
		}
	}
	for _, ch := range []string{"nope", "stabl", "zzz"} {
		if _, err := d.LatestRelease(ch); !errors.Is(err, ErrNotFound) {
			t.Errorf("LatestRelease(%s): err=%v, want ErrNotFound", ch, err)
		}
	}
	rs, err := d.Releases("stable")
	if err != nil || len(rs) != 2 || rs[0].Version != 5 || rs[1].Version != 300 {
		t.Fatalf("Releases(stable) = %+v, %v", rs, err)
	}
	if all, _ := d.Releases(""); len(all) != 5 {
		t.Fatalf("Releases(\"\") has %d, want 5", len(all))
	}
	if err := add("", 1); err == nil {
		t.Error("empty channel accepted")
	}
	if err := add("a\x00b", 1); err == nil {
		t.Error("channel with NUL accepted")
	}
}

// Two publishers racing for the same version: exactly one wins.
func TestConcurrentPublish(t *testing.T) {
	d := open(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.AddRelease(registry.ReleaseInfo{Channel: "c", Version: 7})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrVersion):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d publishes of version 7 succeeded, want 1", ok)
	}
}

func TestNodes(t *testing.T) {
	d := open(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rep := registry.StatusReport{NodeID: "n1", Source: "pid1", State: "ready", Token: tok(1)}
	if err := d.RecordStatus(rep, nil, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status before boot: err=%v, want ErrNotFound", err)
	}
	req := registry.BootRequest{NodeID: "n1", Farm: "f", Agent: "test/1", Profile: identity.Profile{CPUs: 2}}
	if err := d.RecordBoot(Boot{Request: req, Served: 3, Token: tok(1)}, t0); err != nil {
		t.Fatal(err)
	}
	rep.ReleaseVersion = 3
	rep.Timeline = []timeline.Step{{Name: "net", StartMS: 1, EndMS: 2}}
	if err := d.RecordStatus(rep, nil, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: "n0", Farm: "f"}, Served: 3, Token: tok(0)}, t0); err != nil {
		t.Fatal(err)
	}
	n, err := d.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%v %v ready pid1 3 3 net 2", t0, t0.Add(time.Minute))
	got := fmt.Sprintf("%v %v %s %s %d %d %s %d", n.FirstSeen, n.LastSeen, n.State, n.Source, n.ReleaseServed, n.ReleaseReported, n.Timeline[0].Name, n.Profile.CPUs)
	if got != want {
		t.Fatalf("node = %s\nwant   %s", got, want)
	}
	// A new boot keeps first-seen and resets the state.
	if err := d.RecordBoot(Boot{Request: req, Served: 4, Token: tok(2)}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, _ = d.Node("n1")
	if !n.FirstSeen.Equal(t0) || n.State != registry.StateBooting || n.ReleaseServed != 4 || n.Timeline != nil {
		t.Fatalf("after reboot: %+v", n)
	}
	// The highest release a node reported running stays when it later
	// runs an older one.
	for i, v := range []uint64{5, 2} {
		rep.ReleaseVersion, rep.Token = v, tok(2)
		if err := d.RecordStatus(rep, nil, t0.Add(time.Duration(i+2)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ = d.Node("n1"); n.HighestRelease != 5 || n.ReleaseReported != 2 {
		t.Fatalf("highest %d, reported %d after running 3, 5, 2: want 5, 2", n.HighestRelease, n.ReleaseReported)
	}
	if err := d.RecordBoot(Boot{Request: req, Served: 4, Token: tok(2)}, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ns, _ := d.Nodes()
	if len(ns) != 2 || ns[0].ID != "n0" {
		t.Fatalf("Nodes() = %+v", ns)
	}
	if c, err := d.NodeStates(); c[registry.StateBooting] != 2 || len(c) != 1 || err != nil {
		t.Fatalf("NodeStates() = %v, %v", c, err)
	}
	if n, err := d.NodeCount(); n != 2 || err != nil {
		t.Fatalf("NodeCount() = %d, %v; want 2", n, err)
	}
}

// tok is a distinct well-formed boot token for each i.
func tok(i int) string { return fmt.Sprintf("%064x", i+1) }

// TestStatusTokens: a report needs one of the node's last KeepTokens boot
// tokens; another node's token, an older one, or none is ErrToken.
func TestStatusTokens(t *testing.T) {
	d := open(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	boot := func(id string, i int) {
		t.Helper()
		if err := d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: id, Farm: "f"}, Token: tok(i)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	status := func(id string, i int) error {
		return d.RecordStatus(registry.StatusReport{NodeID: id, Source: "pid1", State: "ready", Token: tok(i)}, nil, t0)
	}
	boot("other", 100)
	for i := range KeepTokens + 2 {
		boot("n1", i)
	}
	// Tokens 0 and 1 were pushed out by the four boots after them.
	for i := range KeepTokens + 2 {
		err := status("n1", i)
		if old := i < 2; old != errors.Is(err, ErrToken) || (!old && err != nil) {
			t.Errorf("status with boot token %d: err=%v, want ErrToken=%v", i, err, old)
		}
	}
	if err := status("n1", 100); !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "status for node n1: boot token does not match") {
		t.Errorf("status with another node's token: err=%v", err)
	}
	if err := d.RecordStatus(registry.StatusReport{NodeID: "n1", Source: "pid1", State: "ready"}, nil, t0); !errors.Is(err, ErrToken) {
		t.Errorf("status without a token: err=%v, want ErrToken", err)
	}
	if err := d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: "n2"}}, t0); err == nil || !strings.Contains(err.Error(), "without a token") {
		t.Errorf("boot without a token: err=%v", err)
	}
	if _, err := d.Node("n2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused boot left a node record: %v", err)
	}
}

// TestMaxNodes: once MaxNodes nodes are known a new ID is ErrFull and
// leaves no record; known nodes boot again; the count survives reopening
// and is rebuilt for a database that lacks it.
func TestMaxNodes(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	boot := func(id string) error {
		return d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: id}, Token: tok(0), MaxNodes: 3}, t0)
	}
	for _, id := range []string{"a", "b", "c", "a"} {
		if err := boot(id); err != nil {
			t.Fatalf("boot %s: %v", id, err)
		}
	}
	if err := boot("d"); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "node d is new and the registry holds 3 nodes") {
		t.Fatalf("boot of a fourth node: err=%v, want ErrFull naming it", err)
	}
	if _, err := d.Node("d"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused node recorded: %v", err)
	}
	if err := boot("b"); err != nil {
		t.Fatalf("known node refused at the limit: %v", err)
	}
	// A database from before the counter: drop it, reopen, count again.
	if err := d.b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Delete(kNodes) }); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = Open(p, time.Second); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := d.NodeCount(); n != 3 || err != nil {
		t.Fatalf("NodeCount() after reopening = %d, %v; want 3", n, err)
	}
	if err := boot("d"); !errors.Is(err, ErrFull) {
		t.Fatalf("limit forgotten after reopening: %v", err)
	}
}

// TestNodeStates: the per-state counts follow every boot and report, and
// only committed ones; they survive reopening, are rebuilt once for a
// database that lacks them, and are read without reading node records.
func TestNodeStates(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Close() }()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	boot := func(id string, i int) func() error {
		return func() error {
			return d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: id}, Token: tok(i), MaxNodes: 2}, t0)
		}
	}
	report := func(id, state string, i int) func() error {
		return func() error {
			return d.RecordStatus(registry.StatusReport{NodeID: id, Source: "pid1", State: state, Reason: "r", Token: tok(i)}, nil, t0)
		}
	}
	steps := []struct {
		name string
		do   func() error
		fail bool
		want map[string]int
	}{
		{"boot n1", boot("n1", 1), false, map[string]int{"booting": 1}},
		{"boot n2", boot("n2", 2), false, map[string]int{"booting": 2}},
		{"n1 ready", report("n1", "ready", 1), false, map[string]int{"booting": 1, "ready": 1}},
		{"n1 ready again", report("n1", "ready", 1), false, map[string]int{"booting": 1, "ready": 1}},
		{"n2 failed", report("n2", "failed", 2), false, map[string]int{"failed": 1, "ready": 1}},
		{"n1 reboots", boot("n1", 3), false, map[string]int{"booting": 1, "failed": 1}},
		{"wrong token", report("n2", "ready", 1), true, map[string]int{"booting": 1, "failed": 1}},
		{"unknown node", report("n9", "ready", 9), true, map[string]int{"booting": 1, "failed": 1}},
		{"node limit", boot("n3", 4), true, map[string]int{"booting": 1, "failed": 1}},
		{"n2 boots", boot("n2", 5), false, map[string]int{"booting": 2}},
	}
	check := func(when string, want map[string]int) {
		t.Helper()
		got, err := d.NodeStates()
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: NodeStates() = %v, %v; want %v", when, got, err, want)
		}
	}
	for _, st := range steps {
		if err := st.do(); (err != nil) != st.fail {
			t.Fatalf("%s: err = %v, want failure %v", st.name, err, st.fail)
		}
		check(st.name, st.want)
	}
	want := steps[len(steps)-1].want
	reopen := func() {
		t.Helper()
		d.Close()
		if d, err = Open(p, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	reopen()
	check("reopened", want)

	// A database from before the counters: they are rebuilt from the
	// records on opening.
	err = d.b.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		for _, k := range [][]byte{kStates, stateKey("booting"), stateKey("ready")} {
			if err := m.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reopen()
	check("rebuilt", want)

	// Node records are not read: one no longer decodes, and the counts
	// still come.
	if err := d.b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bNodes).Put([]byte("n1"), []byte("{garbage")) }); err != nil {
		t.Fatal(err)
	}
	check("with a damaged record", want)
}

func TestOpenLocked(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := Open(p, 50*time.Millisecond); err == nil {
		t.Fatal("second Open of a locked database succeeded")
	}
}

// created is the path of a database Create made in a new directory.
func created(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zgrid.db")
	if err := Create(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeleteNodeAndFarm(t *testing.T) {
	d := open(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range []string{"lab", "empty"} {
		if err := d.CreateFarm(registry.Farm{Name: f, Channel: "stable"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"n1", "n2"} {
		if err := d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: id, Farm: "lab"}, Served: 1, Token: tok(i)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.RecordStatus(registry.StatusReport{NodeID: "n2", Source: "pid1", State: "ready", Token: tok(1)}, nil, t0); err != nil {
		t.Fatal(err)
	}
	if n, err := d.DeleteFarm("lab", false); !errors.Is(err, ErrInUse) || n != 2 || !strings.Contains(err.Error(), "farm lab has 2 nodes") {
		t.Fatalf("DeleteFarm with nodes = %d, %v", n, err)
	}
	n, err := d.DeleteNode("n2")
	if err != nil || n.State != "ready" {
		t.Fatalf("DeleteNode = %+v, %v", n, err)
	}
	if _, err := d.Node("n2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted node still there: %v", err)
	}
	if _, err := d.DeleteNode("n2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	states, _ := d.NodeStates()
	count, _ := d.NodeCount()
	if count != 1 || states["ready"] != 0 || states["booting"] != 1 {
		t.Errorf("after delete: %d nodes, states %v", count, states)
	}
	// Its tokens went with it: a report with its old token finds no node.
	if err := d.RecordStatus(registry.StatusReport{NodeID: "n2", Source: "core0", State: "ready", Token: tok(1)}, nil, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("report for a deleted node: %v", err)
	}
	if _, err := d.DeleteFarm("empty", false); err != nil {
		t.Errorf("DeleteFarm of an empty farm: %v", err)
	}
	if n, err := d.DeleteFarm("lab", true); err != nil || n != 1 {
		t.Errorf("forced DeleteFarm = %d, %v", n, err)
	}
	if _, err := d.Farm("lab"); !errors.Is(err, ErrNotFound) {
		t.Errorf("forced delete left the farm: %v", err)
	}
	if _, err := d.Node("n1"); err != nil {
		t.Errorf("forced farm delete removed its node: %v", err)
	}
}
