// Package dbtest is the conformance suite of db.Records: the same
// assertions against every backend (bbolt, PostgreSQL), so that the
// registry behaves the same whichever holds its records.
package dbtest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// Open returns two handles on one new, empty set of records, closed when
// the test ends. They may be the same handle (bbolt, one process); for a
// shared backend they are independent, as two replicas' would be, and
// the concurrent cases split their callers between them.
type Open func(t *testing.T) (a, b db.Records)

// Run runs every case against open's records.
func Run(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, db.Records, db.Records)
	}{
		{"Farms", farms},
		{"ReleaseVersionsGrow", releaseVersionsGrow},
		{"ConcurrentPublish", concurrentPublish},
		{"Nodes", nodes},
		{"StatusTokens", statusTokens},
		{"MaxNodes", maxNodes},
		{"ConcurrentBoots", concurrentBoots},
		{"NodeStates", nodeStates},
		{"DeleteNodeAndFarm", deleteNodeAndFarm},
		{"ApproveAndAllow", approveAndAllow},
		{"Deny", deny},
		{"Fallback", fallback},
		{"Tickets", tickets},
		{"ConcurrentTake", concurrentTake},
		{"TicketLimit", ticketLimit},
		{"Secret", secret},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := open(t)
			c.run(t, a, b)
		})
	}
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Tok is a distinct well-formed boot token for each i.
func Tok(i int) string { return fmt.Sprintf("%064x", i+1) }

func farms(t *testing.T, d, _ db.Records) {
	for _, n := range []string{"zeta", "alpha"} {
		if err := d.CreateFarm(records.Farm{Name: n, Channel: "stable", Created: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreateFarm(records.Farm{Name: "alpha", Channel: "beta"}); !errors.Is(err, db.ErrExists) {
		t.Fatalf("duplicate farm: err=%v, want ErrExists", err)
	}
	f, err := d.Farm("alpha")
	if err != nil || f.Channel != "stable" {
		t.Fatalf("Farm(alpha) = %+v, %v", f, err)
	}
	if _, err := d.Farm("nope"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("Farm(nope): err=%v, want ErrNotFound", err)
	}
	fs, err := d.Farms()
	if err != nil || len(fs) != 2 || fs[0].Name != "alpha" || fs[1].Name != "zeta" {
		t.Fatalf("Farms() = %+v, %v", fs, err)
	}
	// An update keeps the creation time, whatever the caller sent.
	u, err := d.UpdateFarm(records.Farm{Name: "alpha", Channel: "beta", Created: t0.Add(time.Hour)})
	if err != nil || !u.Created.Equal(t0) || u.Channel != "beta" {
		t.Fatalf("UpdateFarm(alpha) = %+v, %v; want channel beta, created %v", u, err, t0)
	}
	if f, _ := d.Farm("alpha"); f.Channel != "beta" || !f.Created.Equal(t0) {
		t.Fatalf("after update: %+v", f)
	}
	if _, err := d.UpdateFarm(records.Farm{Name: "nope"}); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("UpdateFarm(nope): err=%v, want ErrNotFound", err)
	}
}

func releaseVersionsGrow(t *testing.T, d, _ db.Records) {
	add := func(ch string, v uint64) error {
		return d.AddRelease(records.ReleaseInfo{Channel: ch, Version: v, Published: t0})
	}
	for _, tc := range []struct {
		ch   string
		v    uint64
		want error
	}{
		{"stable", 5, nil},
		{"stable", 5, db.ErrVersion},
		{"stable", 4, db.ErrVersion},
		{"stable", 300, nil},
		{"stable", 256, db.ErrVersion}, // lower than 300 though it sorts after 5 as text
		{"stable-x", 1, nil},           // a channel whose name extends another
		{"beta", 1, nil},
		{"beta", 2, nil},
	} {
		if err := add(tc.ch, tc.v); !errors.Is(err, tc.want) {
			t.Errorf("add %s/%d: err=%v, want %v", tc.ch, tc.v, err, tc.want)
		}
	}
	if err := add("stable", 7); err == nil || !strings.Contains(err.Error(), "channel stable is at version 300") {
		t.Errorf("add stable/7: err=%v, want one naming version 300", err)
	}
	for ch, want := range map[string]uint64{"stable": 300, "beta": 2, "stable-x": 1} {
		r, err := d.LatestRelease(ch)
		if err != nil || r.Version != want || r.Channel != ch {
			t.Errorf("LatestRelease(%s) = %s/%d, %v; want %d", ch, r.Channel, r.Version, err, want)
		}
	}
	for _, ch := range []string{"nope", "stabl", "zzz"} {
		if _, err := d.LatestRelease(ch); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("LatestRelease(%s): err=%v, want ErrNotFound", ch, err)
		}
	}
	rs, err := d.Releases("stable")
	if err != nil || len(rs) != 2 || rs[0].Version != 5 || rs[1].Version != 300 {
		t.Fatalf("Releases(stable) = %+v, %v", rs, err)
	}
	all, _ := d.Releases("")
	var got []string
	for _, r := range all {
		got = append(got, fmt.Sprintf("%s/%d", r.Channel, r.Version))
	}
	if want := "beta/1 beta/2 stable/5 stable/300 stable-x/1"; strings.Join(got, " ") != want {
		t.Fatalf("Releases(\"\") = %s, want %s", strings.Join(got, " "), want)
	}
	if err := add("", 1); err == nil {
		t.Error("empty channel accepted")
	}
	if err := add("a\x00b", 1); err == nil {
		t.Error("channel with NUL accepted")
	}
}

// Publishers racing for the same version, through both handles: exactly
// one wins.
func concurrentPublish(t *testing.T, a, b db.Records) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pick(i, a, b).AddRelease(records.ReleaseInfo{Channel: "c", Version: 7})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, db.ErrVersion):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d publishes of version 7 succeeded, want 1", ok)
	}
}

