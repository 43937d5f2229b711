package release

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Diff lists what changed from release a to b, one line each, components
// in name order then the entrypoint: "+ component NAME ..." added,
// "- component NAME ..." removed, "~ component NAME: ..." changed (flist,
// mount, permissions), "~ entrypoint ...", "~ args ...", "~ env ...". No
// lines: the two run the same thing.
func Diff(a, b *Release) []string {
	var out []string
	old := map[string]Component{}
	for _, c := range a.Components {
		old[c.Name] = c
	}
	seen := map[string]bool{}
	for _, c := range b.Components {
		seen[c.Name] = true
		was, ok := old[c.Name]
		switch {
		case !ok:
			out = append(out, "+ component "+describe(c))
		case was != c:
			out = append(out, fmt.Sprintf("~ component %s: %s", c.Name, strings.Join(changes(was, c), "; ")))
		}
	}
	for _, c := range a.Components {
		if !seen[c.Name] {
			out = append(out, "- component "+describe(c))
		}
	}
	slices.SortStableFunc(out, func(x, y string) int { return strings.Compare(nameOf(x), nameOf(y)) })
	ea, eb := a.Entrypoint, b.Entrypoint
	if ea.Path != eb.Path {
		out = append(out, fmt.Sprintf("~ entrypoint %s -> %s", ea.Path, eb.Path))
	}
	if !slices.Equal(ea.Args, eb.Args) {
		out = append(out, fmt.Sprintf("~ args %q -> %q", ea.Args, eb.Args))
	}
	if !slices.Equal(ea.Env, eb.Env) {
		out = append(out, fmt.Sprintf("~ env %q -> %q", ea.Env, eb.Env))
	}
	return append(out, diffServices(a.Services, b.Services)...)
}

// diffServices lists services added, removed, and changed with the
// fields that changed ("~ service api: exec, ready").
func diffServices(a, b []Service) []string {
	var out []string
	old := map[string]map[string]any{}
	for _, s := range a {
		old[s.Name] = fields(s)
	}
	for _, s := range b {
		was, ok := old[s.Name]
		if !ok {
			out = append(out, fmt.Sprintf("+ service %s: %s in component %s", s.Name, s.Exec.Path, s.Component))
			continue
		}
		delete(old, s.Name)
		var changed []string
		now := fields(s)
		for _, k := range slices.Sorted(maps.Keys(union(was, now))) {
			if !reflect.DeepEqual(was[k], now[k]) {
				changed = append(changed, k)
			}
		}
		if len(changed) > 0 {
			out = append(out, fmt.Sprintf("~ service %s: %s", s.Name, strings.Join(changed, ", ")))
		}
	}
	for _, s := range a {
		if _, ok := old[s.Name]; ok {
			out = append(out, "- service "+s.Name)
		}
	}
	return out
}

// fields is s as its JSON object, so a change is named by its field.
func fields(s Service) map[string]any {
	var m map[string]any
	b, _ := json.Marshal(s)
	json.Unmarshal(b, &m)
	return m
}

func union(a, b map[string]any) map[string]any {
	u := maps.Clone(a)
	maps.Copy(u, b)
	return u
}

// nameOf is the component name of a Diff line, for ordering.
func nameOf(line string) string {
	f := strings.Fields(line)
	return strings.TrimSuffix(f[2], ":")
}

func describe(c Component) string {
	return fmt.Sprintf("%s %s at %s%s", c.Name, c.Flist, c.Mount, permissions(c))
}

func permissions(c Component) string {
	var p []string
	if c.AllowSetuid {
		p = append(p, "setuid allowed")
	}
	if c.AllowDevices {
		p = append(p, "devices allowed")
	}
	if len(p) == 0 {
		return ""
	}
	return " (" + strings.Join(p, ", ") + ")"
}

func changes(a, b Component) []string {
	var out []string
	if a.Flist != b.Flist {
		out = append(out, fmt.Sprintf("flist %s -> %s", a.Flist, b.Flist))
	}
	if a.Mount != b.Mount {
		out = append(out, fmt.Sprintf("mount %s -> %s", a.Mount, b.Mount))
	}
	if a.AllowSetuid != b.AllowSetuid {
		out = append(out, fmt.Sprintf("setuid allowed %v -> %v", a.AllowSetuid, b.AllowSetuid))
	}
	if a.AllowDevices != b.AllowDevices {
		out = append(out, fmt.Sprintf("devices allowed %v -> %v", a.AllowDevices, b.AllowDevices))
	}
	return out
}
