package registry

import (
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/identity"
)

func TestBootRequestValidate(t *testing.T) {
	good := func() BootRequest {
		return BootRequest{Protocol: Protocol, NodeID: "n3f2a0000000000000000000000000000", Farm: "demo", Agent: "zeroboot-init",
			Channel: "stable", RootVersion: 3, Profile: identity.Profile{CPUs: 2, NICs: []identity.NIC{{Name: "eth0"}}}}
	}
	tests := []struct {
		name   string
		change func(*BootRequest)
		want   string
	}{
		{"good", func(*BootRequest) {}, ""},
		{"no farm, channel or agent", func(r *BootRequest) { r.Farm, r.Channel, r.Agent = "", "", "" }, ""},
		{"longest node id", func(r *BootRequest) { r.NodeID = strings.Repeat("a", MaxNodeIDLen) }, ""},
		{"no node id", func(r *BootRequest) { r.NodeID = "" }, "boot request: node_id \"\": want 1-128 characters"},
		{"node id path", func(r *BootRequest) { r.NodeID = "../x" }, "node_id \"../x\""},
		{"node id too long", func(r *BootRequest) { r.NodeID = strings.Repeat("a", MaxNodeIDLen+1) }, "node_id \"" + strings.Repeat("a", MaxNodeIDLen) + "...\""},
		{"farm upper case", func(r *BootRequest) { r.Farm = "Demo" }, "boot request: farm \"Demo\": want 1-64 characters"},
		{"farm too long", func(r *BootRequest) { r.Farm = strings.Repeat("f", MaxNameLen+1) }, "farm \"" + strings.Repeat("f", MaxNameLen) + "...\""},
		{"channel", func(r *BootRequest) { r.Channel = "a/b" }, "boot request: release: channel \"a/b\""},
		{"channel too long", func(r *BootRequest) { r.Channel = strings.Repeat("c", 64) }, "want 1 to 63 characters"},
		{"agent too long", func(r *BootRequest) { r.Agent = strings.Repeat("x", MaxAgentLen+1) }, "agent is 129 bytes, limit 128"},
		{"agent newline", func(r *BootRequest) { r.Agent = "init\nFAKE LOG LINE" }, "agent: byte 4 is not printable ASCII"},
		{"root version", func(r *BootRequest) { r.RootVersion = -1 }, "root_version -1 is negative"},
		{"profile", func(r *BootRequest) { r.Profile.Disks = make([]identity.Disk, identity.MaxDisks+1) }, "boot request: profile: 257 disks, limit 256"},
	}
	for _, tt := range tests {
		r := good()
		tt.change(&r)
		err := r.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"demo", true}, {"0", true}, {"a.b_c-d", true}, {strings.Repeat("a", MaxNameLen), true},
		{"", false}, {".hidden", false}, {"-x", false}, {"A", false}, {"a b", false}, {"a\x00", false}, {strings.Repeat("a", MaxNameLen+1), false},
	} {
		if err := CheckName("farm", tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