func pick(i int, a, b db.Records) db.Records {
	if i%2 == 0 {
		return a
	}
	return b
}

func nodes(t *testing.T, d, _ db.Records) {
	rep := registry.StatusReport{NodeID: "n1", Source: "pid1", State: "ready", Token: Tok(1)}
	if err := d.RecordStatus(rep, nil, t0); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("status before boot: err=%v, want ErrNotFound", err)
	}
	req := registry.BootRequest{NodeID: "n1", Farm: "f", Agent: "test/1", Profile: identity.Profile{CPUs: 2}}
	if err := d.RecordBoot(db.Boot{Request: req, Served: 3, Token: Tok(1)}, t0); err != nil {
		t.Fatal(err)
	}
	rep.ReleaseVersion = 3
	rep.Timeline = []timeline.Step{{Name: "net", StartMS: 1, EndMS: 2}}
	if err := d.RecordStatus(rep, nil, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: "n0", Farm: "f"}, Served: 3, Token: Tok(0)}, t0); err != nil {
		t.Fatal(err)
	}
	n, err := d.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%v %v ready pid1 3 3 net 2 f test/1", t0, t0.Add(time.Minute))
	got := fmt.Sprintf("%v %v %s %s %d %d %s %d %s %s", n.FirstSeen.UTC(), n.LastSeen.UTC(), n.State, n.Source, n.ReleaseServed, n.ReleaseReported, n.Timeline[0].Name, n.Profile.CPUs, n.Farm, n.Agent)
	if got != want {
		t.Fatalf("node = %s\nwant   %s", got, want)
	}
	// A new boot keeps first-seen and resets the state.
	if err := d.RecordBoot(db.Boot{Request: req, Served: 4, Token: Tok(2)}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, _ = d.Node("n1")
	if !n.FirstSeen.Equal(t0) || n.State != registry.StateBooting || n.ReleaseServed != 4 || n.ReleaseReported != 0 || n.Timeline != nil || !n.BootAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after reboot: %+v", n)
	}
	// ... and keeps the boot before in its history.
	if len(n.Boots) != 1 {
		t.Fatalf("after reboot: boots %+v, want the first", n.Boots)
	}
	if b := n.Boots[0]; !b.At.Equal(t0) || b.Release != 3 || b.Reported != 3 || b.State != registry.StateReady || b.Source != "pid1" || len(b.Timeline) != 1 || b.Timeline[0].Name != "net" {
		t.Fatalf("the first boot kept as %+v", b)
	}
	// The highest release a node reported running stays when it later
	// runs an older one.
	for i, v := range []uint64{5, 2} {
		rep.ReleaseVersion, rep.Token = v, Tok(2)
		if err := d.RecordStatus(rep, nil, t0.Add(time.Duration(i+2)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ = d.Node("n1"); n.HighestRelease != 5 || n.ReleaseReported != 2 {
		t.Fatalf("highest %d, reported %d after running 3, 5, 2: want 5, 2", n.HighestRelease, n.ReleaseReported)
	}
	if err := d.RecordBoot(db.Boot{Request: req, Served: 4, Token: Tok(2)}, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ns, _ := d.Nodes()
	if len(ns) != 2 || ns[0].ID != "n0" || ns[1].ID != "n1" {
		t.Fatalf("Nodes() = %+v", ns)
	}
	if b := ns[1].Boots; len(b) != 2 || b[0].Release != 4 || b[0].Reported != 2 || b[1].Release != 3 {
		t.Fatalf("n1's boots after three: %+v, want releases 4 (ran 2) and 3", b)
	}
	if c, err := d.NodeStates(); c[registry.StateBooting] != 2 || len(c) != 1 || err != nil {
		t.Fatalf("NodeStates() = %v, %v", c, err)
	}
	if n, err := d.NodeCount(); n != 2 || err != nil {
		t.Fatalf("NodeCount() = %d, %v; want 2", n, err)
	}
}

// A report needs one of the node's last KeepTokens boot tokens; another
// node's token, an older one, or none is ErrToken.
func statusTokens(t *testing.T, d, _ db.Records) {
	boot := func(id string, i int) {
		t.Helper()
		if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: id, Farm: "f"}, Token: Tok(i)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	status := func(id string, i int) error {
		return d.RecordStatus(registry.StatusReport{NodeID: id, Source: "pid1", State: "ready", Token: Tok(i)}, nil, t0)
	}
	boot("other", 100)
	for i := range db.KeepTokens + 2 {
		boot("n1", i)
	}
	// Tokens 0 and 1 were pushed out by the four boots after them.
	for i := range db.KeepTokens + 2 {
		err := status("n1", i)
		if old := i < 2; old != errors.Is(err, db.ErrToken) || (!old && err != nil) {
			t.Errorf("status with boot token %d: err=%v, want ErrToken=%v", i, err, old)
		}
	}
	if err := status("n1", 100); !errors.Is(err, db.ErrToken) || !strings.Contains(err.Error(), "status for node n1: boot token does not match") {
		t.Errorf("status with another node's token: err=%v", err)
	}
	if err := d.RecordStatus(registry.StatusReport{NodeID: "n1", Source: "pid1", State: "ready"}, nil, t0); !errors.Is(err, db.ErrToken) {
		t.Errorf("status without a token: err=%v, want ErrToken", err)
	}
	if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: "n2"}}, t0); err == nil || !strings.Contains(err.Error(), "without a token") {
		t.Errorf("boot without a token: err=%v", err)
	}
	if _, err := d.Node("n2"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("a refused boot left a node record: %v", err)
	}
	if n, _ := d.NodeCount(); n != 2 {
		t.Errorf("NodeCount() = %d after a refused boot, want 2", n)
	}
}

// Once MaxNodes nodes are known a new ID is ErrFull and leaves no record;
// known nodes boot again, and so do pending ones.
func maxNodes(t *testing.T, d, _ db.Records) {
	boot := func(id string) error {
		return d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: id}, Token: Tok(0), MaxNodes: 3}, t0)
	}
	for _, id := range []string{"a", "b", "a"} {
		if err := boot(id); err != nil {
			t.Fatalf("boot %s: %v", id, err)
		}
	}
	if err := d.RecordPending(registry.BootRequest{NodeID: "c"}, records.Identity{Kind: registry.KindDMI}, 3, t0); err != nil {
		t.Fatalf("pending c: %v", err)
	}
	if err := boot("d"); !errors.Is(err, db.ErrFull) || !strings.Contains(err.Error(), "node d is new and the registry holds 3 nodes") {
		t.Fatalf("boot of a fourth node: err=%v, want ErrFull naming it", err)
	}
	if err := d.RecordPending(registry.BootRequest{NodeID: "e"}, records.Identity{}, 3, t0); !errors.Is(err, db.ErrFull) {
		t.Fatalf("pending fifth node: err=%v, want ErrFull", err)
	}
	for _, id := range []string{"d", "e"} {
		if _, err := d.Node(id); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("refused node %s recorded: %v", id, err)
		}
	}
	for _, id := range []string{"b", "c"} {
		if err := boot(id); err != nil {
			t.Fatalf("known node %s refused at the limit: %v", id, err)
		}
	}
	if n, err := d.NodeCount(); n != 3 || err != nil {
		t.Fatalf("NodeCount() = %d, %v; want 3", n, err)
	}
	if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: "f"}, Token: Tok(0)}, t0); err != nil {
		t.Fatalf("boot without a limit: %v", err)
	}
}

// Boots at once through both handles: every node is recorded, once, the
// limit holds exactly, and the counts agree with the records.
func concurrentBoots(t *testing.T, a, b db.Records) {
	const limit, newIDs, rounds = 30, 60, 3
	var wg sync.WaitGroup
	errs := make([]error, newIDs*rounds)
	start := make(chan struct{}) // all at once, not in the order started
	for r := range rounds {
		for i := range newIDs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				k := r*newIDs + i
				errs[k] = pick(k, a, b).RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: fmt.Sprintf("n%02d", i)}, Token: Tok(k), MaxNodes: limit}, t0)
			}()
		}
	}
	close(start)
	wg.Wait()
	booted := map[string]bool{}
	for k, err := range errs {
		switch {
		case err == nil:
			booted[fmt.Sprintf("n%02d", k%newIDs)] = true
		case !errors.Is(err, db.ErrFull):
			t.Errorf("boot %d: %v", k, err)
		}
	}
	ns, err := b.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	count, _ := a.NodeCount()
	states, _ := b.NodeStates()
	if len(ns) != limit || count != limit || states[registry.StateBooting] != limit || len(booted) != limit {
		t.Fatalf("%d records, NodeCount %d, states %v, %d IDs answered: want %d of each", len(ns), count, states, len(booted), limit)
	}
	for _, n := range ns {
		if !booted[n.ID] {
			t.Errorf("node %s recorded though every boot of it was refused", n.ID)
		}
	}
	// Reports through the other handle, at once, one with each boot's
	// token: fewer boots than KeepTokens each, so every answered boot's
	// token is still valid (none lost to a concurrent boot of its node),
	// and no refused boot's is.
	bootErrs := slices.Clone(errs)
	for k, bootErr := range bootErrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("n%02d", k%newIDs)
			err := pick(k+1, a, b).RecordStatus(registry.StatusReport{NodeID: id, Source: "pid1", State: "ready", Token: Tok(k)}, nil, t0)
			switch {
			case bootErr == nil && err != nil:
				errs[k] = fmt.Errorf("report with the token of answered boot %d of %s: %w", k, id, err)
			case bootErr != nil && booted[id] && !errors.Is(err, db.ErrToken):
				errs[k] = fmt.Errorf("report with the token of refused boot %d of %s: %v, want ErrToken", k, id, err)
			case bootErr != nil && !booted[id] && !errors.Is(err, db.ErrNotFound):
				errs[k] = fmt.Errorf("report for %s, never recorded: %v, want ErrNotFound", id, err)
			default:
				errs[k] = nil
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if states, _ := a.NodeStates(); !maps.Equal(states, map[string]int{registry.StateReady: limit}) {
		t.Fatalf("after reports: states %v, want %d ready", states, limit)
	}
}

// The per-state counts follow every boot and report, and only committed
// ones.
func nodeStates(t *testing.T, d, _ db.Records) {
	boot := func(id string, i int) func() error {
		return func() error {
			return d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: id}, Token: Tok(i), MaxNodes: 2}, t0)
		}
	}
	report := func(id, state string, i int) func() error {
		return func() error {
			return d.RecordStatus(registry.StatusReport{NodeID: id, Source: "pid1", State: state, Reason: "r", Token: Tok(i)}, nil, t0)
		}
	}
	for _, st := range []struct {
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
	} {
		if err := st.do(); (err != nil) != st.fail {
			t.Fatalf("%s: err = %v, want failure %v", st.name, err, st.fail)
		}
		if got, err := d.NodeStates(); err != nil || !maps.Equal(got, st.want) {
			t.Fatalf("%s: NodeStates() = %v, %v; want %v", st.name, got, err, st.want)
		}
	}
}

func deleteNodeAndFarm(t *testing.T, d, _ db.Records) {
	for _, f := range []string{"lab", "empty"} {
		if err := d.CreateFarm(records.Farm{Name: f, Channel: "stable"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"n1", "n2"} {
		if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: id, Farm: "lab"}, Served: 1, Token: Tok(i)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.RecordStatus(registry.StatusReport{NodeID: "n2", Source: "pid1", State: "ready", Token: Tok(1)}, nil, t0); err != nil {
		t.Fatal(err)
	}
	if n, err := d.DeleteFarm("lab", false); !errors.Is(err, db.ErrInUse) || n != 2 || !strings.Contains(err.Error(), "farm lab has 2 nodes") {
		t.Fatalf("DeleteFarm with nodes = %d, %v", n, err)
	}
	if _, err := d.DeleteFarm("nope", false); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("DeleteFarm(nope): %v, want ErrNotFound", err)
	}
	n, err := d.DeleteNode("n2")
	if err != nil || n.State != "ready" || n.ID != "n2" {
		t.Fatalf("DeleteNode = %+v, %v", n, err)
	}
	if _, err := d.Node("n2"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("deleted node still there: %v", err)
	}
	if _, err := d.DeleteNode("n2"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	states, _ := d.NodeStates()
	count, _ := d.NodeCount()
	if count != 1 || states["ready"] != 0 || states["booting"] != 1 {
		t.Errorf("after delete: %d nodes, states %v", count, states)
	}
	// Its tokens went with it: a report with its old token finds no node.
	if err := d.RecordStatus(registry.StatusReport{NodeID: "n2", Source: "core0", State: "ready", Token: Tok(1)}, nil, t0); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("report for a deleted node: %v", err)
	}
	if _, err := d.DeleteFarm("empty", false); err != nil {
		t.Errorf("DeleteFarm of an empty farm: %v", err)
	}
	if n, err := d.DeleteFarm("lab", true); err != nil || n != 1 {
		t.Errorf("forced DeleteFarm = %d, %v", n, err)
	}
	if _, err := d.Farm("lab"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("forced delete left the farm: %v", err)
	}
	if _, err := d.Node("n1"); err != nil {
		t.Errorf("forced farm delete removed its node: %v", err)
	}
}

func approveAndAllow(t *testing.T, d, _ db.Records) {
	ident := records.Identity{Kind: registry.KindTPM, EKFingerprint: "sha256:ab", Baseline: []measure.Event{{PCR: 4, Type: measure.TypeCmdline, Value: "x"}}}
	if err := d.RecordPending(registry.BootRequest{NodeID: "p1", Farm: "f"}, ident, 0, t0); err != nil {
		t.Fatal(err)
	}
	n, err := d.Node("p1")
	if err != nil || n.State != registry.StatePending || n.Identity.EKFingerprint != "sha256:ab" || n.Identity.Approved {
		t.Fatalf("pending node = %+v, %v", n, err)
	}
	if n, err = d.Approve("p1"); err != nil || !n.Identity.Approved || n.Identity.Baseline != nil {
		t.Fatalf("Approve = %+v, %v; want approved, baseline cleared", n.Identity, err)
	}
	if n, _ = d.Node("p1"); !n.Identity.Approved || n.Identity.Baseline != nil {
		t.Fatalf("after Approve: %+v", n.Identity)
	}
	if _, err := d.Approve("nope"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("Approve(nope): %v, want ErrNotFound", err)
	}
	for _, k := range []string{"n7", "sha256:cd", "n7"} {
		if err := d.Allow(k); err != nil {
			t.Fatalf("Allow(%s): %v", k, err)
		}
	}
	for _, tc := range []struct {
		id, ek string
		want   bool
	}{
		{"n7", "", true}, {"n8", "sha256:cd", true}, {"n8", "", false}, {"n8", "sha256:ef", false}, {"sha256:cd", "", true},
	} {
		if got, err := d.Listed(tc.id, tc.ek); got != tc.want || err != nil {
			t.Errorf("Listed(%q, %q) = %v, %v; want %v", tc.id, tc.ek, got, err, tc.want)
		}
	}
}

// A denied node's boots, holds and reports are refused until Approve,
// which leaves it pending; the state counts follow.
func deny(t *testing.T, d, other db.Records) {
	boot := func(d db.Records, tok string) error {
		return d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: "n1", Farm: "f"}, Served: 1, Token: tok, Identity: records.Identity{Kind: registry.KindDMI, Approved: true}}, t0)
	}
	if err := boot(d, Tok(1)); err != nil {
		t.Fatal(err)
	}
	n, err := d.Deny("n1")
	if err != nil || n.State != registry.StateDenied || !n.Identity.Denied || n.Identity.Approved {
		t.Fatalf("Deny = %+v, %v; want denied, not approved", n, err)
	}
	states := func(want map[string]int) {
		t.Helper()
		got, err := other.NodeStates()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("NodeStates = %v, want %v", got, want)
				return
			}
		}
	}
	states(map[string]int{registry.StateDenied: 1, registry.StateBooting: 0})
	// The other pool sees the denial: replicas refuse it alike.
	if err := boot(other, Tok(2)); !errors.Is(err, db.ErrDenied) {
		t.Errorf("boot of a denied node: %v, want ErrDenied", err)
	}
	if err := other.RecordPending(registry.BootRequest{NodeID: "n1", Farm: "f"}, records.Identity{Kind: registry.KindDMI}, 0, t0); !errors.Is(err, db.ErrDenied) {
		t.Errorf("hold of a denied node: %v, want ErrDenied", err)
	}
	rep := registry.StatusReport{NodeID: "n1", Source: "pid1", State: "ready", Token: Tok(1)}
	if err := other.RecordStatus(rep, nil, t0); !errors.Is(err, db.ErrDenied) {
		t.Errorf("report of a denied node with its token: %v, want ErrDenied", err)
	}
	if n, _ := d.Node("n1"); n.State != registry.StateDenied || !n.Identity.Denied {
		t.Fatalf("a refused request changed the denied node: %+v", n)
	}
	if n, err = other.Approve("n1"); err != nil || n.State != registry.StatePending || n.Identity.Denied || !n.Identity.Approved {
		t.Fatalf("Approve of a denied node = %+v, %v; want pending, approved", n, err)
	}
	states(map[string]int{registry.StateDenied: 0, registry.StatePending: 1})
	if err := boot(d, Tok(2)); err != nil {
		t.Fatalf("boot after Approve: %v", err)
	}
	states(map[string]int{registry.StatePending: 0, registry.StateBooting: 1})
	if _, err := d.Deny("nope"); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("Deny(nope): %v, want ErrNotFound", err)
	}
}

// A fell_back report is recorded only from the release the node was
// served; an attestation that verifies becomes the baseline once.
func fallback(t *testing.T, d, _ db.Records) {
	if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: "n1"}, Served: 2, Token: Tok(1)}, t0); err != nil {
		t.Fatal(err)
	}
	rep := registry.StatusReport{NodeID: "n1", Source: "pid1", State: "booting", Token: Tok(1), ReleaseVersion: 1,
		FellBack: &registry.FellBack{From: 3, Reason: "not ready"}}
	if err := d.RecordStatus(rep, nil, t0); !errors.Is(err, db.ErrFallback) {
		t.Fatalf("fallback from a release not served: %v, want ErrFallback", err)
	}
	if n, _ := d.Node("n1"); n.Fallback != nil || n.ReleaseReported != 0 {
		t.Fatalf("refused fallback changed the node: %+v", n)
	}
	rep.FellBack.From = 2
	att := &records.Attestation{State: records.AttestOK, Time: t0, Events: []measure.Event{{PCR: 4, Type: measure.TypeCmdline, Value: "console=ttyS0"}}}
	if err := d.RecordStatus(rep, att, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, _ := d.Node("n1")
	if fb := n.Fallback; fb == nil || fb.From != 2 || fb.To != 1 || fb.Reason != "not ready" || !fb.At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("fallback = %+v", n.Fallback)
	}
	if n.Identity.Attestation == nil || n.Identity.Attestation.State != records.AttestOK || len(n.Identity.Baseline) == 0 {
		t.Fatalf("attestation not recorded with its baseline: %+v", n.Identity)
	}
}

// Storm is a boot storm on the records alone, without HTTP or TLS: b.N
// new nodes, conc at a time, each a boot and two reports with its token,
// as the registry records them. It reports nodes/s: what the backend
// allows before the handshakes and JSON of the real thing.
func Storm(b *testing.B, d db.Records, conc int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				id := fmt.Sprintf("storm-%d", i)
				if err := d.RecordBoot(db.Boot{Request: registry.BootRequest{NodeID: id, Farm: "demo", Agent: "storm"}, Served: 1, Token: Tok(int(i))}, t0); err != nil {
					errs <- err
					return
				}
				for _, st := range []string{registry.StateBooting, registry.StateReady} {
					if err := d.RecordStatus(registry.StatusReport{NodeID: id, Source: registry.SourcePID1, State: st, Token: Tok(int(i))}, nil, t0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "nodes/s")
}
